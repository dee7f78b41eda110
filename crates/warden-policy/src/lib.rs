//! The request guards of mcp-warden: authorization ([`policy`], Cedar), rate limits
//! ([`rate`]), argument validation against the tool's `inputSchema` ([`schema`]) and policy
//! constraints on argument values ([`arguments`]: paths, URLs and hosts, lengths, patterns).
//!
//! Position on the request path: these guards fill the `rate_limit`, `policy` and `schema`
//! stages of the pipeline (`warden_guard::pipeline` states the order and why), after
//! authentication has attached a principal and before anything is forwarded upstream. The
//! policy guard also runs first in the response direction, where it cuts list results to what
//! the principal may use, authorises server-initiated requests (sampling, elicitation) and
//! drops server notifications that name what the principal may not use.
//!
//! I/O: reads policy files and canonicalises path roots when built; at run time canonicalises
//! path arguments (file-system metadata only) and resolves host names (with a timeout). It
//! never contacts an upstream and never fetches a schema.
#![forbid(unsafe_code)]

pub mod address;
pub mod arguments;
pub mod glob;
pub mod path;
pub mod policy;
pub mod rate;
pub mod schema;

use std::path::Path;
use std::sync::Arc;

use warden_config::Config;
use warden_guard::{Guard, Pipeline, Stage};
use warden_store::{DynStore, MemoryStore};

pub use arguments::{ArgumentGuard, ArgumentsError};
pub use policy::{PolicyError, PolicyGuard};
pub use rate::{Buckets, MemoryBuckets, RateLimitGuard, StoreBuckets};
pub use schema::{SchemaGuard, SchemaLimits};

/// Guards with the stage each is installed in.
pub type StagedGuards = Vec<(Stage, Arc<dyn Guard>)>;

/// Why the request guards could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `[policy]` is unusable.
    #[error("invalid [policy]")]
    Policy(#[source] PolicyError),
    /// `[arguments]` is unusable.
    #[error("invalid [arguments]")]
    Arguments(#[source] ArgumentsError),
}

/// The request guards a configuration asks for, each with its stage, in installation order.
///
/// `base` is the directory relative policy files are read from (the configuration file's).
/// The rate-limit buckets always go through the [`warden_store::Store`] interface: `store`,
/// when given, is a store shared between replicas (buckets on wall-clock time); otherwise a
/// [`warden_store::MemoryStore`] of this process holds them (on the monotonic clock).
pub fn build(
    config: &Config,
    base: &Path,
    store: Option<DynStore>,
) -> Result<StagedGuards, BuildError> {
    let mut guards: StagedGuards = vec![];
    if RateLimitGuard::is_active(&config.rate_limit) {
        let buckets: Arc<dyn Buckets> = match store {
            Some(store) => Arc::new(StoreBuckets::new(store)),
            None => Arc::new(StoreBuckets::local(Arc::new(MemoryStore::default()))),
        };
        guards.push((
            Stage::RateLimit,
            Arc::new(RateLimitGuard::new(config.rate_limit.clone(), buckets)),
        ));
    }
    if let Some(policy) = &config.policy {
        let guard = PolicyGuard::from_config(policy, base).map_err(BuildError::Policy)?;
        guards.push((Stage::Policy, Arc::new(guard)));
    }
    let args = &config.arguments;
    if args.validate_schema {
        guards.push((
            Stage::Schema,
            Arc::new(SchemaGuard::new(SchemaLimits {
                max_bytes: args.max_schema_bytes.get(),
                max_depth: args.max_schema_depth.get(),
            })),
        ));
    }
    guards.push((
        Stage::Schema,
        Arc::new(ArgumentGuard::new(args).map_err(BuildError::Arguments)?),
    ));
    Ok(guards)
}

/// Installs `guards` into `pipeline`.
pub fn install(pipeline: Pipeline, guards: StagedGuards) -> Pipeline {
    guards
        .into_iter()
        .fold(pipeline, |p, (stage, guard)| p.with(stage, guard))
}
