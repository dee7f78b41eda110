//! Scheduling priority of the calling thread, for background work that must not compete with
//! the request path (compiling detection rules at start-up).
#![expect(
    unsafe_code,
    reason = "gettid and setpriority are foreign functions; each block has its SAFETY note"
)]

/// Lowers the calling thread's scheduling priority to the lowest nice level (19), so that on
/// a busy CPU it runs in the time the gateway's other threads leave. On Linux a nice value
/// applies to one thread. Best effort: an error (a seccomp policy, another platform) leaves
/// the priority as it was and is returned for the caller to log.
pub fn lower_current_thread_priority() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        // SAFETY: plain integer arguments; `tid` is the calling thread's id, so the call
        // changes this thread only. PRIO_PROCESS has the type `which` expects on this target.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, u32::try_from(tid).unwrap_or(0), 19) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn lowers_only_the_calling_thread() {
        fn nice_of(stat: &str) -> i64 {
            // Field 19 (nice), the 17th after the `)` that ends the command name.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            rest.split(' ').nth(16).unwrap().parse().unwrap()
        }
        let before = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        let lowered = std::thread::spawn(|| {
            super::lower_current_thread_priority().unwrap();
            nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 19);
        let after = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        assert_eq!(after, before, "the calling thread only");
    }
}
