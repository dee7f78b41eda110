//! `scan`, `wrap` and `unwrap` against a fake home directory holding real-format configurations
//! of every supported client.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::bin;

const GITHUB_TOKEN: &str = "ghp_R4nd0mT0k3nV4lu3F0rT3st1ng0123456789";

/// The files a machine with every client configured holds, relative to the fake home (and
/// `project/` for project scope), with the problems a scan must find planted in them.
fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            ".config/Claude/claude_desktop_config.json",
            format!(
                r#"{{
  "mcpServers": {{
    "github": {{
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github@2025.4.8"],
      "env": {{ "GITHUB_PERSONAL_ACCESS_TOKEN": "{GITHUB_TOKEN}" }}
    }}
  }}
}}
"#
            ),
        ),
        (
            ".claude.json",
            r#"{"numStartups": 3, "mcpServers": {"memory": {"type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory@2025.9.25"], "env": {}}},
 "projects": {"/src/app": {"mcpServers": {"sqlite": {"command": "uvx", "args": ["mcp-server-sqlite==0.6.2", "--db-path", "x.db"]}}}}}
"#
            .into(),
        ),
        (
            ".cursor/mcp.json",
            r#"{
  "mcpServers": {
    "browser": { "command": "npx", "args": ["-y", "@playwright/mcp"] }
  }
}
"#
            .into(),
        ),
        (
            ".config/Code/User/mcp.json",
            r#"{
	// VS Code user servers
	"servers": {
		"docs": { "type": "http", "url": "https://docs.example.com/mcp" },
	},
	"inputs": [],
}
"#
            .into(),
        ),
        (
            ".codeium/windsurf/mcp_config.json",
            r#"{"mcpServers": {"crm": {"serverUrl": "http://crm.internal.example:8080/mcp"}}}
"#
            .into(),
        ),
        (
            ".config/zed/settings.json",
            r#"// Zed settings
{
  "theme": "One Dark",
  "context_servers": {
    "fetch": { "source": "custom", "command": "uvx", "args": ["mcp-server-fetch"] }
  }
}
"#
            .into(),
        ),
        (
            ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json",
            r#"{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time==2025.9.25"], "disabled": false, "autoApprove": []}}}
"#
            .into(),
        ),
        (
            ".gemini/settings.json",
            r#"{"theme": "Default", "mcpServers": {"docs": {"command": "node", "args": ["/opt/docs/server.js"]}}}
"#
            .into(),
        ),
        (
            ".codex/config.toml",
            r#"model = "o3"

[mcp_servers.search]
command = "npx"
args = ["-y", "search-mcp@1.2.3"]

[mcp_servers.search.env]
SEARCH_API_KEY = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
"#
            .into(),
        ),
        (
            "project/.vscode/mcp.json",
            r#"{"servers": {"repo-tools": {"command": "python3", "args": ["tools.py"]}}}
"#
            .into(),
        ),
    ]
}

fn fake_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    for (rel, text) in files() {
        let p = home.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    home
}

