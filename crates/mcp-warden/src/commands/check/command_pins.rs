//! RUN-3 (with SUP-2 and APP-1): are upstream commands pinned, and do their packages name an
//! exact version?

use warden_config::{PinningMode, UpstreamTransport};
use warden_pins::command::spec::{Pinning, packages};

use super::{Built, Claims, Status};

const IDS: &[&str] = &["SUP-2", "RUN-3", "APP-1"];

/// Adds the rows. `unpinned`: upstreams the scanner's rule already reports.
pub(super) fn claims(b: &Built<'_>, unpinned: &[&str], c: &mut Claims) {
    if !b.serve {
        let reason = match b.config.run_command_pinning() {
            PinningMode::Block => {
                "the command of `run` is pinned on first use (resolved path, SHA-256, interpreter script, launcher package versions) and a change is refused before it starts; whether its package names an exact version is reported by `mcp-warden scan`"
            }
            PinningMode::Report => {
                "the command of `run` is pinned on first use, but a change is only reported (command_pinning = \"report\")"
            }
            PinningMode::Off => "the command of `run` is not pinned (command_pinning = \"off\")",
        };
        let status = match b.config.run_command_pinning() {
            PinningMode::Block => Status::Partial,
            PinningMode::Report => Status::Partial,
            PinningMode::Off => Status::Off,
        };
        c.add(IDS, status, reason);
        return;
    }
    let mut blocked = Vec::new();
    let mut reported = Vec::new();
    let mut off = Vec::new();
    let mut floating: Vec<String> = unpinned.iter().map(|s| (*s).to_owned()).collect();
    for u in b.config.upstreams.iter().filter(|u| u.enabled) {
        let UpstreamTransport::Stdio(s) = &u.transport else {
            continue;
        };
        match b.config.command_pinning_of(u) {
            PinningMode::Block => blocked.push(u.name.as_str()),
            PinningMode::Report => reported.push(u.name.as_str()),
            PinningMode::Off => off.push(u.name.as_str()),
        }
        let runs_unpinned = packages(&s.command, &s.args)
            .iter()
            .any(|p| p.pinning == Pinning::Unpinned);
        if runs_unpinned && !floating.iter().any(|n| n == &u.name) {
            floating.push(u.name.clone());
        }
    }
    if blocked.is_empty() && reported.is_empty() && off.is_empty() {
        c.add(IDS, Status::NotApplicable, "no stdio upstream");
        return;
    }
    let mut gaps = Vec::new();
    if !floating.is_empty() {
        gaps.push(format!(
            "package without a pinned version: {}",
            floating.join(", ")
        ));
    }
    if !reported.is_empty() {
        gaps.push(format!(
            "command changes only reported (command_pinning = \"report\"): {}",
            reported.join(", ")
        ));
    }
    if !off.is_empty() {
        gaps.push(format!(
            "commands not pinned (command_pinning = \"off\"): {}",
            off.join(", ")
        ));
    }
    if gaps.is_empty() {
        c.add(IDS, Status::Enforced, "every stdio upstream's command is pinned (resolved path, SHA-256, interpreter script, launcher package versions) and a change is refused before it starts; every package names an exact version");
    } else if blocked.is_empty() && reported.is_empty() {
        c.add(IDS, Status::Off, gaps.join("; "));
    } else {
        c.add(
            IDS,
            Status::Partial,
            format!("commands are pinned at start; {}", gaps.join("; ")),
        );
    }
}
