//! cgroups per sandbox: `pids.max` bounds every process and thread in it whatever its uid
//! (the kernel exempts uid 0 from `RLIMIT_NPROC`, even in a user namespace), and the memory
//! controller bounds resident memory (an address-space rlimit cannot: V8 reserves 10 GiB of
//! address space for each WebAssembly memory).
//!
//! The supervisor creates the groups, moves itself in before forking (so init and the server
//! are born inside them, with no window), and after init exits moves itself back and removes
//! them. cgroup v1 hierarchies or v2 (when the controller is enabled in the subtree of the
//! supervisor's group) are used, whichever this machine offers and lets us write.

use std::path::{Path, PathBuf};

use super::sys::Failure;

/// A limit enforced through a cgroup controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `pids.max`: processes and threads.
    Pids(u64),
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1), with swap use capped at the same
    /// bound (`memory.swap.max = 0`, or `memory.memsw.limit_in_bytes`).
    Memory(u64),
}

impl Limit {
    fn controller(self) -> &'static str {
        match self {
            Limit::Pids(_) => "pids",
            Limit::Memory(_) => "memory",
        }
    }

    fn apply(self, dir: &Path) -> Result<(), Failure> {
        let write = |file: &str, value: String| {
            std::fs::write(dir.join(file), value).map_err(|e| Failure::os("cgroup limit", e))
        };
        match self {
            Limit::Pids(max) => write("pids.max", max.to_string()),
            Limit::Memory(bytes) => {
                if dir.join("memory.max").exists() {
                    write("memory.max", bytes.to_string())?;
                    if dir.join("memory.swap.max").exists() {
                        write("memory.swap.max", "0".to_owned())?;
                    }
                    Ok(())
                } else {
                    write("memory.limit_in_bytes", bytes.to_string())?;
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write("memory.memsw.limit_in_bytes", bytes.to_string())?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// The cgroups the supervisor has joined (one per hierarchy).
pub(crate) struct Groups {
    joined: Vec<Joined>,
}

struct Joined {
    dir: PathBuf,
    parent_procs: PathBuf,
}

impl Groups {
    /// For each limit: creates `<hierarchy>/<own group>/mcp-warden-<pid>` (once per hierarchy),
    /// writes the limit and moves the calling process in. On error, undoes what it did.
    pub(crate) fn join(limits: &[Limit]) -> Result<Groups, Failure> {
        let mut groups = Groups { joined: Vec::new() };
        for limit in limits {
            if let Err(failure) = groups.add(*limit) {
                groups.leave();
                return Err(failure);
            }
        }
        Ok(groups)
    }

    fn add(&mut self, limit: Limit) -> Result<(), Failure> {
        let parent = current_group(limit.controller())?;
        let dir = parent.join(format!("mcp-warden-{}", std::process::id()));
        if !self.joined.iter().any(|j| j.dir == dir) {
            sweep(&parent);
            std::fs::create_dir(&dir).map_err(|e| Failure::os("cgroup create", e))?;
            self.joined.push(Joined {
                dir: dir.clone(),
                parent_procs: parent.join("cgroup.procs"),
            });
        }
        limit.apply(&dir)?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| Failure::os("cgroup join", e))
    }

    /// What the probe checks for `limit`, without moving any process: creates the group,
    /// writes the limit, opens for writing the `cgroup.procs` files a join writes (the new
    /// group's, and the parent's, which is the common ancestor whose write access the kernel
    /// checks for a move and where [`Groups::leave`] moves back), then removes the group.
    ///
    /// Moving a process between cgroups waits for an RCU grace period (several milliseconds
    /// on cgroup v1, per move); a probe that joined and left both hierarchies paid four of
    /// them on every start. A join that fails after this check passed fails the launch (the
    /// upstream does not start, with the error), so the check cannot weaken a sandbox.
    pub(crate) fn check(limit: Limit) -> Result<(), Failure> {
        let parent = current_group(limit.controller())?;
        let dir = parent.join(format!("mcp-warden-{}", std::process::id()));
        sweep(&parent);
        std::fs::create_dir(&dir).map_err(|e| Failure::os("cgroup create", e))?;
        let checked = limit.apply(&dir).and_then(|()| {
            for procs in [dir.join("cgroup.procs"), parent.join("cgroup.procs")] {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&procs)
                    .map_err(|e| Failure::os("cgroup join", e))?;
            }
            Ok(())
        });
        let _ = std::fs::remove_dir(&dir);
        checked
    }

    /// Moves the caller back to the parent groups and removes its own (empty once init and
    /// its namespace are gone). Best effort: a leftover empty group is harmless and swept by
    /// the next supervisor.
    pub(crate) fn leave(&self) {
        for joined in &self.joined {
            let _ = std::fs::write(&joined.parent_procs, std::process::id().to_string());
            let _ = std::fs::remove_dir(&joined.dir);
        }
    }
}

/// Removes groups left by supervisors that were SIGKILLed (and so could not clean up): empty
/// `mcp-warden-<pid>` groups whose pid is gone. rmdir(2) refuses a group that still holds a
/// process, so a live sandbox is never touched.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("mcp-warden-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The directory of the caller's group in a hierarchy that has `controller`.
fn current_group(controller: &str) -> Result<PathBuf, Failure> {
    let cgroups =
        std::fs::read_to_string("/proc/self/cgroup").map_err(|e| Failure::os("cgroup", e))?;
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Failure::os("cgroup", e))?;
    // cgroup v1: "N:<controller>:/path" and a cgroup mount whose options name it.
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        if controllers.split(',').any(|c| c == controller)
            && let Some(mount) = find_mount(&mountinfo, |fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == controller)
            })
        {
            return Ok(join_cgroup_path(&mount, path));
        }
    }
    // cgroup v2: "0::/path", usable if the controller is delegated to our subtree.
    for line in cgroups.lines() {
        if let Some(path) = line.strip_prefix("0::")
            && let Some(mount) = find_mount(&mountinfo, |fstype, _| fstype == "cgroup2")
        {
            let dir = join_cgroup_path(&mount, path);
            let enabled =
                std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if enabled.split_whitespace().any(|c| c == controller) {
                return Ok(dir);
            }
        }
    }
    Err(Failure::message(
        "cgroup",
        format!("no {controller} controller (cgroup v1 hierarchy, or v2 with it delegated)"),
    ))
}

fn join_cgroup_path(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// The mount point of the first mount whose type and super options satisfy `wanted`.
fn find_mount(mountinfo: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        // "id parent major:minor root mountpoint options [optional...] - fstype source superopts"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut right = right.split_whitespace();
        let (Some(fstype), _, Some(options)) = (right.next(), right.next(), right.next()) else {
            continue;
        };
        if wanted(fstype, options) {
            return Some(PathBuf::from(mount_point));
        }
    }
    None
}
