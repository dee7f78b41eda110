//! Capabilities: empty bounding and ambient sets, locked securebits, empty
//! effective/permitted/inheritable sets. After this, not even `execve` of a set-uid binary
//! or of anything as uid 0 in the namespace can give a capability back.

use super::sys::Failure;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Highest capability number we try to drop; the kernel answers EINVAL past its last one.
const MAX_CAPABILITY: libc::c_ulong = 63;

// securebits (linux/securebits.h): root gets no capabilities on execve, uid changes do not
// touch capabilities, ambient capabilities cannot be raised; each locked.
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: prctl(2) with integer arguments only.
    unsafe {
        libc::prctl(
            option,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    }
}

fn get() -> Result<[CapData; 2], Failure> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with version 3 reads the header and writes two CapData structs, the
    // size of the array we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if rc == -1 {
        return Err(Failure::last_os("capget"));
    }
    Ok(data)
}

fn holds_none(data: &[CapData; 2]) -> bool {
    data.iter()
        .all(|d| d.effective == 0 && d.permitted == 0 && d.inheritable == 0)
}

/// Empties the bounding and ambient sets and locks securebits. Needs CAP_SETPCAP, which the
/// process has in its own user namespace; a process without namespaces and without
/// capabilities (an unprivileged gateway) has nothing to drop, and that is accepted.
pub(crate) fn drop_bounding_and_ambient() -> Result<(), Failure> {
    if prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) == -1
    {
        return Err(Failure::last_os("clear ambient capabilities"));
    }
    let unprivileged = holds_none(&get()?);
    for cap in 0..=MAX_CAPABILITY {
        if prctl(libc::PR_CAPBSET_DROP, cap) == -1 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) => break,
                // No CAP_SETPCAP and no capability to lose: no_new_privs keeps it that way.
                Some(libc::EPERM) if unprivileged => return Ok(()),
                _ => return Err(Failure::last_os("drop bounding capability")),
            }
        }
    }
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if prctl(libc::PR_SET_SECUREBITS, bits) == -1 {
        return Err(Failure::last_os("lock securebits"));
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable sets and checks that they are empty.
pub(crate) fn clear_sets() -> Result<(), Failure> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset(2) with version 3 reads the header and two CapData structs, the size of
    // the array we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc == -1 {
        return Err(Failure::last_os("capset"));
    }
    if !holds_none(&get()?) {
        return Err(Failure::message(
            "capset",
            "capabilities remain after capset",
        ));
    }
    Ok(())
}
