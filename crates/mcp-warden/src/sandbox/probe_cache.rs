//! The probe's result, remembered across starts in the data directory.
//!
//! The probe starts the launcher in throwaway namespaces (an `exec` of the gateway binary, four
//! namespaces, mounts, a seccomp filter, cgroups): about 7 ms of CPU on every start, a third
//! of what `run` adds before the first message. What it finds depends on the kernel, its
//! settings and the gateway's own context, which rarely change; the cache is keyed by all of
//! them ([`fingerprint`]): the gateway binary, the boot, the user, the namespaces, the cgroups,
//! the inherited restrictions (capabilities, no_new_privs, seccomp) and the kernel settings
//! that gate user namespaces.
//!
//! Only a result in which **every** control is available is stored or used: a cached result
//! can therefore never remove a control from a sandbox. If the machine changed in a way the
//! key does not capture (a cgroup's permissions), the launcher fails to apply a control it was
//! asked for and the upstream does not start, with the error; [`forget`] is then called so
//! that the next start probes again.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_sandbox::Availability;

/// File name in the data directory.
pub(crate) const FILE_NAME: &str = "sandbox-probe.json";

#[derive(Serialize, Deserialize)]
struct Entry {
    fingerprint: String,
    availability: Availability,
}

/// Kernel settings that decide whether unprivileged user namespaces work (Debian, Ubuntu's
/// AppArmor restriction, per-user limits).
const SETTINGS: &[&str] = &[
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/user/max_mnt_namespaces",
    "/proc/sys/user/max_pid_namespaces",
    "/proc/sys/user/max_net_namespaces",
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_unconfined",
    "/proc/self/cgroup",
    "/sys/kernel/security/lsm",
];

/// Lines of `/proc/self/status` that describe what the gateway inherited.
const STATUS_FIELDS: &[&str] = &[
    "Uid:",
    "Gid:",
    "Groups:",
    "NoNewPrivs:",
    "Seccomp:",
    "Seccomp_filters:",
    "CapInh:",
    "CapPrm:",
    "CapEff:",
    "CapBnd:",
    "CapAmb:",
];

/// Everything the probe's result depends on, as text. `None` when a part that must be known
/// (the binary, the boot id, the status) cannot be read: the probe then runs.
pub(crate) fn fingerprint(launcher: &Path, tmp_parent: &Path) -> Option<String> {
    let mut out = String::from("v1\n");
    // The binary's identity and version (a rebuilt binary probes again); the directory's
    // identity and permissions only (its times change with every file created in it).
    let file = |out: &mut String, path: &Path, contents: bool| -> Option<()> {
        let meta = std::fs::metadata(path).ok()?;
        let _ = write!(
            out,
            "{} dev={} ino={} mode={:o} uid={}",
            path.display(),
            meta.dev(),
            meta.ino(),
            meta.mode(),
            meta.uid()
        );
        if contents {
            let _ = write!(
                out,
                " size={} mtime={}.{}",
                meta.size(),
                meta.mtime(),
                meta.mtime_nsec()
            );
        }
        out.push('\n');
        Some(())
    };
    file(&mut out, launcher, true)?;
    file(&mut out, tmp_parent, false)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot = boot.trim();
    if boot.is_empty() {
        return None;
    }
    let _ = writeln!(out, "boot_id={boot}");
    for setting in SETTINGS {
        let value = std::fs::read_to_string(setting).unwrap_or_else(|_| "-".to_owned());
        let _ = writeln!(out, "{setting}={}", value.trim_end());
    }
    for ns in ["user", "mnt", "pid", "net", "cgroup", "ipc", "uts"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()?;
        let _ = writeln!(out, "ns {}", link.display());
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    for line in status.lines() {
        if STATUS_FIELDS.iter().any(|f| line.starts_with(f)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// The cached result for `fingerprint`, if the data directory holds one that matches and in
/// which every control is available.
pub(crate) fn load(data_dir: &Path, fingerprint: &str) -> Option<Availability> {
    let bytes = std::fs::read(data_dir.join(FILE_NAME)).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    (entry.fingerprint == fingerprint && every_control_available(&entry.availability))
        .then_some(entry.availability)
}

/// Stores `availability` for `fingerprint` when every control is available (otherwise the
/// next start probes again). Best effort: an error is returned for the caller to log.
pub(crate) fn store(
    data_dir: &Path,
    fingerprint: &str,
    availability: &Availability,
) -> std::io::Result<bool> {
    if !every_control_available(availability) {
        return Ok(false);
    }
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(data_dir)?;
    let entry = Entry {
        fingerprint: fingerprint.to_owned(),
        availability: availability.clone(),
    };
    let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
    let tmp = tmp_path(data_dir);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(FILE_NAME)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| true)
}

/// Removes the cached result, so that the next start probes.
pub(crate) fn forget(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(FILE_NAME));
}

fn tmp_path(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{FILE_NAME}.{}.tmp", std::process::id()))
}

fn every_control_available(availability: &Availability) -> bool {
    warden_sandbox::Control::ALL
        .iter()
        .all(|c| availability.is_available(*c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sandbox::{Control, Status};

    fn all_available() -> Availability {
        Availability {
            controls: Control::ALL
                .iter()
                .map(|c| {
                    (
                        *c,
                        Status::Available {
                            detail: "test".into(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_stored_result_is_used_only_for_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let exe = std::env::current_exe().unwrap();
        let fp = fingerprint(&exe, &std::env::temp_dir()).expect("readable on Linux");
        assert!(fp.contains("boot_id="), "{fp}");
        assert!(load(&data, &fp).is_none(), "nothing stored yet");
        assert!(store(&data, &fp, &all_available()).unwrap());
        assert_eq!(load(&data, &fp), Some(all_available()));
        let mode = std::fs::metadata(data.join(FILE_NAME)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Any change of the key: another binary, another boot, another namespace...
        assert!(load(&data, &fp.replace("ns ", "ns x")).is_none());
        assert!(load(&data, &format!("{fp}x")).is_none());
        forget(&data);
        assert!(load(&data, &fp).is_none());
    }

    #[test]
    fn a_result_with_an_unavailable_control_is_neither_stored_nor_used() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let fp = fingerprint(&exe, &std::env::temp_dir()).unwrap();
        for control in Control::ALL {
            let mut partial = all_available();
            for (c, status) in &mut partial.controls {
                if *c == control {
                    *status = Status::Unavailable {
                        reason: "test".into(),
                    };
                }
            }
            assert!(!store(dir.path(), &fp, &partial).unwrap(), "{control:?}");
            assert!(!dir.path().join(FILE_NAME).exists());
            // Nor is one written by someone else used: it could only remove a control.
            let entry = Entry {
                fingerprint: fp.clone(),
                availability: partial,
            };
            std::fs::write(
                dir.path().join(FILE_NAME),
                serde_json::to_vec(&entry).unwrap(),
            )
            .unwrap();
            assert!(load(dir.path(), &fp).is_none(), "{control:?}");
            forget(dir.path());
        }
        // A result that names no controls at all is not "every control available".
        let empty = Availability {
            controls: Vec::new(),
        };
        assert!(!store(dir.path(), &fp, &empty).unwrap());
    }

    #[test]
    fn a_damaged_cache_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let fp = fingerprint(&exe, &std::env::temp_dir()).unwrap();
        for junk in [
            &b""[..],
            b"{",
            b"null",
            b"{\"fingerprint\":1}",
            &[0xff, 0xfe],
        ] {
            std::fs::write(dir.path().join(FILE_NAME), junk).unwrap();
            assert!(load(dir.path(), &fp).is_none());
        }
    }
}
