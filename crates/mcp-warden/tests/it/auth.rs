//! Authentication of `mcp-warden serve` end to end: a real authorization server (metadata, JWKS
//! over HTTP on 127.0.0.1), tokens signed with RS256, ES256 and EdDSA keys generated here, API
//! keys made by `mcp-warden keys`, and the Python SDK fixture as the upstream, with every byte
//! it receives logged. Each deny path is checked for its status and challenge, and for the
//! upstream never having seen the refused call.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::process::Command;
use warden_test::deps;
use warden_test::http::HttpClient;
use warden_test::oauth::{self, Issuer, SigningKey};
use warden_test::process::Guard;

use crate::support::{bin, toml_str};

/// Bound on every wait in this module.
const BOUND: Duration = Duration::from_secs(60);
/// The gateway's resource URI in these tests (what tokens must be issued for).
const RESOURCE: &str = "https://gw.example.test/mcp";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running gateway with a logging Python upstream.
struct Gateway {
    _guard: Guard,
    url: String,
    base: String,
    log: PathBuf,
    dir: tempfile::TempDir,
    _logs: tempfile::TempDir,
}

/// `[upstreams.py]`: the Python SDK fixture on stdio, behind a small Python relay that
/// appends every byte it receives to `log` before passing it on.
fn upstream(log: &Path) -> String {
    const RELAY: &str = r#"
import subprocess, sys
log, server = sys.argv[1], sys.argv[2]
child = subprocess.Popen([sys.executable, server, "stdio"], stdin=subprocess.PIPE)
with open(log, "ab", buffering=0) as f:
    for line in sys.stdin.buffer:
        f.write(line)
        child.stdin.write(line)
        child.stdin.flush()
child.stdin.close()
child.wait()
"#;
    let python = deps::python().to_string_lossy().into_owned();
    let server = deps::fixture("python/server.py")
        .to_string_lossy()
        .into_owned();
    let args = [
        "-c".to_owned(),
        RELAY.to_owned(),
        log.to_string_lossy().into_owned(),
        server,
    ];
    let args: Vec<String> = args.iter().map(|a| toml_str(a)).collect();
    // The sandbox lets the upstream write its log's directory.
    let dir = log.parent().unwrap().to_string_lossy().into_owned();
    format!(
        "[upstreams.py]\ncommand = {}\nargs = [{}]\nera = \"legacy\"\n[upstreams.py.sandbox]\nwrite = [{}]\n",
        toml_str(&python),
        args.join(", "),
        toml_str(&dir)
    )
}

