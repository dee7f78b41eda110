use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::env::MapEnv;
use crate::*;

fn parse(text: &str) -> Config {
    match Config::parse(text, "warden.toml") {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid configuration, got:\n{errors}"),
    }
}

fn errors(text: &str) -> String {
    match Config::parse(text, "warden.toml") {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.to_string(),
    }
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

const DESIGN_MINIMAL: &str = r#"listen = "127.0.0.1:8080"            # Streamable HTTP endpoint served at /mcp

[upstreams.everything]                # a stdio server the gateway starts (sandboxed)
command = "npx"
args = ["-y", "@modelcontextprotocol/server-everything@2026.8.31"]

[upstreams.docs]                      # a remote Streamable HTTP server
url = "https://mcp.example.com/mcp"
"#;

#[test]
fn parses_the_minimal_configuration_from_design() {
    let config = parse(DESIGN_MINIMAL);
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.upstreams.len(), 2);

    let everything = &config.upstreams[0];
    assert_eq!(everything.name, "everything");
    assert_eq!(
        everything.transport,
        UpstreamTransport::Stdio(StdioUpstreamConfig {
            command: "npx".into(),
            args: vec![
                "-y".into(),
                "@modelcontextprotocol/server-everything@2026.8.31".into()
            ],
            env: vec![],
            cwd: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sandbox: Default::default(),
        })
    );
    assert_eq!(everything.era, Era::Auto);
    assert_eq!(everything.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(everything.startup_timeout, DEFAULT_STARTUP_TIMEOUT);
    assert!(everything.enabled);

    let docs = config.upstream("docs").unwrap();
    let UpstreamTransport::Http(http) = &docs.transport else {
        panic!("docs is an HTTP upstream");
    };
    assert_eq!(http.url.as_str(), "https://mcp.example.com/mcp");
    assert!(http.headers.is_empty());

    // Everything else is the zero configuration.
    assert_eq!(
        Config {
            upstreams: vec![],
            ..config
        },
        Config::default()
    );
}

#[test]
fn empty_file_is_the_zero_configuration() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("# nothing here\n"), Config::default());
}

#[test]
fn zero_configuration_has_documented_defaults() {
    let config = Config::default();
    assert_eq!(config.listen, DEFAULT_LISTEN);
    assert_eq!(config.allowed_hosts, HostAllowlist::Loopback);
    assert_eq!(config.allowed_origins, OriginAllowlist::default());
    assert!(!config.insecure_allow_unauthenticated_non_loopback);
    assert_eq!(config.limits.max_message_bytes.get(), 4 * 1024 * 1024);
    assert_eq!(config.limits.max_depth.get(), 64);
    assert_eq!(
        config.limits.max_line_bytes,
        config.limits.max_message_bytes
    );
    assert_eq!(
        config.limits.max_body_bytes,
        config.limits.max_message_bytes
    );
    assert_eq!(config.http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.http.request_timeout, Duration::from_secs(300));
    assert_eq!(config.http.session_idle_timeout, Duration::from_secs(1800));
    assert_eq!(
        config.http.session_max_lifetime,
        Duration::from_secs(86_400)
    );
    assert_eq!(config.http.max_sessions.get(), 10_000);
    assert_eq!(config.http.max_streams_per_session.get(), 16);
    assert_eq!(config.http.sse_keepalive, Duration::from_secs(15));
    assert_eq!(config.http.sse_replay_buffer, 256);
    assert_eq!(config.http.tls, None);
    assert!(config.upstreams.is_empty());
}

