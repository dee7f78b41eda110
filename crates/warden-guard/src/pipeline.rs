//! The stages and their order. The order is written here, once, with its reasons.

use std::sync::Arc;

use warden_proto::{ErrorCode, Message};

use crate::{
    ApprovalTicket, Call, Denial, Direction, FailMode, Guard, GuardError, Report, Verdict,
};

/// The closed set of pipeline stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Who is calling (OAuth bearer token, API key). Request direction.
    Authn,
    /// Token buckets and concurrency caps per principal, tool and upstream.
    RateLimit,
    /// Authorization policy on the parsed body.
    Policy,
    /// `tools/call` arguments against the pinned `inputSchema`, plus path/URL constraints.
    Schema,
    /// Secrets the client is about to send to an upstream.
    SecretsInArgs,
    /// Human approval for sensitive calls.
    Approval,
    /// Calls to tools whose definition is held by pinning (changed, added or ambiguous since
    /// the pin) are refused. Request direction; its list-side twin is [`Stage::Pinning`].
    PinnedCall,
    /// Calls to tools withheld by the poisoning analysis of their definition are refused.
    /// Request direction; its list-side twin is [`Stage::Poisoning`].
    PoisonedCall,
    /// Tool-definition pinning (trust on first use) on list results.
    Pinning,
    /// Poisoning analysis of definitions on list results.
    Poisoning,
    /// Injection scan of results and server-initiated content.
    InjectionScan,
    /// Secret and PII redaction of results.
    Redact,
    /// Output sanitising (terminal escapes, invisible characters).
    Sanitize,
}

/// Order of the stages for traffic toward the upstream.
// authn before rate_limit: buckets are per principal.
// rate_limit before policy: a flood of denied calls must still be throttled cheaply.
// policy before pinned_call: an unauthorised caller does not learn which tools are held.
// pinned_call before schema: a held definition's inputSchema is not trusted to validate with.
// poisoned_call before schema: the same holds for a definition that failed poisoning analysis.
// policy before schema: an unauthorised caller learns nothing from validation errors.
// schema before secrets_in_args: scan only arguments that are well-formed.
// approval last: a human is asked only about a call every automatic check accepted.
pub const REQUEST_STAGES: &[Stage] = &[
    Stage::Authn,
    Stage::RateLimit,
    Stage::Policy,
    Stage::PinnedCall,
    Stage::PoisonedCall,
    Stage::Schema,
    Stage::SecretsInArgs,
    Stage::Approval,
];

/// Order of the stages for traffic toward the client.
// policy first: list results are cut to what the principal may use, and server-initiated
// requests (sampling, elicitation) are authorised, before any later stage spends work on them.
// pinning before poisoning: a changed definition is held back whatever its analysis says, and
// the analysis then runs on what would be released.
// injection_scan before redact: detection sees the original text; redaction then removes
// secrets from what is forwarded.
// sanitize last: it normalises exactly the bytes the client will receive.
pub const RESPONSE_STAGES: &[Stage] = &[
    Stage::Policy,
    Stage::Pinning,
    Stage::Poisoning,
    Stage::InjectionScan,
    Stage::Redact,
    Stage::Sanitize,
];

/// What the pipeline decided for one message.
#[derive(Debug)]
pub enum Outcome {
    /// Forward the original message.
    Forward,
    /// Forward this replacement instead.
    ForwardRewritten(Message),
    /// Refuse.
    Deny(Denial),
    /// Hold for approval.
    Hold(ApprovalTicket),
}

/// The guards of each stage, as built from the configuration.
#[derive(Default, Clone)]
pub struct Pipeline {
    guards: Vec<(Stage, Arc<dyn Guard>)>,
    /// Told of every decision other than "continue" (the audit log).
    observer: Option<Arc<dyn Observer>>,
}

