//! The content guards (`[content]`, `[upstreams.<name>.content]`) installed into the pipeline
//! `run` and `serve` build: poisoning analysis of definitions, injection scan, secret and
//! personal-data redaction, output sanitising (docs/guards.md).

use std::collections::HashMap;
use std::sync::Arc;

use warden_config::{
    Config, ContentConfig, ContentMode, DefinitionMode, HiddenTagsSetting, SanitizeSetting,
};
use warden_content::{
    AnswerSecretsGuard, ArgumentSecretsGuard, ContentModes, CrossServerGuard, Exposure,
    HiddenTagsMode, InjectionGuard, Mode, Modes, Poisoning, RedactGuard, SanitizeGuard,
    SanitizeMode,
};
use warden_guard::{Pipeline, Stage};

/// One upstream the content guards watch.
pub(crate) struct ContentTarget {
    /// The gateway's name for it.
    pub(crate) name: String,
    /// Its settings.
    pub(crate) config: ContentConfig,
    /// Whether the client sees its tools as `<name>__<tool>`.
    pub(crate) namespace: bool,
}

fn mode(m: ContentMode) -> Mode {
    match m {
        ContentMode::Off => Mode::Off,
        ContentMode::Report => Mode::Report,
        ContentMode::Redact => Mode::Redact,
        ContentMode::Block => Mode::Block,
    }
}

fn modes(c: &ContentConfig) -> Modes {
    Modes {
        poisoning: match c.poisoning {
            DefinitionMode::Off => Mode::Off,
            DefinitionMode::Report => Mode::Report,
            DefinitionMode::Block => Mode::Block,
        },
        injection: mode(c.injection),
        secrets: mode(c.secrets),
        pii: mode(c.pii),
        secrets_in_arguments: mode(c.secrets_in_arguments),
        secrets_in_answers: mode(c.secrets_in_answers),
        sanitize: match c.sanitize {
            SanitizeSetting::Off => SanitizeMode::Off,
            SanitizeSetting::Strip => SanitizeMode::Strip,
            SanitizeSetting::Visible => SanitizeMode::Visible,
        },
        hidden_tags: match c.hidden_tags {
            HiddenTagsSetting::Report => HiddenTagsMode::Report,
            HiddenTagsSetting::Visible => HiddenTagsMode::Visible,
            HiddenTagsSetting::Strip => HiddenTagsMode::Strip,
        },
    }
}

/// The targets of `serve`: every enabled upstream with its own settings.
pub(crate) fn serve_targets(config: &Config) -> Vec<ContentTarget> {
    config
        .upstreams
        .iter()
        .filter(|u| u.enabled)
        .map(|u| ContentTarget {
            name: u.name.clone(),
            config: config.content_of(u),
            namespace: u.namespace,
        })
        .collect()
}

/// Installs the content guards into `pipeline`; a guard every target turns off is not
/// installed at all (and `check` reports it off).
pub(crate) fn install(
    pipeline: Pipeline,
    config: &Config,
    targets: Vec<ContentTarget>,
) -> Pipeline {
    let content = ContentModes {
        default: modes(&config.content),
        upstreams: targets
            .iter()
            .map(|t| (t.name.clone(), modes(&t.config)))
            .collect(),
    };
    let namespaced: HashMap<String, bool> = targets
        .iter()
        .map(|t| (t.name.clone(), t.namespace))
        .collect();
    let expose: Exposure = Arc::new(move |upstream: &str, raw: &str| {
        if namespaced.get(upstream).copied().unwrap_or(false) {
            warden_session::naming::expose(upstream, raw).0
        } else {
            raw.to_owned()
        }
    });
    let mut pipeline = pipeline;
    if content.any(|m| m.poisoning != Mode::Off) {
        let poisoning = Poisoning::new(content.clone(), expose);
        pipeline = pipeline
            .with(Stage::Poisoning, poisoning.list_guard())
            .with(Stage::PoisonedCall, poisoning.call_guard());
        // Cross-server checks need two upstreams; after the list guard, so withheld tools
        // are not compared.
        if targets.len() >= 2 {
            pipeline = pipeline.with(
                Stage::Poisoning,
                Arc::new(CrossServerGuard::new(content.clone())),
            );
        }
    }
    if content.any(|m| m.injection != Mode::Off) {
        pipeline = pipeline.with(
            Stage::InjectionScan,
            Arc::new(InjectionGuard::new(content.clone())),
        );
    }
    let arguments = content.any(|m| m.secrets_in_arguments != Mode::Off);
    let answers = content.any(|m| m.secrets_in_answers != Mode::Off);
    let redact =
        content.any(|m| m.secrets != Mode::Off || m.pii != Mode::Off) || arguments || answers;
    let analyse = content.any(|m| m.poisoning != Mode::Off || m.injection != Mode::Off);
    if redact || analyse {
        // Build the rules off the start-up path (parsing the secret rules and building the
        // generic ones, the phrase lexicon, the PII patterns: tens of milliseconds of CPU), so
        // neither start-up nor the first result pays for it, at the lowest priority: on a busy CPU this runs in the time the request path
        // leaves. A request that needs a rule set first waits for it (or builds it) either way.
        let _ = std::thread::Builder::new()
            .name("warden-rules".into())
            .spawn(move || {
                if let Err(error) = warden_sandbox::priority::lower_current_thread_priority() {
                    tracing::debug!(%error, "rule compilation runs at normal priority");
                }
                if analyse {
                    warden_detect::warm_up_analysis();
                }
                if redact {
                    warden_detect::redact::warm_up();
                }
                // Building the automata freed several megabytes of scratch space in this
                // thread's allocator arena, which no other thread would reuse.
                warden_sandbox::heap::release_free_heap();
            });
    }
    if content.any(|m| m.secrets != Mode::Off || m.pii != Mode::Off) {
        pipeline = pipeline.with(Stage::Redact, Arc::new(RedactGuard::new(content.clone())));
    }
    if arguments {
        pipeline = pipeline.with(
            Stage::SecretsInArgs,
            Arc::new(ArgumentSecretsGuard::new(content.clone())),
        );
    }
    if answers {
        pipeline = pipeline.with(
            Stage::SecretsInArgs,
            Arc::new(AnswerSecretsGuard::new(content.clone())),
        );
    }
    if content.any(|m| m.sanitize != SanitizeMode::Off || m.hidden_tags != HiddenTagsMode::Report) {
        pipeline = pipeline.with(Stage::Sanitize, Arc::new(SanitizeGuard::new(content)));
    }
    pipeline
}