fn warden(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(home.join("project"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn findings(home: &Path) -> Vec<Value> {
    let (code, out, err) = warden(home, &["scan", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn has(findings: &[Value], rule: &str, server: &str) -> bool {
    findings
        .iter()
        .any(|f| f["rule"] == rule && f["server"] == server)
}

#[test]
fn scan_discovers_every_client_and_finds_the_planted_problems() {
    let home = fake_home();
    let f = findings(home.path());
    let clients: std::collections::BTreeSet<&str> =
        f.iter().filter_map(|x| x["client"].as_str()).collect();
    for c in [
        "claude-desktop",
        "claude-code",
        "cursor",
        "vscode",
        "windsurf",
        "zed",
        "cline",
        "gemini-cli",
        "codex",
    ] {
        assert!(clients.contains(c), "{c} missing from {clients:?}");
    }
    assert!(has(&f, "config.plaintext-secret", "github"));
    assert!(
        has(&f, "config.plaintext-secret", "search"),
        "TOML env in a sub-table"
    );
    assert!(
        has(&f, "config.unpinned-package", "browser"),
        "npx without a version"
    );
    assert!(
        has(&f, "config.unpinned-package", "fetch"),
        "uvx without a version"
    );
    assert!(
        !has(&f, "config.unpinned-package", "github"),
        "pinned npm package"
    );
    assert!(
        !has(&f, "config.unpinned-package", "sqlite"),
        "pinned PyPI package"
    );
    assert!(has(&f, "config.insecure-transport", "crm"));
    assert!(
        !has(&f, "config.insecure-transport", "docs"),
        "https is fine"
    );
    assert!(
        has(&f, "config.name-collision", "docs"),
        "VS Code and Gemini CLI both have `docs`"
    );
    assert!(
        has(&f, "config.not-routed", "repo-tools"),
        "project scope is read"
    );
    // The token itself never appears in the report.
    let text = serde_json::to_string(&f).unwrap();
    assert!(!text.contains(GITHUB_TOKEN));
    assert!(!text.contains("4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"));
    let secret = f
        .iter()
        .find(|x| x["rule"] == "config.plaintext-secret" && x["server"] == "github")
        .unwrap();
    assert_eq!(secret["line"], 6, "points at the server's line in the file");
    assert!(
        secret["file"]
            .as_str()
            .unwrap()
            .ends_with("claude_desktop_config.json")
    );
}

#[test]
fn fail_on_sets_the_exit_code() {
    let home = fake_home();
    let (code, _, _) = warden(home.path(), &["scan", "--fail-on", "high"]);
    assert_eq!(code, 1, "plaintext secrets are high");
    let clean = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(clean.path().join("project")).unwrap();
    let (code, out, _) = warden(clean.path(), &["scan", "--fail-on", "low"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 configuration file(s)"), "{out}");
}

/// The SARIF output is valid against the SARIF 2.1.0 JSON schema (validated by ajv, from npm).
#[test]
fn sarif_output_matches_the_sarif_2_1_0_schema() {
    let home = fake_home();
    let (code, out, err) = warden(home.path(), &["scan", "--format", "sarif"]);
    assert_eq!(code, 0, "{err}");
    let sarif: Value = serde_json::from_str(&out).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= 10);
    for r in results {
        let rule = r["ruleId"].as_str().unwrap();
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(sarif["runs"][0]["tool"]["driver"]["rules"][idx]["id"], rule);
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("scan.sarif");
    std::fs::write(&doc, &out).unwrap();
    let modules = warden_test::deps::node_modules();
    let schema = modules.join("@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json");
    assert!(schema.is_file(), "run scripts/test-deps.sh");
    // ajv 6 (jest-sarif's own), which still validates draft-04 schemas like SARIF's.
    let ajv = modules.join("@microsoft/jest-sarif/node_modules/ajv");
    let script = format!(
        r#"const Ajv = require({ajv:?}); const fs = require("fs");
const ajv = new Ajv({{allErrors: true, schemaId: "auto"}});
ajv.addMetaSchema(require({meta:?}));
const ok = ajv.validate(JSON.parse(fs.readFileSync({schema:?})), JSON.parse(fs.readFileSync({doc:?})));
if (!ok) {{ console.error(JSON.stringify(ajv.errors, null, 1)); process.exit(1); }}"#,
        ajv = ajv.display().to_string(),
        meta = ajv
            .join("lib/refs/json-schema-draft-04.json")
            .display()
            .to_string(),
        schema = schema.display().to_string(),
        doc = doc.display().to_string(),
    );
    let run = Command::new(warden_test::deps::node())
        .arg("-e")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // And a document that breaks the schema is refused by the same validator (the check can fail).
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    std::fs::write(&doc, broken.to_string()).unwrap();
    let script2 = format!(
        r#"const Ajv = require({ajv:?}); const fs = require("fs");
const ajv = new Ajv({{schemaId: "auto"}});
ajv.addMetaSchema(require({meta:?}));
process.exit(ajv.validate(JSON.parse(fs.readFileSync({schema:?})), JSON.parse(fs.readFileSync({doc:?}))) ? 0 : 3);"#,
        ajv = ajv.display().to_string(),
        meta = ajv
            .join("lib/refs/json-schema-draft-04.json")
            .display()
            .to_string(),
        schema = schema.display().to_string(),
        doc = doc.display().to_string(),
    );
    let run = Command::new(warden_test::deps::node())
        .arg("-e")
        .arg(script2)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3));
}

fn snapshot(home: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    for (rel, _) in files() {
        let p = home.join(rel);
        out.push((p.clone(), std::fs::read(p).unwrap()));
    }
    out
}

#[test]
fn wrap_routes_every_server_and_unwrap_restores_each_file_byte_for_byte() {
    let home = fake_home();
    let before = snapshot(home.path());
    let (code, out, err) = warden(home.path(), &["wrap"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrapped"), "{out}");
    let f = findings(home.path());
    for server in [
        "github", "memory", "browser", "docs", "crm", "fetch", "time", "search",
    ] {
        assert!(
            !has(&f, "config.not-routed", server),
            "{server} still unrouted: {f:#?}"
        );
    }
    // Project files are only wrapped when named.
    assert!(has(&f, "config.not-routed", "repo-tools"));
    // Unpinned packages are still reported through the wrapper.
    assert!(has(&f, "config.unpinned-package", "browser"));
    let cursor = std::fs::read_to_string(home.path().join(".cursor/mcp.json")).unwrap();
    let v: Value = serde_json::from_str(&cursor).unwrap();
    assert_eq!(v["mcpServers"]["browser"]["command"], "mcp-warden");
    assert_eq!(
        v["mcpServers"]["browser"]["args"],
        serde_json::json!(["run", "--", "npx", "-y", "@playwright/mcp"])
    );
    assert!(
        home.path()
            .join(".cursor/mcp.json.mcp-warden.bak")
            .is_file()
    );

    let after_wrap = snapshot(home.path());
    let (code, _, err) = warden(home.path(), &["wrap"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(snapshot(home.path()), after_wrap, "wrap is idempotent");

    let (code, _, err) = warden(home.path(), &["unwrap"]);
    assert_eq!(code, 0, "{err}");
    for ((path, original), (_, now)) in before.iter().zip(snapshot(home.path())) {
        assert_eq!(
            String::from_utf8_lossy(original),
            String::from_utf8_lossy(&now),
            "{} differs after unwrap",
            path.display()
        );
    }
    assert!(
        !home
            .path()
            .join(".cursor/mcp.json.mcp-warden.json")
            .exists(),
        "manifest removed"
    );
}

#[test]
fn wrap_one_client_only() {
    let home = fake_home();
    let (code, _, err) = warden(home.path(), &["wrap", "--client", "cursor"]);
    assert_eq!(code, 0, "{err}");
    let f = findings(home.path());
    assert!(!has(&f, "config.not-routed", "browser"));
    assert!(
        has(&f, "config.not-routed", "github"),
        "other clients untouched"
    );
    let (code, _, err) = warden(home.path(), &["wrap", "--client", "emacs"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown client"), "{err}");
}

/// `scan --start` starts each configured stdio server (sandboxed), fetches its tools and runs
/// the detection engine: a poisoned description is found, the same tool under a benign
/// description is not, and tool names two servers share are reported as collisions (by the engine's cross-server check).
#[test]
fn scan_start_analyses_the_servers_tools() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("project")).unwrap();
    let python = warden_test::deps::python();
    let server = warden_test::deps::fixture("python/pinning_server.py");
    let entry = |desc: &str| {
        serde_json::json!({
            "command": python.display().to_string(),
            "args": [
                server.display().to_string(),
                "stdio",
                "--description-file",
                warden_test::deps::fixture(desc).display().to_string(),
            ],
        })
    };
    let claude =
        serde_json::json!({"mcpServers": {"poisoned": entry("python/poisoned-description.txt")}});
    let cursor =
        serde_json::json!({"mcpServers": {"clean": entry("python/benign-description.txt")}});
    for (rel, v) in [
        (".config/Claude/claude_desktop_config.json", claude),
        (".cursor/mcp.json", cursor),
    ] {
        let p = home.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    let (code, out, err) = warden(
        home.path(),
        &[
            "scan",
            "--start",
            "--timeout",
            "60",
            "--format",
            "json",
            "--fail-on",
            "high",
        ],
    );
    let f: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert!(
        !f.iter().any(|x| x["rule"] == "server.unreachable"),
        "both servers start: {f:#?}\n{err}"
    );
    let poisoning = |server: &str| {
        f.iter()
            .filter(|x| {
                x["server"] == server
                    && x["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("tool `fetch`")
            })
            .filter(|x| !x["rule"].as_str().unwrap_or("").ends_with("name-collision"))
            .filter(|x| x["severity"] == "high" || x["severity"] == "critical")
            .count()
    };
    assert!(poisoning("poisoned") > 0, "{f:#?}");
    assert_eq!(poisoning("clean"), 0, "{f:#?}");
    for server in ["poisoned", "clean"] {
        assert!(
            f.iter().any(|x| x["rule"] == "poison.name-collision"
                && x["server"] == server
                && x["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("tool `fetch`")),
            "{f:#?}"
        );
    }
    assert_eq!(code, 1, "a high finding fails the scan");
}

/// `mcp-warden serve` on https with the PEM certificate and key (written into `dir`).
async fn https_serve(
    dir: &std::path::Path,
    cert_pem: &str,
    key_pem: &str,
) -> crate::support::Serve {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    crate::support::Serve::start(&format!(
        "[http]\ntls_cert = {}\ntls_key = {}\n",
        crate::support::toml_str(&cert.display().to_string()),
        crate::support::toml_str(&key.display().to_string())
    ))
    .await
    .unwrap()
}

/// A Cursor configuration under `home` with one remote server, `name`, at
/// `https://127.0.0.1:PORT/mcp`.
fn cursor_config_with_remote(home: &std::path::Path, name: &str, port: u16) {
    std::fs::create_dir_all(home.join("project")).unwrap();
    let p = home.join(".cursor/mcp.json");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let url = format!("https://127.0.0.1:{port}/mcp");
    std::fs::write(
        &p,
        serde_json::json!({"mcpServers": {name: {"url": url}}}).to_string(),
    )
    .unwrap();
}

/// `scan --connect` reports a remote server whose certificate does not validate (here a real
/// `mcp-warden serve` with a self-signed certificate on 127.0.0.1).
#[tokio::test]
async fn scan_connect_reports_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let serve = https_serve(
        dir.path(),
        &certified.cert.pem(),
        &certified.signing_key.serialize_pem(),
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    cursor_config_with_remote(home.path(), "selfsigned", serve.port);
    let home_path = home.path().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        warden(
            &home_path,
            &["scan", "--connect", "--timeout", "20", "--format", "json"],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let f: Vec<Value> = serde_json::from_str(&out).unwrap();
    let bad = f
        .iter()
        .find(|x| x["rule"] == "server.bad-tls")
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert_eq!(bad["server"], "selfsigned");
    assert_eq!(bad["severity"], "high");
}

/// `scan --connect --ca-file PEM` trusts a remote server whose certificate an internal
/// authority issued: no bad-certificate finding, and the server is analysed over TLS; without
/// the file the same server is reported.
#[tokio::test]
async fn scan_connect_trusts_an_internal_ca_given_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = warden_test::tls::internal_ca("127.0.0.1");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let serve = https_serve(dir.path(), &ca.cert_pem, &ca.key_pem).await;
    let home = tempfile::tempdir().unwrap();
    cursor_config_with_remote(home.path(), "internal", serve.port);
    let scan = |extra: Vec<String>| {
        let home_path = home.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["scan", "--connect", "--timeout", "20", "--format", "json"];
            args.extend(extra.iter().map(String::as_str));
            warden(&home_path, &args)
        })
    };
    let rules = |out: &str| -> Vec<String> {
        let f: Vec<Value> = serde_json::from_str(out).unwrap();
        f.iter()
            .filter(|x| x["server"] == "internal")
            .map(|x| x["rule"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, out, err) = scan(Vec::new()).await.unwrap();
    let without = rules(&out);
    assert!(
        without.iter().any(|r| r == "server.bad-tls"),
        "{without:?}\n{err}"
    );

    let (_, out, err) = scan(vec!["--ca-file".into(), ca_file.display().to_string()])
        .await
        .unwrap();
    let with = rules(&out);
    assert!(
        !with
            .iter()
            .any(|r| r == "server.bad-tls" || r == "server.unreachable"),
        "{with:?}\n{err}"
    );

    // An unusable file is a start-up error naming the option.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "junk\n").unwrap();
    let (code, _, err) = scan(vec!["--ca-file".into(), junk.display().to_string()])
        .await
        .unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("--ca-file: "), "{err}");
}
