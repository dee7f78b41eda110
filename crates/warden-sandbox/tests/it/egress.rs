//! `network = { allow = [..] }`: a sandboxed Python program reaches an allow-listed server only
//! through the gateway's proxy (the real `warden_egress::Proxy` on a Unix socket, the real
//! launcher and its forwarder), is refused the rest by the proxy, and reaches nothing
//! directly: the kernel has no route.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use warden_egress::{AllowList, Limits, Proxy};
use warden_sandbox::Settings;

use crate::{PYTHON, fixture, launch, plan, run, scratch};

/// An HTTP server on the host's 127.0.0.1 that counts connections and answers `allowed <n>`.
struct Target {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::spawn(move || {
                    stream.set_read_timeout(Some(crate::WAIT)).unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf);
                    let body = format!("allowed {n}");
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Target { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

// Proves: ISO-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_egress_goes_through_the_proxy_only() {
    let allowed = Target::start();
    let refused = Target::start();
    // The proxy's socket lives outside the private directory and the system temporary
    // directory, where the gateway would put it.
    let dir = scratch();
    let socket = dir.path().join("egress.sock");
    let allow = AllowList::parse(&[format!("127.0.0.1:{}", allowed.port)]).unwrap();
    let _proxy = Proxy::new("egress-test", allow, Limits::default())
        .bind(&socket)
        .unwrap();
    let settings = Settings {
        egress_proxy: Some(socket.clone()),
        ..Settings::default()
    };
    let env = vec![
        ("ALLOWED_PORT".to_owned(), allowed.port.to_string()),
        ("REFUSED_PORT".to_owned(), refused.port.to_string()),
        // Inherited proxy settings never survive: the forwarder replaces them.
        (
            "HTTPS_PROXY".to_owned(),
            "http://203.0.113.9:3128".to_owned(),
        ),
        ("no_proxy".to_owned(), "*".to_owned()),
    ];
    let args = vec![fixture("egress.py").display().to_string()];
    let planned = plan(&settings, PYTHON, &args, env);
    let profile = &planned.sandbox.profile;
    assert_eq!(profile.egress_proxy.as_deref(), Some(socket.as_path()));
    assert_eq!(profile.network, warden_sandbox::Network::Loopback);
    let output = run(&launch(&planned, true)).await;
    assert_eq!(output.code, Some(0), "stderr: {}", output.stderr);
    let report: Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("no report ({e}): {} / {}", output.stdout, output.stderr));
    let get = |key: &str| report[key].as_str().unwrap_or("missing").to_owned();
    // Through the proxy to the allow-listed address: the host's server answered.
    assert_eq!(get("via_proxy_allowed"), "ok:allowed 1", "{report}");
    // Through the proxy elsewhere: the proxy said no.
    assert_eq!(
        get("via_proxy_refused"),
        "Tunnel connection failed: 403 Forbidden",
        "{report}"
    );
    // Directly: the sandbox's loopback is its own (nothing listens there) and there is no
    // other interface.
    assert_eq!(get("direct_loopback"), "ECONNREFUSED", "{report}");
    assert_eq!(get("direct_out"), "ENETUNREACH", "{report}");
    // The server itself still may not open a Unix socket (only the forwarder may).
    assert_eq!(get("unix_socket"), "EPERM", "{report}");
    let env = &report["proxy_env"];
    let proxy = env["HTTPS_PROXY"].as_str().unwrap();
    assert!(proxy.starts_with("http://127.0.0.1:"), "{report}");
    for key in [
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        assert_eq!(env[key].as_str(), Some(proxy), "{key}: {report}");
    }
    assert!(
        env["NO_PROXY"].is_null() && env["no_proxy"].is_null(),
        "{report}"
    );
    // The host's servers saw exactly the one proxied connection.
    assert_eq!(allowed.connections(), 1);
    assert_eq!(refused.connections(), 0);
}

// Proves: ISO-2
#[tokio::test]
async fn the_probe_reports_the_allow_list_available() {
    let availability = crate::availability();
    assert!(
        availability.is_available(warden_sandbox::Control::NetworkAllowList),
        "{availability:?}"
    );
}