/// `mcp-warden` with `args` (data dir `dir`), its stdout.
async fn cli(dir: &Path, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        BOUND,
        Command::new(bin())
            .arg(args[0])
            .arg("--data-dir")
            .arg(dir)
            .args(&args[1..])
            .env("MCP_WARDEN_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "mcp-warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates an API key with `keys create`; returns (key, id).
async fn create_key(dir: &Path, principal: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "keys",
        "create",
        "--principal",
        principal,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let created: Value = serde_json::from_str(&cli(dir, &args).await).unwrap();
    (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

impl Gateway {
    /// Starts `serve` in `dir` with `auth` (TOML of the `[auth]` section).
    async fn start(dir: tempfile::TempDir, auth: &str) -> Gateway {
        // The upstream's log lives outside the data directory, which the sandbox hides.
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("upstream.log");
        let port = warden_test::free_port();
        let config = dir.path().join("warden.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\n{}\n{auth}\n",
                upstream(&log)
            ),
        )
        .unwrap();
        let guard = Guard::spawn(crate::support::serve_command(&config, dir.path())).unwrap();
        warden_test::wait_port(port, BOUND).await.unwrap();
        Gateway {
            _guard: guard,
            url: format!("http://127.0.0.1:{port}/mcp"),
            base: format!("http://127.0.0.1:{port}"),
            log,
            dir,
            _logs: logs,
        }
    }

    fn upstream_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The upstream log once it contains `needle` (tee may write after the answer).
    async fn upstream_log_through(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let seen = self.upstream_log();
            if seen.contains(needle) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upstream never logged {needle}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A legacy session opened with `credential` (`Authorization: Bearer <credential>`).
async fn session(url: &str, credential: &str) -> HttpClient {
    let mut client = HttpClient::new(url);
    let auth = format!("Bearer {credential}");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "auth-test", "version": "0"}}});
    let response = client
        .post_raw(
            serde_json::to_vec(&init).unwrap(),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "initialize: {}", response.text);
    client.session = response
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    client.version = Some("2025-11-25".into());
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let response = client
        .post_raw(
            serde_json::to_vec(&note).unwrap(),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    // The argument-schema guard validates calls against the listed tools.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let response = client
        .post_raw(
            serde_json::to_vec(&list).unwrap(),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "tools/list: {}", response.text);
    client
}

/// `tools/call py__add {a: marker, b: 1}` with `headers`.
async fn add(
    client: &HttpClient,
    marker: u64,
    headers: &[(&str, &str)],
) -> warden_test::http::Response {
    let call = json!({"jsonrpc": "2.0", "id": marker, "method": "tools/call",
        "params": {"name": "py__add", "arguments": {"a": marker, "b": 1}}});
    client
        .post_raw(serde_json::to_vec(&call).unwrap(), headers)
        .await
        .unwrap()
}

fn header<'a>(response: &'a warden_test::http::Response, name: &str) -> &'a str {
    response
        .headers
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

fn oauth_section(issuer: &Issuer, extra: &str) -> String {
    format!(
        "[auth]\nresource = \"{RESOURCE}\"\nissuer = \"{}\"\njwks_uri = \"{}/jwks\"\n\
         required_scopes = [\"mcp:tools\"]\napi_keys = true\napi_key_refresh = \"200ms\"\n{extra}",
        issuer.url, issuer.url
    )
}

// Proves: CAUTH-1, CAUTH-2, TOKEN-1, AUTH-5
#[tokio::test]
async fn every_deny_path_is_refused_before_the_upstream() {
    let (rsa, ec, ed) = (
        SigningKey::rs256("rsa-1"),
        SigningKey::es256("ec-1"),
        SigningKey::ed25519("ed-1"),
    );
    let stranger = SigningKey::es256("not-published");
    let issuer = Issuer::start(&[&rsa, &ec, &ed]).await;
    let dir = tempfile::tempdir().unwrap();
    let (revoked_key, revoked_id) = create_key(dir.path(), "svc-revoked", &[]).await;
    let (expiring_key, _) = create_key(dir.path(), "svc-expiring", &["--expires-in", "1s"]).await;
    cli(dir.path(), &["keys", "revoke", &revoked_id]).await;
    // The refresh interval outlasts the test however slow the machine, so the single JWKS
    // fetch asserted at the end does not depend on timing.
    let gateway = Gateway::start(
        dir,
        &oauth_section(&issuer, "jwks_min_refresh_interval = \"1h\"\n"),
    )
    .await;

    let claims = |sub: &str| {
        json!({"iss": issuer.url, "aud": RESOURCE, "sub": sub, "exp": now() + 600,
            "nbf": now() - 5, "scope": "mcp:tools"})
    };
    let with = |patch: Value| {
        let mut c = claims("alice");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Alice's session, opened with an RS256 token; the control call must work.
    let alice_token = rsa.sign(&claims("alice"));
    let alice = session(&gateway.url, &alice_token).await;
    let ok = add(
        &alice,
        5_550_001,
        &[("authorization", &format!("Bearer {alice_token}"))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.text.contains("5550002"), "{}", ok.text);
    // ES256 and EdDSA tokens of the same subject are the same caller: the session is theirs.
    for key in [&ec, &ed] {
        let token = key.sign(&claims("alice"));
        let ok = add(
            &alice,
            5_550_003,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(ok.status, 200, "{}: {}", key.kid, ok.text);
    }

    // The key with `--expires-in 1s` has expired by now (the checks above took longer);
    // make sure of it without relying on speed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut narrow = with(json!({}));
    narrow["scope"] = json!("mcp:read");
    let bob_token = ed.sign(&claims("bob"));
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        (
            "missing token",
            None,
            401,
            "Bearer scope=\"mcp:tools\", resource_metadata=",
        ),
        (
            "expired",
            Some(rsa.sign(&with(json!({"exp": now() - 3600})))),
            401,
            "invalid_token",
        ),
        (
            "not yet valid",
            Some(ec.sign(&with(json!({"nbf": now() + 3600})))),
            401,
            "invalid_token",
        ),
        (
            "wrong audience",
            Some(ed.sign(&with(json!({"aud": "https://other.example.test/mcp"})))),
            401,
            "invalid_token",
        ),
        (
            "wrong issuer",
            Some(rsa.sign(&with(json!({"iss": "https://evil.example.test"})))),
            401,
            "invalid_token",
        ),
        (
            "unknown kid",
            Some(stranger.sign(&claims("alice"))),
            401,
            "invalid_token",
        ),
        (
            "alg none",
            Some(oauth::unsigned("rsa-1", &claims("alice"))),
            401,
            "invalid_token",
        ),
        (
            "hmac with the public key",
            Some(oauth::hmac_with_public_key(&rsa, &claims("alice"))),
            401,
            "invalid_token",
        ),
        (
            "insufficient scope",
            Some(rsa.sign(&narrow)),
            403,
            "error=\"insufficient_scope\", scope=\"mcp:tools\"",
        ),
        ("revoked api key", Some(revoked_key), 401, "invalid_token"),
        ("expired api key", Some(expiring_key), 401, "invalid_token"),
        ("another principal's session", Some(bob_token), 404, ""),
    ];
    let mut markers = Vec::new();
    for (index, (name, credential, status, challenge)) in cases.iter().enumerate() {
        let marker = 7_770_000 + index as u64;
        markers.push((name, marker));
        let auth = credential.as_ref().map(|c| format!("Bearer {c}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let response = add(&alice, marker, &headers).await;
        assert_eq!(response.status, *status, "{name}: {}", response.text);
        let www = header(&response, "www-authenticate");
        assert!(www.contains(challenge), "{name}: {www}");
        if *status != 404 {
            assert!(
                www.contains("resource_metadata=\"https://gw.example.test/.well-known/oauth-protected-resource/mcp\""),
                "{name}: {www}"
            );
            assert_eq!(
                response.last()["error"]["code"],
                -31003,
                "{name}: {}",
                response.text
            );
            assert!(response.last()["id"].is_null(), "{name}");
        }
        // Nothing about the credential comes back.
        if let Some(credential) = credential {
            assert!(!response.text.contains(credential.as_str()), "{name}");
        }
    }
    // A token in the query string is refused even with a valid header.
    let mut leaky = alice.clone();
    leaky.url = format!("{}?access_token={alice_token}", gateway.url);
    let response = add(
        &leaky,
        7_779_999,
        &[("authorization", &format!("Bearer {alice_token}"))],
    )
    .await;
    assert_eq!(response.status, 400, "{}", response.text);

    // Control: a later accepted call reaches the upstream, so everything before it has too.
    let ok = add(
        &alice,
        5_559_999,
        &[("authorization", &format!("Bearer {alice_token}"))],
    )
    .await;
    assert_eq!(ok.status, 200);
    let seen = gateway.upstream_log_through("5559999").await;
    for (name, marker) in markers {
        assert!(
            !seen.contains(&marker.to_string()),
            "{name}: the upstream saw the refused call"
        );
    }
    assert!(
        !seen.contains("7779999"),
        "the upstream saw the query-token call"
    );
    // No token passthrough: the upstream never receives a credential.
    assert!(
        !seen.contains(&alice_token),
        "the upstream received the client's token"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("bearer"),
        "the upstream received a credential"
    );
    // The JWKS was fetched once, at first use: the unknown kid came within
    // `jwks_min_refresh_interval` (1 h here) of that fetch, so it caused none.
    assert_eq!(issuer.hits("/jwks"), 1);
}

// Proves: AUTH-5
#[tokio::test]
async fn api_keys_authenticate_and_revocation_takes_effect_while_serving() {
    let issuer = Issuer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (first, first_id) = create_key(dir.path(), "ci-bot", &["--role", "deployer"]).await;
    let gateway = Gateway::start(dir, &oauth_section(&issuer, "")).await;
    // A second key for the same principal, created while the gateway runs (rotation).
    let (second, _) = create_key(gateway.dir.path(), "ci-bot", &["--expires-in", "90d"]).await;

    let client = session(&gateway.url, &first).await;
    let ok = add(
        &client,
        6_660_001,
        &[("authorization", &format!("Bearer {first}"))],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // The second key is picked up within the refresh interval and is the same caller.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let r = add(
            &client,
            6_660_002,
            &[("authorization", &format!("Bearer {second}"))],
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 401, "{}", r.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key never became valid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cli(gateway.dir.path(), &["keys", "revoke", &first_id]).await;
    // Revocation takes effect within one refresh of the running gateway.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let r = add(
            &client,
            6_669_999,
            &[("authorization", &format!("Bearer {first}"))],
        )
        .await;
        if r.status == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked key stayed valid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once refused, a marked call with the revoked key never reaches the upstream.
    let r = add(
        &client,
        6_680_001,
        &[("authorization", &format!("Bearer {first}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    let ok = add(
        &client,
        6_689_999,
        &[("authorization", &format!("Bearer {second}"))],
    )
    .await;
    assert_eq!(ok.status, 200);
    let seen = gateway.upstream_log_through("6689999").await;
    assert!(!seen.contains("6680001"));
    assert!(!seen.contains("mwk_"), "the upstream received an api key");

    // `keys list` shows both keys, the first revoked, with last-used times written back.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let listed: Value = serde_json::from_str(
            &cli(gateway.dir.path(), &["keys", "list", "--format", "json"]).await,
        )
        .unwrap();
        let list = listed.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert!(
            !listed.to_string().contains(&first[20..]),
            "list shows a secret"
        );
        let revoked = list.iter().find(|k| k["id"] == first_id.as_str()).unwrap();
        assert_eq!(revoked["status"], "revoked");
        assert_eq!(revoked["roles"], json!(["deployer"]));
        if list.iter().all(|k| k["last_used"].is_u64()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last-used never written: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Proves: AUTH-6
#[tokio::test]
async fn protected_resource_metadata_is_served_at_both_well_known_paths() {
    let issuer = Issuer::start(&[]).await;
    let gateway = Gateway::start(
        tempfile::tempdir().unwrap(),
        &oauth_section(&issuer, "scopes_supported = [\"mcp:tools\", \"mcp:read\"]"),
    )
    .await;
    let http = reqwest::Client::new();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = http
            .get(format!("{}{path}", gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["resource"], RESOURCE);
        assert_eq!(document["authorization_servers"], json!([issuer.url]));
        assert_eq!(
            document["scopes_supported"],
            json!(["mcp:tools", "mcp:read"])
        );
    }
    let other = http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/other",
            gateway.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

/// The official Python SDK client, sending a bearer token on every request, through the
/// gateway to the Python fixture.
#[tokio::test]
async fn python_sdk_client_with_a_bearer_token() {
    let ed = SigningKey::ed25519("ed-1");
    let issuer = Issuer::start(&[&ed]).await;
    let gateway = Gateway::start(tempfile::tempdir().unwrap(), &oauth_section(&issuer, "")).await;
    let token = ed.sign(
        &json!({"iss": issuer.url, "aud": RESOURCE, "sub": "sdk-user",
        "exp": now() + 600, "scope": "mcp:tools"}),
    );
    let script = r#"
import sys, anyio
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main():
    url, token = sys.argv[1], sys.argv[2]
    http = create_mcp_http_client(headers={"Authorization": "Bearer " + token})
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool("py__add", {"a": 40, "b": 2})
            print(result.content[0].text)

anyio.run(main)
"#;
    let run = |token: String| {
        let mut command = Command::new(deps::python());
        command
            .arg("-c")
            .arg(script)
            .arg(&gateway.url)
            .arg(token)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        async move {
            tokio::time::timeout(BOUND, command.output())
                .await
                .unwrap()
                .unwrap()
        }
    };
    let out = run(token).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // The same client with a token for another audience is refused at connect.
    let foreign = ed.sign(
        &json!({"iss": issuer.url, "aud": "https://other.example.test/mcp",
        "sub": "sdk-user", "exp": now() + 600, "scope": "mcp:tools"}),
    );
    let out = run(foreign).await;
    assert!(!out.status.success());
}

// Proves: CAUTH-1
#[tokio::test]
async fn non_loopback_listen_needs_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(&config, "listen = \"0.0.0.0:1\"\n").unwrap();
    let out = tokio::time::timeout(
        BOUND,
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");

    // With API keys configured the same address is accepted.
    let port = warden_test::free_port();
    std::fs::write(
        &config,
        format!("listen = \"0.0.0.0:{port}\"\n[auth]\napi_keys = true\n"),
    )
    .unwrap();
    let mut command = Command::new(bin());
    command
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env("MCP_WARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _guard = Guard::spawn(command).unwrap();
    warden_test::wait_port(port, BOUND).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
