//! Thin wrappers over the system calls the launcher makes. Each `unsafe` block calls one
//! foreign function with arguments built right there.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::profile::ResourceLimits;

/// A failed step: which one, and the kernel's error (or a message).
#[derive(Debug)]
pub(crate) struct Failure {
    step: &'static str,
    detail: String,
}

impl Failure {
    pub(crate) fn os(step: &'static str, error: io::Error) -> Failure {
        Failure {
            step,
            detail: error.to_string(),
        }
    }

    pub(crate) fn last_os(step: &'static str) -> Failure {
        Failure::os(step, io::Error::last_os_error())
    }

    pub(crate) fn message(step: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            step,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

fn check(step: &'static str, rc: libc::c_int) -> Result<(), Failure> {
    if rc == -1 {
        Err(Failure::last_os(step))
    } else {
        Ok(())
    }
}

fn cstring(step: &'static str, path: &Path) -> Result<CString, Failure> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Failure::message(step, "path contains a NUL byte"))
}

pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid(2) takes no argument and cannot fail.
    unsafe { libc::getuid() }
}

pub(crate) fn getgid() -> u32 {
    // SAFETY: getgid(2) takes no argument and cannot fail.
    unsafe { libc::getgid() }
}

/// `mkdtemp(<parent>/<prefix>XXXXXX)`: a new directory, mode 0700, that did not exist.
pub(crate) fn make_private_dir(parent: &Path, prefix: &str) -> Result<PathBuf, Failure> {
    let mut template = parent.as_os_str().as_bytes().to_vec();
    template.push(b'/');
    template.extend_from_slice(prefix.as_bytes());
    template.extend_from_slice(b"XXXXXX\0");
    if template[..template.len() - 1].contains(&0) {
        return Err(Failure::message(
            "private directory",
            "path contains a NUL byte",
        ));
    }
    // SAFETY: `template` is a NUL-terminated buffer we own; mkdtemp(3) rewrites the six X in
    // place and returns either NULL or a pointer into the same buffer.
    let rc = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if rc.is_null() {
        return Err(Failure::last_os("private directory"));
    }
    template.pop();
    let path: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(template);
    Ok(PathBuf::from(path))
}

fn write_file(step: &'static str, path: &str, contents: &str) -> Result<(), Failure> {
    std::fs::write(path, contents).map_err(|e| Failure::os(step, e))
}

/// `unshare` user + mount + PID (+ network) namespaces and map `uid`/`gid` to themselves.
pub(crate) fn unshare_namespaces(network: bool, uid: u32, gid: u32) -> Result<(), Failure> {
    let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
    if network {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare(2) takes flags only; the process is single-threaded, as a new user
    // namespace requires.
    check("unshare", unsafe { libc::unshare(flags) })?;
    // An unprivileged process may map exactly its own ids, and only after giving up
    // setgroups(2) (so it cannot drop a supplementary group used to deny it access).
    write_file("setgroups", "/proc/self/setgroups", "deny")?;
    write_file("uid_map", "/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_file("gid_map", "/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    Ok(())
}

/// Whether the namespaces can be created here: tries in a throwaway child.
pub(crate) fn check_unshare() -> Result<(), Failure> {
    let uid = getuid();
    let gid = getgid();
    let (read, write) = pipe_raw()?;
    match fork()? {
        Forked::Child => {
            drop(read);
            let message = match unshare_namespaces(true, uid, gid) {
                Ok(()) => String::new(),
                Err(failure) => failure.to_string(),
            };
            let mut file = std::fs::File::from(write);
            let _ = io::Write::write_all(&mut file, message.as_bytes());
            exit_now(0)
        }
        Forked::Parent(child) => {
            drop(write);
            let mut message = String::new();
            let mut file = std::fs::File::from(read);
            let _ = io::Read::read_to_string(&mut file, &mut message);
            let code = wait_for(child);
            if code != 0 {
                return Err(Failure::message(
                    "unshare",
                    format!("probe child exited {code}"),
                ));
            }
            if message.is_empty() {
                Ok(())
            } else {
                Err(Failure {
                    step: "namespaces",
                    detail: message,
                })
            }
        }
    }
}

fn pipe_raw() -> Result<(OwnedFd, OwnedFd), Failure> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2(2) writes two descriptors into the two-element array we pass.
    check("pipe", unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)
    })?;
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe whose write end the supervisor keeps open for its whole life: init polls the read
/// end to learn whether the supervisor died before the parent-death signal was armed.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    pub(crate) fn new() -> Result<Pipe, Failure> {
        let (read, write) = pipe_raw()?;
        Ok(Pipe { read, write })
    }

    pub(crate) fn into_read_end(self) -> OwnedFd {
        self.read
    }

    pub(crate) fn into_write_end(self) -> OwnedFd {
        self.write
    }
}

