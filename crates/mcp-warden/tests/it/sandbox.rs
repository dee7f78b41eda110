//! The sandbox of stdio upstreams through the real binary (`mcp-warden run`), on by default.
//!
//! A server built on the official Python SDK and written to misbehave
//! (`sandbox/hostile_server.py`) is asked, tool by tool, to read a planted `~/.ssh/id_rsa`,
//! write outside its directories, connect to a listener on the host's loopback, ptrace and
//! signal a process of the test, and read the gateway's environment; the kernel refuses each.
//! Orphan tests SIGKILL the gateway (or close its stdin) while the server and the children it
//! started (one in a session of its own) are busy, then check by pid that none is left. The
//! reference servers (server-everything from npm and the Python SDK fixture) give the same
//! transcript through the sandboxed gateway as directly.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use warden_test::deps;
use warden_test::stdio::StdioClient;

use crate::interop::{
    Allow, Args, Protocol, Report, Scratch, Target, everything_stdio, python_stdio, run_stdio,
    transcripts,
};
use crate::support::run_command;

/// Bound on any single wait. Only a hang reaches it.
const BOUND: Duration = Duration::from_secs(30);

fn hostile_server() -> Vec<String> {
    vec![
        deps::python().display().to_string(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/sandbox/hostile_server.py")
            .display()
            .to_string(),
    ]
}

/// `mcp-warden run [extra] -- hostile_server.py`, initialized, with a secret in the
/// gateway's own environment.
async fn start(data_dir: &std::path::Path, extra: &[&str]) -> StdioClient {
    let server = hostile_server();
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    let mut args = vec!["--data-dir", data_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut command = run_command(&args, &server);
    command.env("WARDEN_TEST_GATEWAY_SECRET", "gateway-only-secret");
    let mut client = StdioClient::start(command).unwrap();
    client.initialize("2025-11-25").await.unwrap();
    client
        .notify("notifications/initialized", json!({}))
        .await
        .unwrap();
    client
}

async fn call(client: &mut StdioClient, tool: &str, arguments: Value) -> String {
    let response = client
        .request("tools/call", json!({"name": tool, "arguments": arguments}))
        .await
        .unwrap();
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{tool}: no text in {response}"))
        .to_owned()
}

/// Every process whose parent chain leads to `root`, found by scanning `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = stat.rsplit(')').next().unwrap_or("");
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// True while `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

async fn left_after(pids: &[u32]) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| running(*p)).collect();
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// Proves: RUN-1, RUN-4, AUTH-2, AUTH-4, ISO-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sdk_server_is_contained_by_the_default_sandbox() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let home = scratch.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join(".ssh/id_rsa");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let planted = scratch.path().join("planted");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut victim = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let victim_pid = victim.id();

    let data = scratch.path().join("data");
    let mut client = start(&data, &[]).await;
    let path = |p: &std::path::Path| json!({"path": p.display().to_string()});
    assert_eq!(call(&mut client, "read_file", path(&key)).await, "EACCES");
    assert_eq!(
        call(&mut client, "write_file", path(&planted)).await,
        "EACCES"
    );
    assert!(!planted.exists());
    assert_eq!(
        call(&mut client, "connect", json!({"port": port})).await,
        "ENETUNREACH"
    );
    assert!(
        listener.accept().is_err(),
        "the host's listener saw a connection"
    );
    assert_eq!(
        call(&mut client, "ptrace", json!({"pid": victim_pid})).await,
        "EPERM"
    );
    assert_eq!(
        call(&mut client, "kill", json!({"pid": victim_pid})).await,
        "ESRCH"
    );
    assert!(running(victim_pid));
    let secret = call(
        &mut client,
        "env",
        json!({"name": "WARDEN_TEST_GATEWAY_SECRET"}),
    )
    .await;
    assert_eq!(secret, "null");
    assert_ne!(
        call(&mut client, "env", json!({"name": "PATH"})).await,
        "null"
    );
    let status: Value =
        serde_json::from_str(&call(&mut client, "status", json!({})).await).unwrap();
    assert_eq!(status["pid"], 2, "{status}");
    assert_eq!(status["Seccomp"], "2", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
    assert!(
        status["home"]
            .as_str()
            .unwrap()
            .contains("mcp-warden-sandbox-"),
        "{status}"
    );
    // The same read through a server with the sandbox turned off succeeds: the refusal above
    // is the sandbox's, not a broken fixture's.
    let config = scratch.path().join("warden.toml");
    std::fs::write(&config, "[sandbox]\nenabled = false\n").unwrap();
    let mut unconfined = start(
        &scratch.path().join("data2"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    assert_eq!(call(&mut unconfined, "read_file", path(&key)).await, "ok");
    let status: Value =
        serde_json::from_str(&call(&mut unconfined, "status", json!({})).await).unwrap();
    assert_eq!(status["Seccomp"], "0", "{status}");
    // Its environment is still the allow-list, not the gateway's.
    let secret = call(
        &mut unconfined,
        "env",
        json!({"name": "WARDEN_TEST_GATEWAY_SECRET"}),
    )
    .await;
    assert_eq!(secret, "null");
    let _ = victim.kill();
    let _ = victim.wait();
}

/// The sandbox a server gets, as it reports it: the checks of the test above that need no
/// fixture outside the data directory.
async fn assert_contained(client: &mut StdioClient) {
    let secret = call(client, "env", json!({"name": "WARDEN_TEST_GATEWAY_SECRET"})).await;
    assert_eq!(secret, "null");
    let status: Value = serde_json::from_str(&call(client, "status", json!({})).await).unwrap();
    assert_eq!(status["pid"], 2, "{status}");
    assert_eq!(status["Seccomp"], "2", "{status}");
    assert_eq!(status["NoNewPrivs"], "1", "{status}");
    assert_eq!(status["CapEff"], "0000000000000000", "{status}");
}

async fn stop(mut client: StdioClient) {
    client.close_stdin();
    client.guard.wait(BOUND).await.unwrap();
}

fn inode(path: &std::path::Path) -> Option<u64> {
    Some(std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(path).ok()?,
    ))
}

// Proves: RUN-1 (a cached probe never weakens the sandbox)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_probe_result_sandboxes_as_the_probe_does() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = scratch.path().join("data");
    let cache = data.join("sandbox-probe.json");
    let probe = std::process::Command::new(crate::support::bin())
        .args(["__sandbox-exec", "--probe"])
        .arg(std::env::temp_dir())
        .output()
        .unwrap();
    let probed: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let everything_available = probed["controls"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c[1]["status"] == "available");

    let mut client = start(&data, &[]).await;
    assert_contained(&mut client).await;
    stop(client).await;
    if !everything_available {
        // Only a result with every control available is cached.
        assert!(!cache.exists(), "cached although a control is unavailable");
        return;
    }
    let first = inode(&cache).expect("the probe's result is cached");

    // The next start uses it (the file is not rewritten) and sandboxes the same way.
    let mut client = start(&data, &[]).await;
    assert_contained(&mut client).await;
    stop(client).await;
    assert_eq!(
        inode(&cache),
        Some(first),
        "probed again instead of using the cache"
    );

    // A cache that would remove a control is not used, whoever wrote it: the gateway probes
    // again (and rewrites it) and the server is as contained as before.
    let mut entry: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    for control in entry["availability"]["controls"].as_array_mut().unwrap() {
        control[1] = json!({"status": "unavailable", "reason": "planted"});
    }
    std::fs::write(&cache, serde_json::to_vec(&entry).unwrap()).unwrap();
    let planted = inode(&cache);
    let mut client = start(&data, &[]).await;
    assert_contained(&mut client).await;
    stop(client).await;
    assert_ne!(inode(&cache), planted, "the planted result was used");
    let rewritten: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(rewritten["availability"], probed);

    // A result cached for another context (here: another binary) is not used either.
    let mut entry = rewritten;
    let fingerprint = entry["fingerprint"]
        .as_str()
        .unwrap()
        .replacen("ino=", "ino=1", 1);
    entry["fingerprint"] = json!(fingerprint);
    std::fs::write(&cache, serde_json::to_vec(&entry).unwrap()).unwrap();
    let foreign = inode(&cache);
    let mut client = start(&data, &[]).await;
    assert_contained(&mut client).await;
    stop(client).await;
    assert_ne!(
        inode(&cache),
        foreign,
        "a result for another binary was used"
    );

    // The cache is used again, and dropped when the sandboxed process exits with the
    // launcher's "sandbox could not be built" status (125): the next start probes. Any other
    // exit keeps it.
    let exits = |code: u8| {
        let script = format!("exit {code}");
        let mut command = run_command(
            &["--data-dir", data.to_str().unwrap()],
            &["/bin/sh", "-c", &script],
        );
        command.stderr(std::process::Stdio::null());
        async move {
            // The client keeps its end open: the gateway stops because its server exited.
            let mut client = StdioClient::start(command).unwrap();
            client.guard.wait(BOUND).await.unwrap()
        }
    };
    let kept = inode(&cache);
    let status = exits(1).await;
    assert!(
        !status.success(),
        "the gateway stops when its server exits: {status}"
    );
    assert_eq!(inode(&cache), kept, "dropped after an ordinary exit");
    exits(125).await;
    assert!(
        !cache.exists(),
        "kept after the launcher's setup failure status"
    );
}

/// Starts the hostile server, has it start two children (one in a session of its own, out
/// of the process group) and a long call in flight; returns the client and every process
/// under the gateway.
async fn busy_gateway(data: &std::path::Path) -> (StdioClient, Vec<u32>) {
    let mut client = start(data, &[]).await;
    let children: Vec<u32> =
        serde_json::from_str(&call(&mut client, "spawn_children", json!({})).await).unwrap();
    assert_eq!(children.len(), 2);
    client
        .send(&json!({"jsonrpc": "2.0", "id": 999, "method": "tools/call",
            "params": {"name": "busy", "arguments": {"seconds": 120}}}))
        .await
        .unwrap();
    let gateway = client.guard.pid();
    // launcher, init, python, sleep, setsid sleep: wait until both sleeps have been exec'd.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let tree = descendants(gateway);
        let sleeps = tree
            .iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .count();
        if sleeps == 2 {
            assert!(tree.len() >= 5, "{tree:?}");
            return (client, tree);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children never started: {tree:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// Proves: LIFE-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_gateway_leaves_no_process() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut client, tree) = busy_gateway(scratch.path()).await;
    let gateway = client.guard.pid();
    client.guard.child().start_kill().unwrap(); // SIGKILL, to the gateway's pid only
    client.guard.wait(BOUND).await.unwrap();
    assert!(!running(gateway));
    let left = left_after(&tree).await;
    assert!(
        left.is_empty(),
        "left behind after SIGKILL of the gateway: {left:?}"
    );
}

// Proves: LIFE-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_leaves_no_process() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut client, tree) = busy_gateway(scratch.path()).await;
    client.close_stdin();
    let status = client.guard.wait(BOUND).await.unwrap();
    assert!(
        status.code().is_some(),
        "the gateway exited by itself: {status}"
    );
    let left = left_after(&tree).await;
    assert!(
        left.is_empty(),
        "left behind after the client went away: {left:?}"
    );
}

// Proves: RUN-1 (the default profile keeps the reference servers working)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_servers_work_in_the_default_sandbox() {
    let scratch = Scratch::new();
    let everything = everything_stdio();
    let python = python_stdio(&[]);
    let r = transcripts(
        Args::Everything,
        vec![
            (Target::Stdio(everything.clone()), Protocol::Auto, None),
            (run_stdio(&scratch, &everything), Protocol::Auto, None),
        ],
    )
    .await;
    let p = transcripts(
        Args::Python,
        vec![
            (Target::Stdio(python.clone()), Protocol::Auto, None),
            (run_stdio(&scratch, &python), Protocol::Auto, None),
        ],
    )
    .await;
    let mut report = Report::default();
    let direct = r[0].as_ref().expect("server-everything runs directly");
    report.same_or_failed(
        "server-everything through the sandbox",
        direct,
        &r[1],
        Allow::default(),
    );
    let direct = p[0].as_ref().expect("server.py runs directly");
    report.same_or_failed(
        "server.py through the sandbox",
        direct,
        &p[1],
        Allow::default(),
    );
    report.finish();
}

/// An HTTP server on the host's 127.0.0.1 answering every request with `body`; counts
/// connections.
fn http_target(body: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(BOUND)).unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, count)
}

