use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use proptest::prelude::*;
use warden_store::MemoryStore;

use super::installed::{Locations, installed_versions, npx_cache_key};
use super::spec::{Launcher, Pinning, is_exact_semver, packages, parse_reference};
use super::*;

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn one(program: &str, a: &[&str]) -> spec::PackageSpec {
    let found = packages(program, &args(a));
    assert_eq!(found.len(), 1, "{program} {a:?}: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn npx_specs_name_version_and_pinning() {
    let p = one(
        "npx",
        &["-y", "@modelcontextprotocol/server-everything@2026.8.31"],
    );
    assert_eq!(p.launcher, Launcher::Npx);
    assert_eq!(p.name, "@modelcontextprotocol/server-everything");
    assert_eq!(p.requested.as_deref(), Some("2026.8.31"));
    assert_eq!(p.pinning, Pinning::Exact);

    let p = one("/usr/bin/npx", &["foo"]);
    assert_eq!(
        (p.name.as_str(), p.requested, p.pinning),
        ("foo", None, Pinning::Unpinned)
    );
    let p = one("npx", &["--yes", "foo@latest", "--port", "1"]);
    assert_eq!(p.requested.as_deref(), Some("latest"));
    assert_eq!(p.pinning, Pinning::Unpinned);
    assert_eq!(one("npx", &["foo@^1.2.0"]).pinning, Pinning::Unpinned);
    assert_eq!(one("npx", &["@scope/foo"]).pinning, Pinning::Unpinned);
    assert_eq!(one("npx", &["foo@1.2.3-rc.1"]).pinning, Pinning::Exact);
    // `-p` names the package; the positional is then the command.
    let p = one("npx", &["-p", "pkg@1.0.0", "bin-name", "--flag"]);
    assert_eq!((p.name.as_str(), p.pinning), ("pkg", Pinning::Exact));
    let p = one("npx", &["--package=pkg", "bin"]);
    assert_eq!((p.name.as_str(), p.pinning), ("pkg", Pinning::Unpinned));
    assert_eq!(
        packages("npx", &args(&["-p", "a@1.0.0", "-p", "b", "c"])).len(),
        2
    );
    // Registry flag values are not packages.
    let p = one("npx", &["--registry", "https://r.example", "foo@2.0.0"]);
    assert_eq!(p.name, "foo");
    // Git: pinned only by a full commit.
    assert_eq!(one("npx", &["github:o/r"]).pinning, Pinning::Mutable);
    assert_eq!(
        one(
            "npx",
            &["github:o/r#0123456789abcdef0123456789abcdef01234567"]
        )
        .pinning,
        Pinning::Exact
    );
    assert_eq!(one("npx", &["./local-pkg"]).pinning, Pinning::Local);
    assert_eq!(
        one("npx", &["https://x.example/p.tgz"]).pinning,
        Pinning::Mutable
    );
}

#[test]
fn credentials_in_package_urls_never_reach_the_name() {
    for (program, a) in [
        (
            "uvx",
            vec!["--from", "git+https://u:s3cret@github.com/o/r@main", "cmd"],
        ),
        ("npx", vec!["git+https://u:s3cret@github.com/o/r.git#main"]),
        ("npx", vec!["https://u:s3cret@r.example/p.tgz"]),
    ] {
        let p = one(program, &a);
        assert!(!p.name.contains("s3cret"), "{p:?}");
        assert!(p.name.contains("***@"), "{p:?}");
        assert_eq!(p.pinning, Pinning::Mutable, "{p:?}");
    }
    // Found by the `launcher_spec` fuzz target: a reference that looks like a local path
    // (`/`, `~`, `.`) but holds a URL with credentials.
    for raw in [
        "~ttps://u:s3cret@r.example/p.tgz",
        "/it+https://u:s3cret@h/o/r@main",
    ] {
        for launcher in [Launcher::Npx, Launcher::Uvx, Launcher::DockerRun] {
            let p = parse_reference(launcher, raw);
            assert!(!p.name.contains("s3cret"), "{p:?}");
            assert!(
                !p.requested.as_deref().unwrap_or("").contains("s3cret"),
                "{p:?}"
            );
        }
    }
    // An `@` in the host part is not a revision.
    let p = one(
        "uvx",
        &["--from", "git+https://u:s3cret@github.com/o/r", "cmd"],
    );
    assert_eq!(p.requested, None, "{p:?}");
}

#[test]
fn other_npm_launchers() {
    assert_eq!(
        one("pnpm", &["dlx", "foo@1.0.0"]).launcher,
        Launcher::PnpmDlx
    );
    assert_eq!(one("yarn", &["dlx", "foo"]).launcher, Launcher::YarnDlx);
    assert_eq!(one("bunx", &["foo@1.0.0"]).pinning, Pinning::Exact);
    assert_eq!(one("bun", &["x", "foo"]).launcher, Launcher::Bunx);
    assert_eq!(
        one("npm", &["exec", "--", "foo@1.0.0"]).launcher,
        Launcher::Npx
    );
    assert!(packages("pnpm", &args(&["install"])).is_empty());
    assert!(packages("node", &args(&["server.js"])).is_empty());
}

#[test]
fn python_specs() {
    let p = one("uvx", &["mcp-server-fetch"]);
    assert_eq!(
        (p.name.as_str(), p.pinning),
        ("mcp-server-fetch", Pinning::Unpinned)
    );
    let p = one("uvx", &["mcp-server-fetch==2025.4.7"]);
    assert_eq!(p.requested.as_deref(), Some("2025.4.7"));
    assert_eq!(p.pinning, Pinning::Exact);
    assert_eq!(one("uvx", &["tool@1.2.3"]).pinning, Pinning::Exact);
    assert_eq!(one("uvx", &["tool@latest"]).pinning, Pinning::Unpinned);
    assert_eq!(one("uvx", &["tool>=1"]).pinning, Pinning::Unpinned);
    assert_eq!(one("uvx", &["tool==1.*"]).pinning, Pinning::Unpinned);
    let p = one("uvx", &["pkg[extra]==1.0"]);
    assert_eq!((p.name.as_str(), p.pinning), ("pkg", Pinning::Exact));
    let p = one("uvx", &["--python", "3.12", "--from", "pkg==2.0", "cmd"]);
    assert_eq!((p.name.as_str(), p.pinning), ("pkg", Pinning::Exact));
    let p = one("uv", &["tool", "run", "--from=pkg", "cmd"]);
    assert_eq!((p.launcher, p.pinning), (Launcher::Uvx, Pinning::Unpinned));
    let p = one("pipx", &["run", "--spec", "pkg==1.0", "app"]);
    assert_eq!((p.launcher, p.pinning), (Launcher::PipxRun, Pinning::Exact));
    assert_eq!(one("pipx", &["run", "app"]).pinning, Pinning::Unpinned);
    assert!(packages("pipx", &args(&["install", "x"])).is_empty());
}

#[test]
fn docker_images() {
    let p = one(
        "docker",
        &[
            "run",
            "-i",
            "--rm",
            "-e",
            "TOKEN",
            "-v",
            "/a:/b",
            "ghcr.io/o/img",
        ],
    );
    assert_eq!(
        (p.name.as_str(), p.pinning),
        ("ghcr.io/o/img", Pinning::Unpinned)
    );
    assert_eq!(
        one("docker", &["run", "img:latest"]).pinning,
        Pinning::Unpinned
    );
    let p = one("podman", &["run", "--name=x", "-it", "img:1.2"]);
    assert_eq!(
        (p.requested.as_deref(), p.pinning),
        (Some("1.2"), Pinning::Mutable)
    );
    let digest = format!("img@sha256:{}", "a".repeat(64));
    assert_eq!(one("docker", &["run", &digest]).pinning, Pinning::Exact);
    let p = one(
        "docker",
        &["run", "--cap-add", "NET_ADMIN", "localhost:5000/img"],
    );
    assert_eq!((p.name.as_str(), p.requested), ("localhost:5000/img", None));
}

#[test]
fn exact_semver() {
    for v in [
        "1.2.3",
        "0.0.0",
        "v1.2.3",
        "=1.2.3",
        "1.2.3-beta.1",
        "1.2.3+b.5",
    ] {
        assert!(is_exact_semver(v), "{v}");
    }
    for v in [
        "",
        "1.2",
        "1.2.x",
        "^1.2.3",
        "~1.2.3",
        "latest",
        "1.2.3 - 2.0.0",
        "1..3",
        "1.2.3-",
    ] {
        assert!(!is_exact_semver(v), "{v}");
    }
}

#[test]
fn script_arguments_of_interpreters() {
    let s = |p: &str, a: &[&str]| script_argument(p, &args(a)).map(str::to_owned);
    assert_eq!(
        s("python3", &["-u", "server.py", "stdio"]).as_deref(),
        Some("server.py")
    );
    assert_eq!(
        s("/usr/bin/python3.12", &["server.py"]).as_deref(),
        Some("server.py")
    );
    assert_eq!(s("python3", &["-m", "mcp_server"]), None);
    assert_eq!(
        s("node", &["--require", "x.js", "dist/index.js"]).as_deref(),
        Some("dist/index.js")
    );
    assert_eq!(s("node", &["-e", "code"]), None);
    assert_eq!(
        s("deno", &["run", "--allow-net", "main.ts"]).as_deref(),
        Some("main.ts")
    );
    assert_eq!(s("bash", &["-c", "echo"]), None);
    assert_eq!(s("npx", &["server.js"]), None);
}

proptest! {
    // The parser never panics, and whatever it reports is part of what it was given.
    #[test]
    fn launcher_parser_never_panics_and_reports_given_text(
        program in prop::sample::select(vec!["npx", "uvx", "pipx", "bunx", "pnpm", "yarn", "docker", "uv", "bun", "npm", "podman"]),
        a in prop::collection::vec("[ -~]{0,24}", 0..8),
    ) {
        for p in packages(program, &a) {
            prop_assert!(a.iter().any(|x| x.contains(&p.raw)), "{p:?} not from {a:?}");
            let clean = spec::without_userinfo(&p.raw);
            prop_assert!(clean.contains(p.name.as_str()), "{p:?}");
            if let Some(r) = &p.requested {
                prop_assert!(clean.contains(r.as_str()), "{p:?}");
            }
        }
    }

    // `name@<exact>` is pinned and round-trips name and version, for plain and scoped names.
    #[test]
    fn npm_exact_versions_round_trip(
        scope in prop::option::of("[a-z][a-z0-9-]{0,8}"),
        name in "[a-z][a-z0-9._-]{0,12}",
        (a, b, c) in (0u32..1000, 0u32..1000, 0u32..1000),
    ) {
        let full = match &scope { Some(s) => format!("@{s}/{name}"), None => name.clone() };
        let raw = format!("{full}@{a}.{b}.{c}");
        let p = parse_reference(Launcher::Npx, &raw);
        prop_assert_eq!(&p.name, &full);
        prop_assert_eq!(p.requested, Some(format!("{a}.{b}.{c}")));
        prop_assert_eq!(p.pinning, Pinning::Exact);
        let bare = parse_reference(Launcher::Npx, &full);
        prop_assert_eq!(bare.pinning, Pinning::Unpinned);
        let tagged = parse_reference(Launcher::Npx, &format!("{full}@latest"));
        prop_assert_eq!(tagged.pinning, Pinning::Unpinned);
    }

    // `name==<exact>` is pinned; any range operator is not.
    #[test]
    fn python_exact_versions_and_ranges(
        name in "[a-z][a-z0-9_-]{0,12}",
        (a, b) in (0u32..100, 0u32..100),
        op in prop::sample::select(vec![">=", "<=", "~=", "!=", ">", "<"]),
    ) {
        let p = parse_reference(Launcher::Uvx, &format!("{name}=={a}.{b}"));
        prop_assert_eq!(&p.name, &name);
        prop_assert_eq!(p.pinning, Pinning::Exact);
        let r = parse_reference(Launcher::Uvx, &format!("{name}{op}{a}.{b}"));
        prop_assert_eq!(&r.name, &name);
        prop_assert_eq!(r.pinning, Pinning::Unpinned);
    }

    #[test]
    fn script_argument_never_panics(program in "[a-z0-9./]{0,12}", a in prop::collection::vec("[ -~]{0,12}", 0..6)) {
        if let Some(s) = script_argument(&program, &a) {
            prop_assert!(a.iter().any(|x| x == s));
        }
    }
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn observe_at(dir: &Path, program: &Path, a: &[&str], locations: Locations) -> CommandSnapshot {
    let program_text = program.display().to_string();
    observe(&CommandInput {
        program: &program_text,
        resolved: program,
        interpreters: &[],
        args: &args(a),
        cwd: dir,
        locations,
        digest_cache: None,
    })
    .unwrap()
}

#[test]
fn observes_digest_after_symlinks_and_the_script_of_an_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real-python3");
    write_exec(&real, "#!/bin/sh\n");
    let link = dir.path().join("python3");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::write(dir.path().join("server.py"), "print(1)\n").unwrap();
    let snap = observe_at(dir.path(), &link, &["server.py"], Locations::default());
    assert_eq!(snap.path, link.display().to_string());
    assert_eq!(
        snap.executable.path,
        std::fs::canonicalize(&real).unwrap().display().to_string()
    );
    // SHA-256 of "#!/bin/sh\n", computed independently.
    assert_eq!(
        snap.executable.sha256,
        format!("sha256:{}", hex(&Sha256::digest(b"#!/bin/sh\n")))
    );
    let script = snap.script.as_ref().unwrap();
    assert_eq!(
        script.sha256,
        format!("sha256:{}", hex(&Sha256::digest(b"print(1)\n")))
    );

    std::fs::write(dir.path().join("server.py"), "print(2)\n").unwrap();
    let again = observe_at(dir.path(), &link, &["server.py"], Locations::default());
    let found = changes(&snap, &again);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].what, "script digest");
    assert_eq!(found[0].pinned, script.sha256);
}