/// Which side of a fork we are on.
pub(crate) enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// fork(2). The launcher is single-threaded, so the child may do anything.
pub(crate) fn fork() -> Result<Forked, Failure> {
    // SAFETY: fork(2) in a single-threaded process (the launcher starts no thread) leaves
    // the child with a consistent copy of every lock and allocator state.
    match unsafe { libc::fork() } {
        -1 => Err(Failure::last_os("fork")),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the process at once, without running destructors or flushing std's buffers twice.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// SIG_IGN for SIGTERM, SIGINT and SIGHUP (supervisor only; not inherited by the server,
/// which is forked before this is called).
pub(crate) fn ignore_termination_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: signal(2) with SIG_IGN installs no handler code.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// Points stdin and stdout at /dev/null, so only the server holds the protocol pipes.
pub(crate) fn detach_stdio() -> Result<(), Failure> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Failure::os("open /dev/null", e))?;
    for target in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: dup2(2) on a descriptor we own onto a standard descriptor number.
        check("dup2", unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

fn status_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        super::EXIT_SETUP_FAILED
    }
}

/// Waits for `child` (retrying on EINTR) and returns its exit status, or 128 + signal.
pub(crate) fn wait_for(child: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into a local integer.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            return status_code(status);
        }
        if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return super::EXIT_SETUP_FAILED;
    }
}

/// Init's loop: reaps every child (orphans of the PID namespace are reparented to init) and
/// returns the server's status once the server is reaped.
pub(crate) fn reap_until(server: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes the status into a local integer.
        let rc = unsafe { libc::waitpid(-1, &mut status, 0) };
        if rc == server {
            return status_code(status);
        }
        if rc == -1 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => return super::EXIT_SETUP_FAILED,
            }
        }
    }
}

pub(crate) fn unmount_detach(path: &Path) -> Result<(), Failure> {
    let path = cstring("umount", path)?;
    // SAFETY: umount2(2) with a NUL-terminated path we own.
    check("umount", unsafe {
        libc::umount2(path.as_ptr(), libc::MNT_DETACH)
    })
}

