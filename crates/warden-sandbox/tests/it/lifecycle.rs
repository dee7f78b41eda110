//! No orphans: whatever a sandboxed server starts dies with it, even a process that left its
//! process group.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use warden_sandbox::Settings;

use crate::{WAIT, alive, launch, plan};

/// The server: a background child, a child in a session of its own (out of the process
/// group), then "ready" and wait.
const SERVER: &str = "sleep 300 & setsid sleep 301 & echo ready; wait";

/// Every process whose parent chain leads to `root` (by scanning `/proc`).
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
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
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

async fn wait_all_gone(pids: &[u32]) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_busy_server() -> (tokio::process::Child, Vec<u32>) {
    let args = vec!["-c".to_owned(), SERVER.to_owned()];
    let planned = plan(&Settings::default(), "/bin/sh", &args, Vec::new());
    let mut child = warden_sandbox::spawn(&launch(&planned, true)).unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.as_deref(), Some("ready"));
    let pid = child.id().unwrap();
    // Supervisor -> init -> sh -> two sleeps.
    let tree = descendants(pid);
    assert!(
        tree.len() >= 4,
        "expected init, server and two sleeps: {tree:?}"
    );
    (child, tree)
}

// Proves: LIFE-2
#[tokio::test]
async fn killing_the_supervisor_kills_every_descendant() {
    let (mut child, tree) = start_busy_server().await;
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(WAIT, child.wait()).await.unwrap();
    let left = wait_all_gone(&tree).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

// Proves: LIFE-2
#[tokio::test]
async fn terminating_the_group_kills_the_processes_outside_it() {
    let (mut child, tree) = start_busy_server().await;
    // What the gateway does on shutdown: SIGTERM to the process group. `setsid sleep` is not
    // in it; the PID namespace takes it down when the server's init exits.
    warden_sandbox::signal_group(child.id().unwrap(), warden_sandbox::Signal::Term).unwrap();
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
    let left = wait_all_gone(&tree).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