#[test]
fn parses_every_key() {
    let config = parse(
        r#"
listen = "[::1]:9000"
data_dir = "/var/lib/mcp-warden"
audit_log = "/var/log/mcp-warden/audit.jsonl"
log_level = "info,warden_guard=debug"
allowed_hosts = ["gw.example.com", "gw.example.com:9000", "10.0.0.5:*"]
allowed_origins = ["https://app.example.com", "http://localhost:*"]
public_url = "https://gw.example.com/mcp"
insecure_allow_unauthenticated_non_loopback = true

[limits]
max_message_bytes = 1048576
max_depth = 32
max_line_bytes = 2097152
max_body_bytes = 524288
stdio_max_in_flight = 8
stdio_max_queued = 0
stdio_max_queued_bytes = 65536

[http]
header_read_timeout = "5s"
request_timeout = "2m"
session_idle_timeout = "10m"
session_max_lifetime = "1y"
max_sessions = 500
max_streams_per_session = 4
sse_keepalive = "20s"
sse_replay_buffer = 0
tls_cert = "/etc/mcp-warden/cert.pem"
tls_key = "/etc/mcp-warden/key.pem"

[upstreams.github]
command = "github-mcp-server"
args = ["stdio"]
env = { GITHUB_TOKEN = "env:GITHUB_TOKEN", LOG = "debug", KEY = "file:/run/secrets/key" }
cwd = "/srv"
era = "modern"
request_timeout = "1m"
startup_timeout = "1m"
shutdown_grace = "0s"
enabled = false

[upstreams.remote]
url = "http://127.0.0.1:3000/mcp"
era = "legacy"
ca_file = "/etc/mcp-warden/internal-ca.pem"
client_cert = "/etc/mcp-warden/client.pem"
client_key = "/etc/mcp-warden/client-key.pem"

[upstreams.remote.headers]
Authorization = "env:REMOTE_TOKEN"
X-Tenant = "acme"
"#,
    );
    assert_eq!(config.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(config.data_dir, Some(PathBuf::from("/var/lib/mcp-warden")));
    assert_eq!(
        config.audit_log,
        Some(PathBuf::from("/var/log/mcp-warden/audit.jsonl"))
    );
    assert_eq!(config.log_level.as_deref(), Some("info,warden_guard=debug"));
    let hosts: Vec<String> = config
        .allowed_hosts
        .patterns(9000)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        hosts,
        ["gw.example.com", "gw.example.com:9000", "10.0.0.5:*"]
    );
    let origins: Vec<String> = config
        .allowed_origins
        .patterns()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(origins, ["https://app.example.com", "http://localhost:*"]);
    assert_eq!(
        config.public_url.as_ref().map(url::Url::as_str),
        Some("https://gw.example.com/mcp")
    );
    assert!(config.insecure_allow_unauthenticated_non_loopback);
    assert_eq!(
        config.limits,
        LimitsConfig {
            max_message_bytes: nz(1 << 20),
            max_depth: nz(32),
            max_line_bytes: nz(2 << 20),
            max_body_bytes: nz(512 << 10),
            stdio_max_in_flight: nz(8),
            stdio_max_queued: 0,
            stdio_max_queued_bytes: nz(64 << 10),
        }
    );
    assert_eq!(
        config.http,
        HttpConfig {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            session_idle_timeout: Duration::from_secs(600),
            session_max_lifetime: Duration::from_secs(31_557_600),
            max_sessions: nz(500),
            max_streams_per_session: nz(4),
            sse_keepalive: Duration::from_secs(20),
            sse_replay_buffer: 0,
            tls: Some(TlsConfig {
                cert: "/etc/mcp-warden/cert.pem".into(),
                key: "/etc/mcp-warden/key.pem".into(),
            }),
        }
    );

    let github = &config.upstreams[0];
    assert_eq!(github.era, Era::Modern);
    assert_eq!(github.request_timeout, Duration::from_secs(60));
    assert_eq!(github.startup_timeout, Duration::from_secs(60));
    assert!(!github.enabled);
    assert_eq!(
        github.transport,
        UpstreamTransport::Stdio(StdioUpstreamConfig {
            command: "github-mcp-server".into(),
            args: vec!["stdio".into()],
            env: vec![
                ("GITHUB_TOKEN".into(), ValueRef::Env("GITHUB_TOKEN".into())),
                ("LOG".into(), ValueRef::Literal("debug".into())),
                ("KEY".into(), ValueRef::File("/run/secrets/key".into())),
            ],
            cwd: Some("/srv".into()),
            shutdown_grace: Duration::ZERO,
            sandbox: Default::default(),
        })
    );

    let remote = &config.upstreams[1];
    assert_eq!(remote.era, Era::Legacy);
    // No override: the [http] value applies.
    assert_eq!(remote.request_timeout, Duration::from_secs(120));
    assert_eq!(
        remote.transport,
        UpstreamTransport::Http(HttpUpstreamConfig {
            url: "http://127.0.0.1:3000/mcp".parse().unwrap(),
            headers: vec![
                ("Authorization".into(), ValueRef::Env("REMOTE_TOKEN".into())),
                ("X-Tenant".into(), ValueRef::Literal("acme".into())),
            ],
            ca_file: Some("/etc/mcp-warden/internal-ca.pem".into()),
            client_identity: Some(TlsConfig {
                cert: "/etc/mcp-warden/client.pem".into(),
                key: "/etc/mcp-warden/client-key.pem".into(),
            }),
        })
    );
}