/// `PR_SET_PDEATHSIG = SIGKILL` for the calling process.
pub(crate) fn set_parent_death_signal() -> Result<(), Failure> {
    // SAFETY: prctl(2) with integer arguments only.
    check("parent-death signal", unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// Fails if the supervisor is already gone (the write end of `alive` was closed), which
/// means it died before our parent-death signal was armed and the signal will never come.
pub(crate) fn check_parent_alive(alive: &OwnedFd) -> Result<(), Failure> {
    let mut poll = libc::pollfd {
        fd: alive.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own, without waiting.
    let rc = unsafe { libc::poll(&mut poll, 1, 0) };
    if rc == -1 {
        return Err(Failure::last_os("poll"));
    }
    if poll.revents & (libc::POLLHUP | libc::POLLIN) != 0 {
        return Err(Failure::message("parent-death signal", "supervisor exited"));
    }
    Ok(())
}

fn mount(
    step: &'static str,
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), Failure> {
    let source = CString::new(source).map_err(|_| Failure::message(step, "NUL in source"))?;
    let target = cstring(step, target)?;
    let fstype = fstype
        .map(CString::new)
        .transpose()
        .map_err(|_| Failure::message(step, "NUL in type"))?;
    let data = data
        .map(CString::new)
        .transpose()
        .map_err(|_| Failure::message(step, "NUL in options"))?;
    // SAFETY: mount(2) with NUL-terminated strings we own (or NULL) for every pointer.
    check(step, unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
}

/// Stops mount events from propagating back to the host's namespace.
pub(crate) fn make_mounts_private() -> Result<(), Failure> {
    mount(
        "private mounts",
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
}

/// A fresh `/proc` that shows only the new PID namespace.
pub(crate) fn mount_proc() -> Result<(), Failure> {
    mount(
        "mount /proc",
        "proc",
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

/// A size-capped tmpfs on the private directory.
pub(crate) fn mount_tmpfs(dir: &Path, size_bytes: u64) -> Result<(), Failure> {
    mount(
        "mount tmpfs",
        "tmpfs",
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("size={size_bytes},mode=0700")),
    )
}

/// Brings `lo` up in the new network namespace.
pub(crate) fn loopback_up() -> Result<(), Failure> {
    // SAFETY: socket(2) with integer arguments; the result is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(Failure::last_os("loopback socket"));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid (empty) value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the interface named in `request` and fills its flags.
    check("loopback flags", unsafe {
        libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request)
    })?;
    // SAFETY: the flags member is the one SIOCGIFFLAGS just filled in.
    unsafe {
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads `request`, which names `lo` and carries the new flags.
    check("loopback up", unsafe {
        libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request)
    })
}

fn set_rlimit(
    step: &'static str,
    resource: libc::__rlimit_resource_t,
    value: u64,
) -> Result<(), Failure> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit(2) reads one rlimit struct we own.
    check(step, unsafe { libc::setrlimit(resource, &limit) })
}

/// Sets the soft and hard limits the profile asks for (hard too: the server cannot raise
/// them back). `RLIMIT_NPROC` only with `nproc`: outside a user namespace it would count
/// every process of the gateway's user.
pub(crate) fn set_rlimits(limits: &ResourceLimits, nproc: bool) -> Result<(), Failure> {
    // No core dumps: a dump of a server holding a secret would land in its working directory.
    set_rlimit("RLIMIT_CORE", libc::RLIMIT_CORE, 0)?;
    let wanted = [
        ("RLIMIT_AS", libc::RLIMIT_AS, limits.address_space),
        ("RLIMIT_CPU", libc::RLIMIT_CPU, limits.cpu_seconds),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, limits.open_files),
        (
            "RLIMIT_NPROC",
            libc::RLIMIT_NPROC,
            limits.processes.filter(|_| nproc),
        ),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, limits.file_size),
    ];
    for (step, resource, value) in wanted {
        if let Some(value) = value {
            set_rlimit(step, resource, value)?;
        }
    }
    Ok(())
}

pub(crate) fn set_no_new_privs() -> Result<(), Failure> {
    // SAFETY: prctl(2) with integer arguments only.
    check("no_new_privs", unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

pub(crate) fn chdir(path: &CString) -> Result<(), Failure> {
    // SAFETY: chdir(2) with a NUL-terminated path we own.
    check("chdir", unsafe { libc::chdir(path.as_ptr()) })
}

/// execveat(2) of the file open as `fd` (`AT_EMPTY_PATH`); returns the error (it only
/// returns on failure).
pub(crate) fn execve_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    argv: &[CString],
    envp: &[CString],
) -> io::Error {
    use std::os::fd::AsRawFd as _;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: `fd` is open for the duration of the call (borrowed), the path is the empty
    // NUL-terminated string `AT_EMPTY_PATH` asks for, and both arrays hold NUL-terminated
    // strings owned by the caller and end with NULL, as execveat(2) requires.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}

/// execve(2); returns the error (it only returns on failure).
pub(crate) fn execve(program: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: every pointer is to a NUL-terminated string owned by the caller, and both
    // arrays end with NULL, as execve(2) requires; they outlive the call.
    unsafe {
        libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
    }
    io::Error::last_os_error()
}