#[test]
fn reads_the_npx_cache_version_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("npm-cache");
    let spec = "@scope/pkg@1.2.3";
    let pkg = cache
        .join("_npx")
        .join(npx_cache_key(&[spec]))
        .join("node_modules/@scope/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        r#"{"name":"@scope/pkg","version":"1.2.3"}"#,
    )
    .unwrap();
    let found = packages("npx", &args(&["-y", spec]));
    let at = Locations {
        cwd: Some(dir.path().join("elsewhere")),
        npm_cache: Some(cache.clone()),
    };
    assert_eq!(
        installed_versions(&found, &at),
        vec![Some("1.2.3".to_owned())]
    );
    // Another spec has another cache key: nothing is guessed.
    let other = packages("npx", &args(&["-y", "@scope/pkg"]));
    assert_eq!(installed_versions(&other, &at), vec![None]);
    // The project's own node_modules comes first.
    let project = dir.path().join("project/node_modules/@scope/pkg");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("package.json"), r#"{"version":"9.9.9"}"#).unwrap();
    let at = Locations {
        cwd: Some(dir.path().join("project")),
        npm_cache: Some(cache),
    };
    assert_eq!(
        installed_versions(&found, &at),
        vec![Some("9.9.9".to_owned())]
    );
    // A name that walks out of node_modules is never read.
    let evil = packages("npx", &args(&["../../etc@1.0.0"]));
    assert_eq!(installed_versions(&evil, &at), vec![None]);
}