#[test]
fn upstreams_keep_file_order() {
    let config = parse(
        r#"
[upstreams.zeta]
command = "z"
[upstreams.alpha]
command = "a"
[upstreams.mu]
url = "https://mu.example/mcp"
"#,
    );
    let names: Vec<_> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha", "mu"]);
}

#[test]
fn line_and_body_limits_follow_the_message_limit() {
    let config = parse("[limits]\nmax_message_bytes = 1000\n");
    assert_eq!(config.limits.max_line_bytes, nz(1000));
    assert_eq!(config.limits.max_body_bytes, nz(1000));
}

#[test]
fn debug_output_hides_literal_credentials() {
    let config = parse(
        r#"
[upstreams.a]
command = "a"
env = { TOKEN = "ghp_supersecret1" }
[upstreams.b]
url = "https://b.example/mcp"
headers = { Authorization = "Bearer supersecret2" }
"#,
    );
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains("supersecret"), "{shown}");
}

// ---- error paths ----

#[test]
fn rejects_unknown_top_level_key() {
    insta::assert_snapshot!(errors("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n"));
}

#[test]
fn rejects_unknown_key_in_upstream() {
    insta::assert_snapshot!(errors(
        "[upstreams.docs]\nurl = \"https://x.example/mcp\"\ntimeout = \"5s\"\n"
    ));
}

#[test]
fn rejects_unknown_keys_in_sections() {
    insta::assert_snapshot!(errors(
        "[limits]\nmax_bytes = 1\n\n[http]\ntimeout = \"1s\"\n\n[upstream.docs]\nurl = \"x\"\n"
    ));
}

#[test]
fn rejects_command_and_url_together() {
    insta::assert_snapshot!(errors(
        "[upstreams.both]\ncommand = \"npx\"\nurl = \"https://x.example/mcp\"\n"
    ));
}

#[test]
fn rejects_upstream_without_command_or_url() {
    insta::assert_snapshot!(errors("[upstreams.empty]\nera = \"auto\"\n"));
}

#[test]
fn rejects_bad_upstream_names() {
    insta::assert_snapshot!(errors(
        r#"
[upstreams.my_server]
command = "a"
[upstreams.my__server]
command = "a"
[upstreams.abcdefghijklmnopqrstuvwxyz0123456]
command = "a"
[upstreams."has space"]
command = "a"
[upstreams.""]
command = "a"
[upstreams.ok-Name-1]
command = "a"
"#
    ));
}

