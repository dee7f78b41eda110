use super::*;

#[test]
fn pinned_and_unpinned_packages() {
    for (runner, spec, pinned) in [
        (
            "npm",
            "@modelcontextprotocol/server-everything@2026.8.31",
            true,
        ),
        ("npm", "@modelcontextprotocol/server-everything", false),
        (
            "npm",
            "@modelcontextprotocol/server-everything@latest",
            false,
        ),
        ("npm", "some-server@^1.2.0", false),
        ("npm", "some-server@1.2.0", true),
        ("npm", "./local/server.js", true),
        ("pypi", "mcp-server-fetch", false),
        ("pypi", "mcp-server-fetch==2025.4.7", true),
        ("pypi", "mcp-server-fetch>=1", false),
        ("oci", "mcp/github", false),
        ("oci", "mcp/github:latest", false),
        ("oci", "mcp/github@sha256:abc", true),
    ] {
        assert_eq!(is_pinned(runner, spec), pinned, "{runner} {spec}");
    }
}

#[test]
fn finds_the_package_argument() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        package_of("npx", &a(&["-y", "pkg@1.0.0", "--flag"])),
        Some(("npm", "pkg@1.0.0"))
    );
    assert_eq!(
        package_of("/usr/bin/npx", &a(&["--yes", "pkg"])),
        Some(("npm", "pkg"))
    );
    assert_eq!(
        package_of("npx.cmd", &a(&["-p", "pkg@2.0.0", "bin"])),
        Some(("npm", "pkg@2.0.0"))
    );
    assert_eq!(
        package_of("uvx", &a(&["--from", "x==1.0", "cmd"])),
        Some(("pypi", "x==1.0"))
    );
    assert_eq!(
        package_of("uv", &a(&["tool", "run", "x"])),
        Some(("pypi", "x"))
    );
    assert_eq!(
        package_of(
            "docker",
            &a(&["run", "-i", "--rm", "-e", "TOKEN", "ghcr.io/x/y"])
        ),
        Some(("oci", "ghcr.io/x/y"))
    );
    assert_eq!(package_of("node", &a(&["server.js"])), None);
}

#[test]
fn secrets_are_told_from_references_and_placeholders() {
    assert!(looks_like_secret(
        "GITHUB_PERSONAL_ACCESS_TOKEN",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    ));
    assert!(looks_like_secret(
        "API_KEY",
        "a8f5f167f44f4964e6c998dee827110c"
    ));
    assert!(looks_like_secret(
        "ANYTHING",
        "xoxb-1234567890-abcdefghijkl"
    ));
    assert!(!looks_like_secret("GITHUB_TOKEN", "${env:GITHUB_TOKEN}"));
    assert!(!looks_like_secret("GITHUB_TOKEN", "${input:token}"));
    assert!(!looks_like_secret("GITHUB_TOKEN", "<your-token>"));
    assert!(!looks_like_secret("API_KEY", "YOUR_API_KEY_HERE"));
    assert!(!looks_like_secret("PATH", "/usr/local/bin:/usr/bin"));
    assert!(!looks_like_secret("MONKEY", "bananas-and-more"));
    assert!(!looks_like_secret("AUTHOR", "Jane Doe Smith"));
    assert!(!looks_like_secret("LOG_LEVEL", "debug-verbose"));
}

#[test]
fn masking_never_shows_the_middle() {
    let m = mask("ghp_abcdefghijklmnopqrstuvwxyz0123456789");
    assert!(m.starts_with("ghp") && !m.contains("abcdefghijkl"), "{m}");
    assert_eq!(mask("short"), "*****");
}

#[test]
fn mutable_package_references_are_a_finding_of_their_own() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let entry = |command: &str, args: Vec<String>| ServerEntry {
        name: "s".into(),
        location: crate::ConfigLocation {
            client: Client::ClaudeDesktop,
            scope: crate::Scope::User,
            format: crate::Format::McpServers,
            path: std::path::PathBuf::from("claude.json"),
        },
        field: String::new(),
        line: 1,
        field_lines: Default::default(),
        transport: Some(Transport::Stdio {
            command: command.into(),
            args,
            env: vec![],
        }),
        disabled: false,
    };
    let rules = |e: &ServerEntry| {
        check_server(e)
            .into_iter()
            .map(|f| f.rule)
            .collect::<Vec<_>>()
    };
    // A git branch through uvx: pinned by the old rule's reading, mutable by the new one.
    let git = entry(
        "uvx",
        a(&[
            "--from",
            "git+https://user:tok3n@github.com/o/r@main",
            "server",
        ]),
    );
    let found = check_server(&git);
    let mutable: Vec<&ScanFinding> = found
        .iter()
        .filter(|f| f.rule == "config.mutable-package-reference")
        .collect();
    assert_eq!(mutable.len(), 1, "{found:?}");
    assert!(
        !mutable[0].evidence.contains("tok3n"),
        "{}",
        mutable[0].evidence
    );
    assert!(mutable[0].evidence.contains("***@github.com/o/r@main"));
    // Pinned to a commit: no finding.
    let commit = entry(
        "uvx",
        a(&[
            "--from",
            "git+https://github.com/o/r@0123456789abcdef0123456789abcdef01234567",
            "server",
        ]),
    );
    assert!(!rules(&commit).contains(&"config.mutable-package-reference"));
    // An unpinned package is reported once, by the older rule.
    let floating = entry("npx", a(&["-y", "pkg"]));
    let r = rules(&floating);
    assert!(r.contains(&"config.unpinned-package"));
    assert!(!r.contains(&"config.mutable-package-reference"));
    // A rule with metadata, so SARIF names it.
    assert!(rule("config.mutable-package-reference").is_some());
}