// Proves: ISO-2
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_egress_goes_through_the_gateways_proxy_only() {
    use std::sync::atomic::Ordering;
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (allowed, allowed_hits) = http_target("from the allowed host");
    let (other, other_hits) = http_target("from elsewhere");
    let config = scratch.path().join("warden.toml");
    std::fs::write(
        &config,
        format!("[sandbox]\nnetwork = {{ allow = [\"127.0.0.1:{allowed}\"] }}\n"),
    )
    .unwrap();
    let data = scratch.path().join("data");
    let mut client = start(&data, &["--config", config.to_str().unwrap()]).await;
    let port = |p: u16| json!({"port": p});
    assert_eq!(
        call(&mut client, "fetch_via_proxy", port(allowed)).await,
        "ok:from the allowed host"
    );
    assert_eq!(
        call(&mut client, "fetch_via_proxy", port(other)).await,
        "Tunnel connection failed: 403 Forbidden"
    );
    // Ignoring the proxy reaches nothing: the sandbox's loopback is its own.
    assert_eq!(
        call(&mut client, "connect", port(allowed)).await,
        "ECONNREFUSED"
    );
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    // Both decisions are in the audit log (read once the gateway has closed it).
    client.close_stdin();
    let status = client.guard.wait(BOUND).await.unwrap();
    assert!(status.success(), "the gateway exited cleanly: {status}");
    let records = crate::support::audit_records(&data).await;
    assert!(!records.is_empty(), "an audit log in {}", data.display());
    let egress = |action: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["event"] == "upstream" && r["action"] == action)
            .cloned()
            .collect()
    };
    let refused = egress("egress_refused");
    assert_eq!(refused.len(), 1, "one refusal: {refused:?}");
    assert_eq!(
        refused[0]["detail"],
        format!("127.0.0.1:{other}: target not on the allow-list")
    );
    assert!(
        refused[0]["upstream"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{refused:?}"
    );
    let allowed_records = egress("egress_allowed");
    assert_eq!(allowed_records.len(), 1, "one tunnel: {allowed_records:?}");
    assert_eq!(
        allowed_records[0]["detail"],
        format!("127.0.0.1:{allowed}: tunnel opened to 127.0.0.1:{allowed}")
    );
    // The CONNECT heads carried a Proxy-Authorization header: no record holds any of it.
    let log = records
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for leaked in [
        "d2FyZGVuLXByb3h5LWNyZWRlbnRpYWw=",
        "Proxy-Authorization",
        "Basic ",
    ] {
        assert!(!log.contains(leaked), "`{leaked}` in the audit log: {log}");
    }
}