#[test]
fn upstream_name_rule_matches_the_regex() {
    assert!(check_upstream_name("a").is_ok());
    assert!(check_upstream_name("GitHub-2").is_ok());
    assert!(check_upstream_name(&"a".repeat(32)).is_ok());
    assert!(check_upstream_name(&"a".repeat(33)).is_err());
    for bad in ["", "a_b", "a__b", "a.b", "é", "a b"] {
        assert!(check_upstream_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn rejects_bad_durations() {
    insta::assert_snapshot!(errors(
        r#"
[http]
header_read_timeout = "10"
request_timeout = "5 parsecs"
sse_keepalive = "0s"
session_max_lifetime = "367days"
session_idle_timeout = 30
"#
    ));
}

#[test]
fn rejects_unsupported_url_scheme() {
    let text = "\n\n\n\n\n\n\n\n\n\n\n\n[upstreams.github]\nurl = \"ftp://github.example/mcp\"\n";
    assert_eq!(
        errors(text),
        r#"warden.toml:14: upstreams.github.url: unsupported scheme "ftp"; expected http or https"#
    );
}

#[test]
fn rejects_bad_urls() {
    insta::assert_snapshot!(errors(
        r#"
public_url = "https://user:pass@gw.example/mcp"
[upstreams.a]
url = "not a url"
[upstreams.b]
url = "https://b.example/mcp#frag"
[upstreams.c]
url = "file:///etc/passwd"
"#
    ));
}

#[test]
fn rejects_bad_listen_address() {
    insta::assert_snapshot!(errors("listen = \"localhost:8080\"\n"));
}

#[test]
fn rejects_tls_cert_without_key() {
    insta::assert_snapshot!(errors("[http]\ntls_cert = \"/etc/cert.pem\"\n"));
}

#[test]
fn rejects_tls_key_without_cert() {
    insta::assert_snapshot!(errors("[http]\ntls_key = \"/etc/key.pem\"\n"));
}

#[test]
fn rejects_out_of_range_limits() {
    insta::assert_snapshot!(errors(
        r#"
[limits]
max_message_bytes = 0
max_depth = 100000
max_line_bytes = 1073741825
max_body_bytes = -1
stdio_max_in_flight = 0
stdio_max_queued = 65537
stdio_max_queued_bytes = 0
[http]
max_sessions = 0
max_streams_per_session = 2000
sse_replay_buffer = 1000000
"#
    ));
}

#[test]
fn rejects_keys_of_the_other_transport() {
    insta::assert_snapshot!(errors(
        r#"
[upstreams.local]
command = "server"
headers = { X-A = "b" }
ca_file = "ca.pem"
client_cert = "c.pem"
[upstreams.remote]
url = "https://r.example/mcp"
client_key = "k.pem"
args = ["x"]
env = { A = "b" }
cwd = "/tmp"
shutdown_grace = "1s"
"#
    ));
}

#[test]
fn rejects_bad_env_and_headers() {
    insta::assert_snapshot!(errors(
        r#"
[upstreams.local]
command = ""
args = ["ok", "nul\u0000"]
env = { "A=B" = "x", TOKEN = "env:", OTHER = "file:" }
[upstreams.remote]
url = "https://r.example/mcp"
[upstreams.remote.headers]
"Bad Header" = "x"
Host = "evil.example"
X-Token = "a"
x-token = "b"
X-Split = "a\r\nInjected: yes"
"#
    ));
}

#[test]
fn rejects_bad_hosts_and_origins() {
    insta::assert_snapshot!(errors(
        r#"
allowed_hosts = []
allowed_origins = [
  "https://ok.example",
  "localhost:3000",
  "ftp://files.example",
  "https://app.example/path",
]
"#
    ));
    insta::assert_snapshot!(
        "rejects_bad_host_entries",
        errors("allowed_hosts = [\"::1\", \"*.example.com\", \"h:70000\"]\n")
    );
}

#[test]
fn cors_origins_must_be_valid_and_within_allowed_origins() {
    insta::assert_snapshot!(errors(
        r#"
allowed_origins = ["https://app.example", "http://localhost:*", "https://tools.example:8443"]
cors_origins = [
  "https://app.example",
  "http://localhost:5173",
  "https://app.example:444",
  "http://app.example",
  "https://tools.example:*",
  "https://tools.example:8443",
  "localhost:5173",
]
[auth]
api_keys = true
"#
    ));
    // The default allow-list (loopback, any port) covers loopback pages.
    let config = parse("cors_origins = [\"http://127.0.0.1:8000\", \"https://localhost\"]\n");
    assert_eq!(config.cors_origins.patterns().len(), 2);
    assert!(config.cors_origins.allows("http://127.0.0.1:8000"));
    assert!(!config.cors_origins.allows("http://127.0.0.1:8001"));
    assert!(
        parse("").cors_origins.patterns().is_empty(),
        "off by default"
    );
}

#[test]
fn cors_origins_of_other_sites_need_authentication() {
    let other = "allowed_origins = [\"https://app.example\", \"http://localhost:*\"]\n\
                 cors_origins = [\"http://localhost:5173\", \"https://app.example\"]\n";
    insta::assert_snapshot!(errors(other));
    let with_keys = parse(&format!("{other}[auth]\napi_keys = true\n"));
    assert_eq!(with_keys.cors_origins.patterns().len(), 2);
    // This machine's pages may without authentication (a local inspector).
    let local = parse("cors_origins = [\"http://localhost:5173\", \"http://[::1]:8000\"]\n");
    assert_eq!(local.cors_origins.patterns().len(), 2);
}

#[test]
fn rejects_wrong_types() {
    insta::assert_snapshot!(errors(
        r#"
listen = 8080
insecure_allow_unauthenticated_non_loopback = "yes"
upstreams = "none"
[limits]
max_depth = "64"
"#
    ));
}

#[test]
fn rejects_unknown_era() {
    insta::assert_snapshot!(errors("[upstreams.a]\ncommand = \"a\"\nera = \"future\"\n"));
}

#[test]
fn rejects_empty_values() {
    insta::assert_snapshot!(errors(
        "data_dir = \"\"\nlog_level = \" \"\n[upstreams.a]\ncommand = \"a\"\ncwd = \"\"\n"
    ));
}

#[test]
fn names_the_line_of_a_duplicate_key() {
    insta::assert_snapshot!(errors(
        "[upstreams.a]\ncommand = \"a\"\ncommand = \"b\"\n\n[upstreams.a]\nurl = \"https://a.example\"\n"
    ));
}

#[test]
fn names_the_line_of_a_bad_array_element() {
    insta::assert_snapshot!(errors(
        "[upstreams.a]\ncommand = \"a\"\nargs = [\n  \"one\",\n  2,\n]\n"
    ));
}

#[test]
fn a_rejected_command_is_not_also_missing() {
    // `command = 3` is reported once, as a wrong type, not again as "neither command nor url".
    insta::assert_snapshot!(errors("[upstreams.a]\ncommand = 3\n"));
}

#[test]
fn reports_several_errors_at_once_in_line_order() {
    let text = r#"# warden.toml with one mistake per section
listen = "0.0.0.0"
log_level = "info"
colour = true

[limits]
max_depth = 0

[http]
request_timeout = "soon"
tls_cert = "/etc/cert.pem"

[upstreams.github]
command = "github-mcp-server"
url = "https://api.github.example/mcp"

[upstreams.my_server]
command = "x"
retries = 3

[upstreams.docs]
url = "ftp://docs.example/mcp"
"#;
    let errors = Config::parse(text, "warden.toml").unwrap_err();
    let lines: Vec<_> = errors.iter().map(|error| error.line).collect();
    assert_eq!(
        lines,
        [
            Some(2),
            Some(4),
            Some(7),
            Some(10),
            Some(11),
            Some(13),
            Some(17),
            Some(19),
            Some(22),
        ]
    );
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn reports_syntax_errors_first_then_validation_errors() {
    let text = r#"listen = "127.0.0.1:1"
[upstreams.a]
command = "a"
bogus = 1
[upstreams.b]
url =
[http]
request_timeout = "soon"
"#;
    let errors = Config::parse(text, "warden.toml").unwrap_err();
    assert!(matches!(
        errors.errors()[0].kind,
        ConfigErrorKind::Syntax { .. }
    ));
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn error_parts_are_exposed() {
    let errors = Config::parse("[upstreams.a]\nurl = \"ftp://x\"\n", "w.toml").unwrap_err();
    let [error] = errors.errors() else {
        panic!("one error expected: {errors}");
    };
    assert_eq!(error.file, "w.toml");
    assert_eq!(error.line, Some(2));
    assert_eq!(error.field.as_ref().unwrap().to_string(), "upstreams.a.url");
    assert!(matches!(
        &error.kind,
        ConfigErrorKind::UnsupportedScheme { scheme } if scheme == "ftp"
    ));
}

#[test]
fn caps_schema_errors() {
    let text: String = (0..150).map(|n| format!("unknown{n} = 1\n")).collect();
    let errors = Config::parse(&text, "warden.toml").unwrap_err();
    assert_eq!(errors.len(), 101);
    assert_eq!(
        errors.errors()[100].to_string(),
        "warden.toml: too many errors; stopped after 100"
    );
}

// ---- loading files and resolving paths ----

#[test]
fn loads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, DESIGN_MINIMAL).unwrap();
    assert_eq!(Config::load(&path).unwrap(), parse(DESIGN_MINIMAL));
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let errors = Config::load(&missing).unwrap_err();
    let shown = errors.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the configuration file: ",
            missing.display()
        )),
        "{shown}"
    );

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"listen = \"127.0.0.1:1\"\n# \xff\n").unwrap();
    assert_eq!(
        Config::load(&binary).unwrap_err().to_string(),
        format!(
            "{}:2: the configuration file is not valid UTF-8",
            binary.display()
        )
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 1\n").unwrap();
    assert!(
        Config::load(&bad)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("{}:1: listen: ", bad.display()))
    );
}