#[test]
fn npx_cache_key_is_sha512_prefix_of_sorted_specs() {
    // Independent computation of the same definition.
    let joined = "a@1.0.0\nb@2.0.0";
    let expected: String = Sha512::digest(joined.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(npx_cache_key(&["b@2.0.0", "a@1.0.0"]), expected);
}

use sha2::Sha512;

fn book() -> PinBook {
    PinBook::shared(Arc::new(MemoryStore::new(Default::default())))
}

fn snapshot(digest: &str, installed: Option<&str>) -> CommandSnapshot {
    CommandSnapshot {
        program: "npx".into(),
        path: "/usr/bin/npx".into(),
        executable: FileDigest {
            path: "/usr/lib/node_modules/npm/bin/npx-cli.js".into(),
            sha256: digest.into(),
        },
        interpreters: Vec::new(),
        script: None,
        packages: vec![PackagePin {
            launcher: Launcher::Npx,
            name: "pkg".into(),
            requested: Some("1.0.0".into()),
            pinning: Pinning::Exact,
            installed: installed.map(str::to_owned),
        }],
        seen_at: 1,
    }
}

#[tokio::test]
async fn first_use_pins_then_a_change_is_pending_until_approved() {
    let book = book();
    let a = snapshot("sha256:aa", None);
    assert_eq!(
        book.check_command("fs", &a).await.unwrap(),
        CommandCheck::FirstUse(a.clone())
    );
    assert_eq!(
        book.check_command("fs", &a).await.unwrap(),
        CommandCheck::Unchanged { completed: false }
    );
    // The installed version becomes known: the pin is completed, not changed.
    let known = snapshot("sha256:aa", Some("1.0.0"));
    assert_eq!(
        book.check_command("fs", &known).await.unwrap(),
        CommandCheck::Unchanged { completed: true }
    );
    let rec = book.command("fs").await.unwrap().unwrap();
    assert_eq!(
        rec.pinned.unwrap().packages[0].installed.as_deref(),
        Some("1.0.0")
    );

    let b = snapshot("sha256:bb", Some("1.0.1"));
    let CommandCheck::Changed {
        pinned, changes, ..
    } = book.check_command("fs", &b).await.unwrap()
    else {
        panic!("a changed digest is a change")
    };
    assert_eq!(pinned.unwrap().executable.sha256, "sha256:aa");
    let what: Vec<&str> = changes.iter().map(|c| c.what.as_str()).collect();
    assert_eq!(what, ["executable digest", "package pkg installed version"]);
    // Still changed on the next start: nothing was approved.
    assert!(matches!(
        book.check_command("fs", &b).await.unwrap(),
        CommandCheck::Changed { .. }
    ));
    // Approval of another hash is refused; of the pending one, accepted.
    assert!(matches!(
        book.approve_command("fs", Some("sha256:00")).await,
        Err(PinError::HashMismatch { .. })
    ));
    book.approve_command("fs", Some(&b.hash())).await.unwrap();
    assert_eq!(
        book.check_command("fs", &b).await.unwrap(),
        CommandCheck::Unchanged { completed: false }
    );
    assert!(matches!(
        book.approve_command("fs", None).await,
        Err(PinError::NothingPending { .. })
    ));
    // Back to the old command: a change again.
    assert!(matches!(
        book.check_command("fs", &a).await.unwrap(),
        CommandCheck::Changed { .. }
    ));
    assert!(book.revoke_command("fs").await.unwrap());
    assert!(matches!(
        book.check_command("fs", &a).await.unwrap(),
        CommandCheck::FirstUse(_)
    ));
    assert_eq!(book.commands(None).await.unwrap().len(), 1);
}

#[test]
fn hash_ignores_the_time_only() {
    let a = snapshot("sha256:aa", None);
    let mut later = a.clone();
    later.seen_at = 99;
    assert_eq!(a.hash(), later.hash());
    assert_ne!(a.hash(), snapshot("sha256:ab", None).hash());
}

fn file(path: &str, sha256: &str) -> FileDigest {
    FileDigest {
        path: path.into(),
        sha256: sha256.into(),
    }
}

#[test]
fn a_changed_interpreter_is_a_change_and_one_pinned_before_interpreters_completes() {
    let mut pinned = snapshot("sha256:aa", None);
    pinned.interpreters = vec![
        file("/usr/bin/env", "sha256:e1"),
        file("/usr/bin/node", "sha256:n1"),
    ];
    let mut observed = pinned.clone();
    assert!(changes(&pinned, &observed).is_empty());
    observed.interpreters[1].sha256 = "sha256:n2".into();
    let found = changes(&pinned, &observed);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].what, "interpreter 2 digest");
    assert_eq!(
        (found[0].pinned.as_str(), found[0].observed.as_str()),
        ("sha256:n1", "sha256:n2")
    );
    // Another interpreter found by `env`, or one more level.
    observed.interpreters[1] = file("/opt/evil/node", "sha256:n1");
    assert_eq!(changes(&pinned, &observed)[0].what, "interpreter 2 file");
    observed.interpreters = pinned.interpreters.clone();
    observed.interpreters.push(file("/bin/sh", "sha256:s"));
    assert_eq!(changes(&pinned, &observed)[0].what, "interpreter 3 file");
    // Interpreters gone while pinned ones exist: a change.
    observed.interpreters.clear();
    assert!(!changes(&pinned, &observed).is_empty());

    // A pin from before interpreters were pinned: no change; the next check completes it.
    let old = snapshot("sha256:aa", None);
    let now = pinned.clone();
    assert!(changes(&old, &now).is_empty());
    let done = completed(&old, &now).unwrap();
    assert_eq!(done.interpreters, now.interpreters);
    assert!(completed(&now, &now).is_none());
}

#[test]
fn a_pin_without_interpreters_keeps_its_hash_and_reads_back() {
    let old = snapshot("sha256:aa", None);
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("interpreters"), "{json}");
    let back: CommandSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, old);
    let mut with = old.clone();
    with.interpreters = vec![file("/bin/sh", "sha256:s")];
    assert_ne!(with.hash(), old.hash());
}

#[tokio::test]
async fn the_book_completes_an_old_pin_with_its_interpreters_then_refuses_a_change() {
    let book = book();
    let old = snapshot("sha256:aa", None);
    book.check_command("fs", &old).await.unwrap();
    let mut now = old.clone();
    now.interpreters = vec![file("/bin/sh", "sha256:s1")];
    assert_eq!(
        book.check_command("fs", &now).await.unwrap(),
        CommandCheck::Unchanged { completed: true }
    );
    let pinned = book.command("fs").await.unwrap().unwrap().pinned.unwrap();
    assert_eq!(pinned.interpreters, now.interpreters);
    let mut changed = now.clone();
    changed.interpreters[0].sha256 = "sha256:s2".into();
    assert!(matches!(
        book.check_command("fs", &changed).await.unwrap(),
        CommandCheck::Changed { .. }
    ));
}
