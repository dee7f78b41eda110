//! The seccomp filter: system calls an MCP server never needs fail with EPERM; `clone3`
//! fails with ENOSYS so that the C library falls back to `clone`, whose namespace flags the
//! filter can inspect.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use super::sys::Failure;
use crate::profile::Seccomp;

/// Denied outright. Grouped by what they would give a hostile server.
const DENIED: &[(&str, libc::c_long)] = &[
    // Inspecting or controlling other processes.
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("kcmp", libc::SYS_kcmp),
    // Changing the filesystem view or escaping it.
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    // New namespaces: more kernel attack surface, and a way around the ones we set up.
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    // The kernel itself.
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("syslog", libc::SYS_syslog),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("vhangup", libc::SYS_vhangup),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    #[cfg(target_arch = "x86_64")]
    ("iopl", libc::SYS_iopl),
    #[cfg(target_arch = "x86_64")]
    ("ioperm", libc::SYS_ioperm),
    #[cfg(target_arch = "x86_64")]
    ("uselib", libc::SYS_uselib),
];

/// `clone` flags that create namespaces.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// On x86_64, system-call numbers with this bit set are the x32 ABI's: the same calls under
/// other numbers, which a deny-list keyed by number would miss on kernels built with x32.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A filter that fails every x32 system call with ENOSYS (x86_64 only; elsewhere empty).
fn x32_guard() -> BpfProgram {
    #[cfg(target_arch = "x86_64")]
    {
        // linux/filter.h and linux/seccomp.h; offsets into struct seccomp_data.
        const LD_W_ABS: u16 = 0x20;
        const JEQ_K: u16 = 0x15;
        const JGE_K: u16 = 0x35;
        const RET_K: u16 = 0x06;
        const OFFSET_NR: u32 = 0;
        const OFFSET_ARCH: u32 = 4;
        const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
        const RET_ALLOW: u32 = 0x7fff_0000;
        const RET_ERRNO: u32 = 0x0005_0000;
        let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
        vec![
            op(LD_W_ABS, 0, 0, OFFSET_ARCH),
            // Another architecture: not ours to judge here (the main filter kills it).
            op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
            op(LD_W_ABS, 0, 0, OFFSET_NR),
            op(JGE_K, 0, 1, X32_SYSCALL_BIT),
            op(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS.unsigned_abs()),
            op(RET_K, 0, 0, RET_ALLOW),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

fn arch() -> Result<TargetArch, Failure> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| Failure::message("seccomp", format!("unsupported architecture: {e}")))
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, Failure> {
    let fail = |e: seccompiler::BackendError| Failure::message("seccomp", e.to_string());
    let errno = u32::try_from(errno).map_err(|_| Failure::message("seccomp", "bad errno"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        arch()?,
    )
    .map_err(fail)?;
    filter.try_into().map_err(fail)
}

fn condition(arg: u8, operator: SeccompCmpOp, value: u64) -> Result<SeccompRule, Failure> {
    let fail = |e: seccompiler::BackendError| Failure::message("seccomp", e.to_string());
    let condition =
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, operator, value).map_err(fail)?;
    SeccompRule::new(vec![condition]).map_err(fail)
}

/// Installs the filters; returns how many system calls they deny (fully or by argument).
/// Needs `no_new_privs` (set before).
pub(crate) fn install(options: &Seccomp) -> Result<usize, Failure> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, number) in DENIED {
        rules.insert(*number, Vec::new());
    }
    let mut clone_rules = Vec::new();
    for flag in NAMESPACE_FLAGS {
        let flag = u64::from(flag.unsigned_abs());
        clone_rules.push(condition(0, SeccompCmpOp::MaskedEq(flag), flag)?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    if !options.allow_unix_sockets {
        let unix = u64::from(libc::AF_UNIX.unsigned_abs());
        rules.insert(
            libc::SYS_socket,
            vec![condition(0, SeccompCmpOp::Eq, unix)?],
        );
    }
    let denied = rules.len();
    let main = compile(rules, libc::EPERM)?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
    )?;
    let x32 = x32_guard();
    for program in [&x32, &clone3, &main] {
        if program.is_empty() {
            continue;
        }
        seccompiler::apply_filter(program)
            .map_err(|e| Failure::message("seccomp", e.to_string()))?;
    }
    Ok(denied + 1)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Runs a classic-BPF program (the instructions the guard uses) on `seccomp_data` with
    /// this system-call number and architecture; returns the action.
    fn run(program: &[sock_filter], nr: u32, arch: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let op = &program[pc];
            match op.code {
                0x20 => acc = if op.k == 0 { nr } else { arch },
                0x15 | 0x35 => {
                    let taken = if op.code == 0x15 {
                        acc == op.k
                    } else {
                        acc >= op.k
                    };
                    pc += usize::from(if taken { op.jt } else { op.jf });
                }
                0x06 => return op.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn x32_guard_refuses_only_x32_numbers() {
        let guard = x32_guard();
        let x86_64 = 62 | 0x8000_0000 | 0x4000_0000;
        let enosys = 0x0005_0000 | libc::ENOSYS.unsigned_abs();
        let ptrace = u32::try_from(libc::SYS_ptrace).unwrap();
        assert_eq!(run(&guard, ptrace | X32_SYSCALL_BIT, x86_64), enosys);
        assert_eq!(run(&guard, X32_SYSCALL_BIT, x86_64), enosys);
        assert_eq!(run(&guard, ptrace, x86_64), 0x7fff_0000);
        assert_eq!(run(&guard, 0, x86_64), 0x7fff_0000);
        // Another architecture is left to the main filter.
        assert_eq!(
            run(&guard, ptrace | X32_SYSCALL_BIT, 3 | 0x4000_0000),
            0x7fff_0000
        );
    }
}