#[test]
fn data_dir_precedence_is_flag_env_file_default() {
    let config = parse("data_dir = \"/from/file\"\n");
    let env = MapEnv::new()
        .with("HOME", "/home/ada")
        .with(env::MCP_WARDEN_DATA_DIR, "/from/env");
    let flag = Path::new("/from/flag");
    assert_eq!(
        config.resolve_data_dir(Some(flag), &env),
        Ok(PathBuf::from("/from/flag"))
    );
    assert_eq!(
        config.resolve_data_dir(None, &env),
        Ok(PathBuf::from("/from/env"))
    );
    let home_only = MapEnv::new().with("HOME", "/home/ada");
    assert_eq!(
        config.resolve_data_dir(None, &home_only),
        Ok(PathBuf::from("/from/file"))
    );
    assert_eq!(
        Config::default().resolve_data_dir(None, &home_only),
        Ok(env::default_data_dir(&home_only).unwrap())
    );
    assert_eq!(
        Config::default().resolve_data_dir(None, &MapEnv::new()),
        Err(PathError::NoDataDir)
    );
}

#[test]
fn audit_log_defaults_into_the_data_dir() {
    let data_dir = Path::new("/data");
    let none = MapEnv::new();
    assert_eq!(
        Config::default().resolve_audit_log(None, data_dir, &none),
        PathBuf::from("/data/audit.jsonl")
    );
    let config = parse("audit_log = \"/from/file.jsonl\"\n");
    assert_eq!(
        config.resolve_audit_log(None, data_dir, &none),
        PathBuf::from("/from/file.jsonl")
    );
    let env = MapEnv::new().with(env::MCP_WARDEN_AUDIT_LOG, "/from/env.jsonl");
    assert_eq!(
        config.resolve_audit_log(None, data_dir, &env),
        PathBuf::from("/from/env.jsonl")
    );
    assert_eq!(
        config.resolve_audit_log(Some(Path::new("/flag.jsonl")), data_dir, &env),
        PathBuf::from("/flag.jsonl")
    );
}

