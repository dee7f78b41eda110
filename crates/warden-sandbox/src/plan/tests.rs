use super::*;

fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn everything() -> Availability {
    Availability {
        controls: Control::ALL
            .iter()
            .map(|c| {
                (
                    *c,
                    crate::report::Status::Available {
                        detail: String::new(),
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn resolves_program_in_path_and_refuses_missing() {
    let sh = resolve_program("sh", Path::new("/"), "/nonexistent:/bin:/usr/bin").unwrap();
    assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
    assert!(matches!(
        resolve_program("no-such-program-xyz", Path::new("/"), "/bin:/usr/bin"),
        Err(SandboxError::ProgramNotFound { .. })
    ));
    // Relative PATH entries are never searched: they would depend on the gateway's cwd.
    assert!(resolve_program("sh", Path::new("/bin"), ".").is_err());
}

#[test]
fn grants_the_install_prefix_parts_not_the_whole_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("lib")).unwrap();
    std::fs::create_dir_all(prefix.join("share/keyrings")).unwrap();
    let grants = install_grants(&prefix.join("bin/node"), None);
    assert!(grants.contains(&prefix.join("bin")));
    assert!(grants.contains(&prefix.join("lib")));
    assert!(!grants.iter().any(|g| g.starts_with(prefix.join("share"))));
    assert!(!grants.contains(&prefix));
}

#[test]
fn never_grants_home_or_root_implicitly() {
    let home = tempfile::tempdir().unwrap();
    let script = home.path().join("server.py");
    std::fs::write(&script, "print(1)").unwrap();
    let grant = argument_grant(script.to_str().unwrap(), Path::new("/"), Some(home.path()));
    // Only the file itself, not the home directory that holds it.
    assert_eq!(grant, Some(std::fs::canonicalize(&script).unwrap()));
    assert_eq!(
        install_grants(Path::new("/tool"), None),
        vec![PathBuf::from("/tool")]
    );
}

#[test]
fn grants_the_project_of_a_node_modules_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let entry = dir
        .path()
        .join("proj/node_modules/@scope/pkg/dist/index.js");
    std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
    std::fs::write(&entry, "").unwrap();
    let grant = argument_grant(entry.to_str().unwrap(), Path::new("/"), None).unwrap();
    assert_eq!(
        grant,
        std::fs::canonicalize(dir.path().join("proj")).unwrap()
    );
    // Directories and flags are not granted.
    assert_eq!(
        argument_grant(dir.path().to_str().unwrap(), Path::new("/"), None),
        None
    );
    assert_eq!(argument_grant("--stdio", Path::new("/"), None), None);
}

#[test]
fn follows_a_shebang_through_env() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tool");
    std::fs::write(&script, "#!/usr/bin/env -S sh -e\necho\n").unwrap();
    let interpreter = shebang(&script, "/bin:/usr/bin").unwrap();
    assert!(interpreter.ends_with("sh"), "{}", interpreter.display());
}

#[test]
fn environment_is_the_allow_list_plus_configured_values() {
    let env = env_of(&[
        ("PATH", "/usr/bin:/bin"),
        ("AWS_SECRET_ACCESS_KEY", "gateway-secret"),
        ("LANG", "C.UTF-8"),
    ]);
    let command = Command {
        program: "sh",
        args: &[],
        cwd: None,
        gateway_cwd: Path::new("/"),
        gateway_env: &env,
        env: vec![("TOKEN".into(), "per-upstream".into())],
    };
    let planned = plan(
        &Settings::default(),
        &everything(),
        Path::new("/launcher"),
        Path::new("/tmp"),
        &command,
    )
    .unwrap();
    let names: Vec<&str> = planned.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["PATH", "LANG", "TOKEN"]);
    assert!(planned.degraded.is_empty());
    // The profile (passed on the command line) holds no environment value, and neither does
    // anything printed with Debug.
    let json = serde_json::to_string(&planned.sandbox.profile).unwrap();
    assert!(!json.contains("per-upstream") && !json.contains("gateway-secret"));
    let shown = format!("{planned:?} {command:?}");
    assert!(
        !shown.contains("per-upstream") && shown.contains("TOKEN"),
        "{shown}"
    );
}

#[test]
fn reports_every_unavailable_control_instead_of_pretending() {
    let env = env_of(&[("PATH", "/usr/bin:/bin")]);
    let command = Command {
        program: "sh",
        args: &[],
        cwd: None,
        gateway_cwd: Path::new("/"),
        gateway_env: &env,
        env: Vec::new(),
    };
    let planned = plan(
        &Settings::default(),
        &Availability::none("old kernel"),
        Path::new("/launcher"),
        Path::new("/tmp"),
        &command,
    )
    .unwrap();
    let degraded: Vec<Control> = planned.degraded.iter().map(|d| d.control).collect();
    for control in [
        Control::UserNamespace,
        Control::NetworkNamespace,
        Control::Landlock,
        Control::Seccomp,
        Control::ProcessLimit,
        Control::MemoryLimit,
    ] {
        assert!(
            degraded.contains(&control),
            "{control} missing from {degraded:?}"
        );
    }
    let profile = &planned.sandbox.profile;
    assert!(!profile.namespaces);
    assert_eq!(profile.network, Network::Full);
    assert!(profile.filesystem.is_none() && profile.seccomp.is_none());
    assert!(!profile.cgroup_pids && !profile.cgroup_memory);
}

#[test]
fn an_allow_list_without_its_forwarder_fails_closed_to_loopback() {
    let env = env_of(&[("PATH", "/usr/bin:/bin")]);
    let command = Command {
        program: "sh",
        args: &[],
        cwd: None,
        gateway_cwd: Path::new("/"),
        gateway_env: &env,
        env: Vec::new(),
    };
    let settings = Settings {
        egress_proxy: Some(PathBuf::from("/run/egress.sock")),
        ..Settings::default()
    };
    let plan_with = |availability: &Availability| {
        plan(
            &settings,
            availability,
            Path::new("/launcher"),
            Path::new("/tmp"),
            &command,
        )
        .unwrap()
    };
    let planned = plan_with(&everything());
    assert!(planned.degraded.is_empty());
    assert_eq!(planned.sandbox.profile.network, Network::Loopback);
    assert_eq!(
        planned.sandbox.profile.egress_proxy,
        Some(PathBuf::from("/run/egress.sock"))
    );
    let mut no_forwarder = everything();
    no_forwarder
        .controls
        .retain(|(c, _)| *c != Control::NetworkAllowList);
    no_forwarder.controls.push((
        Control::NetworkAllowList,
        crate::report::Status::Unavailable {
            reason: "no loopback".into(),
        },
    ));
    let planned = plan_with(&no_forwarder);
    let degraded: Vec<Control> = planned.degraded.iter().map(|d| d.control).collect();
    assert_eq!(degraded, [Control::NetworkAllowList]);
    assert_eq!(planned.sandbox.profile.network, Network::Loopback);
    assert_eq!(planned.sandbox.profile.egress_proxy, None);
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_interpreter_chain_lists_env_and_what_it_finds_then_their_interpreters() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // server -> `#!/usr/bin/env tool` -> bin/tool, itself a script run by /bin/sh.
    let tool = bin.join("tool");
    write_executable(&tool, "#!/bin/sh\nexec true\n");
    let server = dir.path().join("server");
    write_executable(&server, "#!/usr/bin/env -S tool --flag\n");
    let path_var = format!("{}:/bin:/usr/bin", bin.display());
    assert_eq!(
        interpreter_chain(&server, &path_var),
        vec![
            PathBuf::from("/usr/bin/env"),
            tool.clone(),
            PathBuf::from("/bin/sh"),
        ]
    );
    // A binary has no interpreter.
    assert!(interpreter_chain(Path::new("/usr/bin/env"), &path_var).is_empty());
    // `env` asked for a program that is not in PATH: only `env` itself.
    let missing = dir.path().join("missing");
    write_executable(&missing, "#!/usr/bin/env no-such-program-here\n");
    assert_eq!(
        interpreter_chain(&missing, &path_var),
        vec![PathBuf::from("/usr/bin/env")]
    );
}

#[test]
fn the_interpreter_chain_stops_at_the_kernels_depth_and_at_loops() {
    let dir = tempfile::tempdir().unwrap();
    // s0 -> s1 -> ... -> s6: only the first INTERPRETER_LEVELS interpreters are followed.
    let scripts: Vec<PathBuf> = (0..7).map(|i| dir.path().join(format!("s{i}"))).collect();
    for (i, s) in scripts.iter().enumerate() {
        let text = match scripts.get(i + 1) {
            Some(next) => format!("#!{}\n", next.display()),
            None => "#!/bin/sh\n".to_owned(),
        };
        write_executable(s, &text);
    }
    assert_eq!(
        interpreter_chain(&scripts[0], "/bin"),
        scripts[1..=INTERPRETER_LEVELS].to_vec()
    );
    // A loop (a -> b -> a) ends without repeating.
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write_executable(&a, &format!("#!{}\n", b.display()));
    write_executable(&b, &format!("#!{}\n", a.display()));
    assert_eq!(interpreter_chain(&a, "/bin"), vec![b.clone()]);
}

#[test]
fn a_shebang_line_is_read_as_the_kernel_reads_it() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s");
    // No newline within the kernel's 256 bytes: the interpreter is still the first word.
    let long = format!("#!/bin/sh {}", "x".repeat(400));
    write_executable(&script, &long);
    assert_eq!(
        interpreter_chain(&script, "/bin"),
        vec![PathBuf::from("/bin/sh")]
    );
    // Tabs separate as spaces do.
    write_executable(&script, "#!\t/bin/sh\t-e\n");
    assert_eq!(
        interpreter_chain(&script, "/bin"),
        vec![PathBuf::from("/bin/sh")]
    );
    // An interpreter path that is not UTF-8 is still followed.
    let odd = dir.path().join(OsStr::from_bytes(b"interp-\xff"));
    write_executable(&odd, "#!/bin/sh\n");
    let mut text = b"#!".to_vec();
    text.extend_from_slice(odd.as_os_str().as_bytes());
    text.push(b'\n');
    std::fs::write(&script, &text).unwrap();
    assert_eq!(
        interpreter_chain(&script, "/bin"),
        vec![odd.clone(), PathBuf::from("/bin/sh")]
    );
    // An interpreter name cut by the end of the buffer: the kernel refuses to run it.
    write_executable(&script, &format!("#!/{}", "x".repeat(400)));
    assert!(interpreter_chain(&script, "/bin").is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Whatever a file starts with, reading its `#!` line never panics, and an interpreter it
    /// names is one word of the line: no blank in it, and it was in the first 256 bytes.
    #[test]
    fn any_first_bytes_give_at_most_one_word_from_the_buffer(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        newline_at in proptest::option::of(0usize..300),
    ) {
        use std::os::unix::ffi::OsStrExt as _;
        let mut bytes = b"#!".to_vec();
        bytes.extend_from_slice(&body);
        if let Some(at) = newline_at {
            let at = at.min(bytes.len());
            bytes.insert(at, b'\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, &bytes).unwrap();
        if let Some((interpreter, _)) = shebang_line(&file) {
            let word = interpreter.as_os_str().as_bytes();
            proptest::prop_assert!(!word.is_empty());
            proptest::prop_assert!(!word.iter().any(|b| *b == b' ' || *b == b'\t' || *b == b'\n'));
            let head = &bytes[..bytes.len().min(SHEBANG_MAX)];
            proptest::prop_assert!(head.windows(word.len()).any(|w| w == word));
        }
    }
}
