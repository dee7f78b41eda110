//! An https upstream whose certificate an internal certificate authority issued: trusted with
//! `--ca-file` (and `ca_file` in `warden.toml`), refused without. The upstream is a real
//! `mcp-warden serve` with TLS on loopback in front of the Python SDK fixture, and the client
//! reaches it through `mcp-warden run --url`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use warden_test::deps;
use warden_test::stdio::StdioClient;

use crate::support::{Serve, bin, fresh_data_dir, toml_str};

const BOUND: Duration = Duration::from_secs(60);

/// Writes `ca.pem` (a certificate authority made here), and `cert.pem` / `key.pem` (a
/// certificate for 127.0.0.1 it issued) into `dir`.
fn internal_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = warden_test::tls::internal_ca("127.0.0.1");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, &ca.ca_pem).unwrap();
    std::fs::write(&paths.1, &ca.cert_pem).unwrap();
    std::fs::write(&paths.2, &ca.key_pem).unwrap();
    paths
}

/// `serve` with TLS (`cert`, `key`) in front of the Python SDK fixture on stdio.
async fn tls_upstream(cert: &Path, key: &Path) -> Serve {
    let python = deps::python().to_string_lossy().into_owned();
    let server = deps::fixture("python/server.py")
        .to_string_lossy()
        .into_owned();
    Serve::start(&format!(
        "[http]\ntls_cert = {}\ntls_key = {}\n\
         [upstreams.py]\ncommand = {}\nargs = [{}, \"stdio\"]\nera = \"legacy\"\n",
        toml_str(&cert.display().to_string()),
        toml_str(&key.display().to_string()),
        toml_str(&python),
        toml_str(&server),
    ))
    .await
    .unwrap()
}

/// `mcp-warden run --url URL` with `extra` options, its stderr in `log`.
fn run_url(url: &str, extra: &[&str], log: &Path) -> StdioClient {
    let mut c = tokio::process::Command::new(bin());
    c.arg("run")
        .arg("--url")
        .arg(url)
        .args(extra)
        .env("MCP_WARDEN_LOG", "warn")
        .env("MCP_WARDEN_DATA_DIR", fresh_data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    StdioClient::start(c).unwrap()
}

#[tokio::test]
async fn an_https_upstream_of_an_internal_ca_is_trusted_only_with_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = internal_ca(dir.path());
    let upstream = tls_upstream(&cert, &key).await;
    let url = format!("https://127.0.0.1:{}/mcp", upstream.port);
    let ca_arg = ca.display().to_string();

    // With the CA: the handshake, a list and a call go through.
    let log = dir.path().join("trusted.log");
    let mut client = run_url(&url, &["--ca-file", &ca_arg], &log);
    tokio::time::timeout(BOUND, async {
        client.initialize("2025-11-25").await.unwrap();
        let list = client.request("tools/list", json!({})).await.unwrap();
        let tools = list["result"]["tools"].as_array().expect("a tool list");
        assert!(!tools.is_empty(), "{list}");
    })
    .await
    .expect("in time");
    client.close_stdin();
    client.guard.wait(BOUND).await.unwrap();

    // Without it the certificate chains to no trusted root: nothing succeeds, and the log
    // says why.
    let log = dir.path().join("untrusted.log");
    let mut client = run_url(&url, &[], &log);
    let outcome = tokio::time::timeout(BOUND, client.initialize("2025-11-25")).await;
    assert!(
        !matches!(outcome, Ok(Ok(_))),
        "an untrusted certificate must not be accepted"
    );
    client.close_stdin();
    let _ = client.guard.wait(BOUND).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// Runs `mcp-warden ARGS` (a fresh data directory), which must stop at start-up with exit
/// code 2; its standard error.
async fn start_up_error(args: &[&std::ffi::OsStr]) -> String {
    let out = tokio::time::timeout(
        BOUND,
        tokio::process::Command::new(bin())
            .args(args)
            .env("MCP_WARDEN_DATA_DIR", fresh_data_dir())
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "mcp-warden {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_tls_files_are_start_up_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let run_url = [os("run"), os("--url"), os("https://127.0.0.1:9/mcp")];

    // `run --url --ca-file` with no such file.
    let missing = dir.path().join("absent.pem");
    let err =
        start_up_error(&[&run_url[..], &[os("--ca-file"), missing.as_os_str()]].concat()).await;
    assert!(err.contains("--ca-file: cannot read"), "{err}");

    // A client certificate with another certificate's key.
    let ca = warden_test::tls::internal_ca("127.0.0.1");
    let other = ca.issue("someone else");
    let cert = dir.path().join("client.pem");
    let key = dir.path().join("other-key.pem");
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &other.key_pem).unwrap();
    let err = start_up_error(
        &[
            &run_url[..],
            &[
                os("--client-cert"),
                cert.as_os_str(),
                os("--client-key"),
                key.as_os_str(),
            ],
        ]
        .concat(),
    )
    .await;
    assert!(
        err.contains("--client-cert:") && err.contains("cannot be used together"),
        "{err}"
    );

    // `serve`: the field is named.
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\n[upstreams.remote]\nurl = \"https://127.0.0.1:9/mcp\"\nca_file = {}\n",
            warden_test::free_port(),
            toml_str(&missing.display().to_string())
        ),
    )
    .unwrap();
    let err = start_up_error(&[
        os("serve"),
        os("--config"),
        config.as_os_str(),
        os("--data-dir"),
        dir.path().as_os_str(),
    ])
    .await;
    assert!(
        err.contains("upstreams.remote.ca_file: cannot read"),
        "{err}"
    );
}