#[test]
fn log_filter_and_config_path_come_from_env_first() {
    let config = parse("log_level = \"warn\"\n");
    assert_eq!(
        config.resolve_log_filter(&MapEnv::new()).as_deref(),
        Some("warn")
    );
    let env = MapEnv::new()
        .with(env::MCP_WARDEN_LOG, "debug")
        .with(env::MCP_WARDEN_CONFIG, "/etc/warden.toml");
    assert_eq!(config.resolve_log_filter(&env).as_deref(), Some("debug"));
    assert_eq!(
        resolve_config_path(None, &env),
        Some(PathBuf::from("/etc/warden.toml"))
    );
    assert_eq!(
        resolve_config_path(Some(Path::new("w.toml")), &env),
        Some(PathBuf::from("w.toml"))
    );
    assert_eq!(resolve_config_path(None, &MapEnv::new()), None);
}

// ---- never panics ----

/// Lines built from the schema's own vocabulary, so generated documents reach deep into
/// validation instead of stopping at the first syntax error.
fn toml_line() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[limits]",
        "[http]",
        "[upstreams.a]",
        "[upstreams.b_c]",
        "[upstreams.a.env]",
        "[upstreams.a.headers]",
        "[[upstreams]]",
        "[upstreams]",
    ])
    .prop_map(str::to_owned);
    let key = prop::sample::select(vec![
        "listen",
        "url",
        "command",
        "args",
        "env",
        "headers",
        "tls_cert",
        "tls_key",
        "max_depth",
        "request_timeout",
        "shutdown_grace",
        "allowed_hosts",
        "allowed_origins",
        "era",
        "upstreams.x.url",
        "\"q\"",
        "unknown",
    ]);
    let value = prop::sample::select(vec![
        "\"127.0.0.1:8080\"",
        "\"https://a.example\"",
        "\"ftp://a\"",
        "\"5s\"",
        "\"0s\"",
        "0",
        "-1",
        "99999999999",
        "true",
        "[\"a\", 1]",
        "[]",
        "{ A = \"env:\" }",
        "{ Host = \"x\" }",
        "\"localhost:*\"",
        "\"",
        "[",
        "",
    ]);
    prop_oneof![
        header,
        (key, value).prop_map(|(key, value)| format!("{key} = {value}")),
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Config::parse(&text, "fuzz.toml");
    }

    #[test]
    fn parsing_toml_like_text_never_panics_and_lines_are_in_bounds(
        lines in prop::collection::vec(toml_line(), 0..24)
    ) {
        let text = lines.join("\n");
        if let Err(errors) = Config::parse(&text, "fuzz.toml") {
            prop_assert!(!errors.is_empty());
            let line_count = text.split('\n').count();
            for error in &errors {
                let _ = error.to_string();
                if let Some(line) = error.line {
                    prop_assert!((1..=line_count).contains(&line), "{error} in {line_count} lines");
                }
            }
        }
    }
}

