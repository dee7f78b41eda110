//! Landlock: the filesystem allow-list, plus scoping of signals and abstract Unix sockets to
//! the sandbox (ABI 6).

use landlock::{
    ABI, Access, AccessFs, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};

use super::sys::Failure;
use crate::profile::Filesystem;

/// The newest ABI whose rights we use: 6 adds signal and abstract-socket scoping. Older
/// kernels enforce what they know (reported as partial); newer ones add rights we do not
/// handle yet (such as connecting to named Unix sockets in ABI 9, which the seccomp filter
/// covers instead).
const TARGET_ABI: ABI = ABI::V6;

/// Restricts the calling process (and everything it executes) to `filesystem`. Returns what
/// the kernel enforced; fails if it enforced nothing.
pub(crate) fn restrict(filesystem: &Filesystem) -> Result<String, Failure> {
    let fail = |e: landlock::RulesetError| Failure::message("landlock", e.to_string());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(fail)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &filesystem.read,
            AccessFs::from_read(TARGET_ABI),
        ))
        .map_err(fail)?
        .add_rules(path_beneath_rules(
            &filesystem.write,
            AccessFs::from_all(TARGET_ABI),
        ))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => format!("{effective_abi:?}"),
        LandlockStatus::NotEnabled => "not enabled".to_owned(),
        LandlockStatus::NotImplemented => "not implemented".to_owned(),
    };
    match status.ruleset {
        RulesetStatus::FullyEnforced => Ok(format!("fully enforced (ABI {abi})")),
        RulesetStatus::PartiallyEnforced => Ok(format!("partially enforced (ABI {abi})")),
        RulesetStatus::NotEnforced => Err(Failure::message(
            "landlock",
            format!("not enforced by this kernel ({abi})"),
        )),
    }
}