/// A decision other than "continue", as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum Decided<'a> {
    /// The guard refused the message (including a fail-closed error).
    Deny(&'a Denial),
    /// The guard held the message for approval.
    Hold(&'a ApprovalTicket),
    /// The guard rewrote the message.
    Rewrite,
    /// The guard could not decide and its fail-open mode let the message through.
    Skip(&'a GuardError),
    /// The guard let the message through unchanged but reported a finding.
    Report(&'a Report),
}

/// Receives every non-"continue" decision of a pipeline, synchronously and in order, before
/// the outcome reaches the session layer. Must not block (the audit log queues the record).
pub trait Observer: Send + Sync {
    /// `guard` decided `decided` on `call`.
    fn decided(&self, call: &Call<'_>, guard: &dyn Guard, decided: Decided<'_>);
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.guards.iter().map(|(s, g)| (s, g.name())))
            .finish()
    }
}

impl Pipeline {
    /// A pipeline whose every stage passes messages through.
    pub fn passthrough() -> Self {
        Self::default()
    }

    /// Installs `guard` in `stage` (guards within one stage run in installation order).
    pub fn with(mut self, stage: Stage, guard: Arc<dyn Guard>) -> Self {
        self.guards.push((stage, guard));
        let rank = |s: &Stage| {
            REQUEST_STAGES
                .iter()
                .chain(RESPONSE_STAGES)
                .position(|x| x == s)
                .unwrap_or(usize::MAX)
        };
        self.guards.sort_by_key(|(s, _)| rank(s));
        self
    }

    /// Reports every non-"continue" decision to `observer`.
    pub fn observed(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The guards installed, in order, for posture reporting.
    pub fn installed(&self) -> impl Iterator<Item = (Stage, &dyn Guard)> {
        self.guards.iter().map(|(s, g)| (*s, g.as_ref()))
    }

    /// True when no guard runs in `direction`: the caller may skip building a [`Call`].
    pub fn is_passthrough(&self, direction: Direction) -> bool {
        let stages = stages_for(direction);
        !self.guards.iter().any(|(s, _)| stages.contains(s))
    }

    /// Runs every stage of `call.direction` in order.
    pub async fn run(&self, call: &Call<'_>) -> Outcome {
        let stages = stages_for(call.direction);
        let mut rewritten: Option<Message> = None;
        for (stage, guard) in &self.guards {
            if !stages.contains(stage) {
                continue;
            }
            let current = Call {
                message: rewritten.as_ref().unwrap_or(call.message),
                direction: call.direction,
                principal: call.principal,
                session: call.session,
                upstream: call.upstream,
                request_method: call.request_method,
                target: call.target,
                permits: call.permits,
            };
            let verdict = match guard.check_now(&current) {
                Some(verdict) => verdict,
                None => guard.check(&current).await,
            };
            if let Some(o) = &self.observer {
                let decided = match &verdict {
                    Ok(Verdict::Continue) => None,
                    Ok(Verdict::Rewrite(_)) => Some(Decided::Rewrite),
                    Ok(Verdict::Deny(d)) => Some(Decided::Deny(d)),
                    Ok(Verdict::Hold(t)) => Some(Decided::Hold(t)),
                    Ok(Verdict::Report(r)) => Some(Decided::Report(r)),
                    Err(e) if guard.fail_mode() == FailMode::Open => Some(Decided::Skip(e)),
                    // Fail-closed errors are reported as the denial built below.
                    Err(_) => None,
                };
                if let Some(d) = decided {
                    o.decided(&current, guard.as_ref(), d);
                }
            }
            match verdict {
                Ok(Verdict::Continue | Verdict::Report(_)) => {}
                Ok(Verdict::Rewrite(m)) => rewritten = Some(m),
                Ok(Verdict::Deny(d)) => return Outcome::Deny(d),
                Ok(Verdict::Hold(t)) => return Outcome::Hold(t),
                Err(err) => match guard.fail_mode() {
                    FailMode::Open => {
                        // The audit layer records fail-open skips; the log says it too.
                        tracing::warn!(guard = guard.name(), error = %err, "guard skipped (fail-open)");
                    }
                    FailMode::Closed => {
                        let denial = Denial {
                            guard: guard.name(),
                            code: ErrorCode::Denied,
                            message: "request refused: a security check could not complete".into(),
                            detail: err.to_string(),
                            controls: guard.controls(),
                            retry_after: None,
                        };
                        if let Some(o) = &self.observer {
                            o.decided(&current, guard.as_ref(), Decided::Deny(&denial));
                        }
                        return Outcome::Deny(denial);
                    }
                },
            }
        }
        match rewritten {
            Some(m) => Outcome::ForwardRewritten(m),
            None => Outcome::Forward,
        }
    }
}

fn stages_for(direction: Direction) -> &'static [Stage] {
    match direction {
        Direction::ToUpstream => REQUEST_STAGES,
        Direction::ToClient => RESPONSE_STAGES,
    }
}

#[cfg(test)]
mod tests;