#[test]
fn rejects_sections_and_values_of_the_wrong_shape() {
    insta::assert_snapshot!(errors(
        r#"
limits = 1
http = []
allowed_hosts = "localhost"
[upstreams]
a = "x"
b = { command = "b", era = 1, env = "x", args = "x", enabled = "yes" }
c = { command = "c", env.A.B = "x" }
"#
    ));
    insta::assert_snapshot!(
        "rejects_array_of_upstream_tables",
        errors("[[upstreams]]\ncommand = \"a\"\n")
    );
}

#[test]
fn every_toml_example_in_the_docs_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(&path).unwrap();
    let mut examples = 0;
    for (index, block) in docs.split("```toml\n").enumerate().skip(1) {
        let text = block.split("```").next().unwrap();
        if let Err(errors) = Config::parse(text, "configuration.md") {
            panic!("example {index} in {}:\n{errors}", path.display());
        }
        examples += 1;
    }
    assert!(examples >= 3, "found {examples} examples");
}

#[test]
fn accepts_crlf_and_byte_order_mark() {
    let config = parse("\u{feff}listen = \"127.0.0.1:9\"\r\n[upstreams.a]\r\ncommand = \"a\"\r\n");
    assert_eq!(config.listen.port(), 9);
    assert_eq!(
        errors("\u{feff}listen = \"127.0.0.1:9\"\r\n[upstreams.a]\r\nurl = \"ftp://a\"\r\n"),
        r#"warden.toml:3: upstreams.a.url: unsupported scheme "ftp"; expected http or https"#
    );
}
