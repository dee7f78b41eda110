//! Policy constraints on argument values, on top of the tool's own schema: paths inside
//! allow-listed roots, URLs and hosts that are allow-listed and never internal (SSRF), string
//! length limits, and per-tool rules (length, anchored pattern). Applied to `tools/call` and
//! `prompts/get` arguments, to `resources/read` (and subscribe) URIs, which also covers the
//! parameters a client substitutes into a resource template, and to the values of a
//! `completion/complete` (what it completes would take them).
//!
//! Which strings are checked as what:
//! - every string: `max_string_bytes`;
//! - a string that parses as an absolute URL with a host: the host (URL allow-list, then
//!   address classification, resolving names with a timeout);
//! - a `file:` URL, and a string under an argument named like `path_arguments`: the path;
//! - a string under an argument named like `host_arguments`: the host.
//!
//! Names are checked against what they resolve to now; an upstream that resolves the name again
//! later may get another answer (DNS rebinding). Blocking internal names outright
//! (`localhost`, `*.internal`, ...) and short TTL-independent checks narrow that window; an
//! egress policy on the upstream's sandbox closes it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use url::{Host, Url};
use warden_config::ArgumentsConfig;
use warden_guard::{Call, Denial, Direction, Guard, GuardError, Verdict};
use warden_proto::ErrorCode;
use warden_proto::Field;

use crate::address::{AddressClass, classify, is_internal_name};
use crate::glob::{Glob, GlobSet};
use crate::path::PathDenial;

/// Deepest argument nesting walked (the message depth limit is lower in practice).
const MAX_WALK_DEPTH: usize = 128;
/// Most host checks per call: each may cost a DNS lookup.
const MAX_HOSTS_PER_CALL: usize = 16;
/// URL schemes whose host a server would connect to. Other schemes (`greeting://World`,
/// application resource URIs) name no network host and are not resolved.
const NETWORK_SCHEMES: &[&str] = &[
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "ftps",
    "sftp",
    "tftp",
    "gopher",
    "ssh",
    "telnet",
    "ldap",
    "ldaps",
    "smb",
    "dict",
    "redis",
    "rediss",
    "mongodb",
    "postgres",
    "postgresql",
    "mysql",
    "imap",
    "imaps",
    "pop3",
    "smtp",
    "smtps",
    "rtsp",
    "nntp",
    "git",
    "svn",
    "jar",
    "netdoc",
];

/// A compiled per-tool rule.
#[derive(Debug)]
struct Rule {
    tool: Glob,
    argument: String,
    max_length: Option<usize>,
    pattern: Option<regex::Regex>,
}

/// The `arguments` guard.
#[derive(Debug)]
pub struct ArgumentGuard {
    max_string_bytes: usize,
    roots: Vec<PathBuf>,
    path_names: GlobSet,
    host_names: GlobSet,
    allow_hosts: GlobSet,
    block_private: bool,
    resolve_timeout: Duration,
    deny_unresolvable: bool,
    rules: Vec<Rule>,
}

/// Why the guard could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ArgumentsError {
    /// A path root does not exist or cannot be resolved.
    #[error("path root `{root}` cannot be resolved")]
    Root {
        /// The root as configured.
        root: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One refused value: the client-facing reason (naming the argument) and the audit detail.
type Refusal = (String, String);

/// A string to check, with the argument name it sits under.
/// A host an argument names, to resolve and check: (argument, host, port).
type HostCheck = (String, Host<String>, u16);

struct Item<'a> {
    field: String,
    key: Option<&'a str>,
    value: &'a str,
}

impl ArgumentGuard {
    /// Stable name in audit records and `check`.
    pub const NAME: &'static str = "arguments";
    /// Controls enforced.
    pub const CONTROLS: &'static [&'static str] = &["API-1", "TOOL-3", "RES-1", "RES-3"];

    /// Builds the guard; path roots are canonicalised now (they must exist).
    pub fn new(config: &ArgumentsConfig) -> Result<Self, ArgumentsError> {
        let mut roots = vec![];
        for root in &config.path_roots {
            roots.push(
                std::fs::canonicalize(root).map_err(|source| ArgumentsError::Root {
                    root: root.display().to_string(),
                    source,
                })?,
            );
        }
        Ok(Self {
            max_string_bytes: config.max_string_bytes.get(),
            roots,
            path_names: GlobSet::new(&config.path_arguments),
            host_names: GlobSet::new(&config.host_arguments),
            allow_hosts: GlobSet::new(&config.url_allow_hosts),
            block_private: config.block_private_addresses,
            resolve_timeout: config.resolve_timeout,
            deny_unresolvable: config.deny_unresolvable_hosts,
            rules: config
                .rules
                .iter()
                .map(|r| Rule {
                    tool: Glob::new(&r.tool),
                    argument: r.argument.clone(),
                    max_length: r.max_length,
                    pattern: r.pattern.clone(),
                })
                .collect(),
        })
    }

    /// Walks `value`, checking string lengths on the way, and collects the strings that need
    /// a path, URL or host check. `path` is the field's name so far (a reused buffer: most
    /// strings need no name unless they fail).
    fn collect<'a>(
        &self,
        value: &'a Value,
        path: &mut String,
        key: Option<&'a str>,
        depth: usize,
        out: &mut Vec<Item<'a>>,
    ) -> Result<(), Refusal> {
        if depth > MAX_WALK_DEPTH {
            return Err((
                format!("argument `{path}` is nested too deeply"),
                "argument walk depth exceeded".into(),
            ));
        }
        match value {
            Value::String(s) => {
                if s.len() > self.max_string_bytes {
                    return Err((
                        format!(
                            "argument `{path}` is longer than {} bytes",
                            self.max_string_bytes
                        ),
                        format!("string of {} bytes", s.len()),
                    ));
                }
                let named = |set: &GlobSet| key.is_some_and(|k| set.matches(k));
                let needs = s.contains("://")
                    || s.starts_with("file:")
                    || (!self.roots.is_empty() && named(&self.path_names))
                    || named(&self.host_names);
                if needs {
                    out.push(Item {
                        field: path.clone(),
                        key,
                        value: s,
                    });
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let r = self.collect(v, path, key, depth + 1, out);
                    path.truncate(len);
                    r?;
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    let r = self.collect(v, path, Some(k), depth + 1, out);
                    path.truncate(len);
                    r?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_path(&self, field: &str, path: &str) -> Result<(), Refusal> {
        if self.roots.is_empty() {
            return Ok(());
        }
        match crate::path::check(path, &self.roots) {
            Ok(_) => Ok(()),
            Err(denial) => {
                let reason = match denial {
                    PathDenial::Traversal => "contains a parent-directory (..) component",
                    PathDenial::Nul => "contains a NUL byte",
                    PathDenial::Empty => "is an empty path",
                    PathDenial::HomeRelative => "is relative to a home directory",
                    PathDenial::OutsideRoots => "is outside the allowed directories",
                };
                Err((format!("argument `{field}` {reason}"), denial.to_string()))
            }
        }
    }

    /// Checks one host (from a URL or a host argument); resolves names.
    async fn check_host(&self, field: &str, host: &Host<String>, port: u16) -> Result<(), Refusal> {
        let shown = match host {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        if !self.allow_hosts.is_empty() && !self.allow_hosts.matches(&shown.to_ascii_lowercase()) {
            return Err((
                format!("argument `{field}` names host {shown:?}, which is not allowed"),
                "host not in url_allow_hosts".into(),
            ));
        }
        if !self.block_private {
            return Ok(());
        }
        let addresses: Vec<IpAddr> = match host {
            Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
            Host::Domain(name) => {
                if is_internal_name(name) {
                    return Err((
                        format!("argument `{field}` names an internal host"),
                        format!("host {name} is an internal name"),
                    ));
                }
                let lookup = tokio::net::lookup_host((name.as_str(), port));
                let failure = match tokio::time::timeout(self.resolve_timeout, lookup).await {
                    Ok(Ok(addrs)) => {
                        let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                        if addrs.is_empty() {
                            "no addresses".to_owned()
                        } else {
                            return self.check_addresses(field, &shown, addrs, " (by DNS)");
                        }
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                if self.deny_unresolvable {
                    return Err((
                        format!("argument `{field}` names a host that does not resolve"),
                        format!("resolving {name}: {failure}"),
                    ));
                }
                tracing::debug!(host = %name, reason = %failure, "host does not resolve; allowed");
                return Ok(());
            }
        };
        self.check_addresses(field, &shown, addresses, "")
    }

    fn check_addresses(
        &self,
        field: &str,
        shown: &str,
        addresses: Vec<IpAddr>,
        via: &str,
    ) -> Result<(), Refusal> {
        for ip in addresses {
            match classify(ip) {
                AddressClass::Public => {}
                class => {
                    return Err((
                        format!("argument `{field}` names a {}{via}", class.noun()),
                        format!("host {shown} is {class:?} ({ip})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks `item` as far as no answer from outside is needed (paths, URL shapes, the host
    /// budget) and adds the hosts it names to `hosts`, to be resolved and checked next.
    fn check_item(&self, item: &Item<'_>, hosts: &mut Vec<HostCheck>) -> Result<(), Refusal> {
        let field = item.field.as_str();
        let named = |set: &GlobSet| item.key.is_some_and(|k| set.matches(k));
        if named(&self.path_names) {
            self.check_path(field, item.value)?;
        }
        let host = if named(&self.host_names) {
            // A bare host, possibly with a port or IPv6 brackets.
            Url::parse(&format!("http://{}/", item.value))
                .ok()
                .and_then(|u| Some((u.host()?.to_owned(), u.port_or_known_default()?)))
        } else {
            None
        };
        let url = if item.value.contains("://") || item.value.starts_with("file:") {
            Url::parse(item.value).ok()
        } else {
            None
        };
        if let Some(url) = &url {
            if url.scheme() == "file" {
                if !self.roots.is_empty() {
                    let Ok(path) = url.to_file_path() else {
                        return Err((
                            format!("argument `{field}` is a file URL the gateway cannot check"),
                            "file URL with a host or invalid path".into(),
                        ));
                    };
                    self.check_path(field, &path.to_string_lossy())?;
                }
            } else if let Some(h) = url
                .host()
                .filter(|_| NETWORK_SCHEMES.contains(&url.scheme()))
            {
                let port = url.port_or_known_default().unwrap_or(0);
                self.host_budget(field, hosts.len() + 1)?;
                hosts.push((field.to_owned(), h.to_owned(), port));
            }
        }
        if let Some((h, port)) = host {
            self.host_budget(field, hosts.len() + 1)?;
            hosts.push((field.to_owned(), h, port));
        }
        Ok(())
    }

    fn host_budget(&self, field: &str, n: usize) -> Result<(), Refusal> {
        if n > MAX_HOSTS_PER_CALL {
            return Err((
                format!("argument `{field}`: too many hosts in one call"),
                format!("more than {MAX_HOSTS_PER_CALL} hosts"),
            ));
        }
        Ok(())
    }

    fn check_rules(&self, tool: &str, arguments: &Value) -> Result<(), Refusal> {
        for rule in self.rules.iter().filter(|r| r.tool.matches(tool)) {
            let Some(value) = arguments.get(&rule.argument) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                return Err((
                    format!("argument `{}` must be a string", rule.argument),
                    format!("rule for {tool} expects a string"),
                ));
            };
            if let Some(max) = rule.max_length
                && text.chars().count() > max
            {
                return Err((
                    format!(
                        "argument `{}` is longer than {max} characters",
                        rule.argument
                    ),
                    format!("rule max_length {max}"),
                ));
            }
            if let Some(p) = &rule.pattern
                && !p.is_match(text)
            {
                return Err((
                    format!(
                        "argument `{}` does not match the allowed pattern",
                        rule.argument
                    ),
                    format!("rule pattern {}", p.as_str()),
                ));
            }
        }
        Ok(())
    }

    /// Checks a request; `Err` is the client message and the audit detail.
    pub async fn check_request(&self, call: &Call<'_>) -> Result<(), Refusal> {
        for (field, host, port) in self.check_request_locally(call)? {
            self.check_host(&field, &host, port).await?;
        }
        Ok(())
    }

    /// Everything [`ArgumentGuard::check_request`] checks without resolving a name; `Ok` holds
    /// the hosts the request names, which are resolved and checked next.
    fn check_request_locally(&self, call: &Call<'_>) -> Result<Vec<HostCheck>, Refusal> {
        let message = call.message;
        let params = message.params();
        let mut items = vec![];
        // A completion's values (below), which the items borrow.
        let (completed, expanded): (Value, Option<Value>);
        match message.method().unwrap_or("") {
            "tools/call" | "prompts/get" => {
                let Some(arguments) = params.and_then(|p| p.field("arguments")) else {
                    return Ok(vec![]);
                };
                if message.method() == Some("tools/call")
                    && !self.rules.is_empty()
                    && let Some(t) = call.target
                    && let Some(name) = &t.name
                {
                    self.check_rules(&format!("{}/{name}", t.upstream), arguments)?;
                }
                self.collect(arguments, &mut String::new(), None, 0, &mut items)?;
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                if let Some(uri) = params.and_then(|p| p.field("uri")) {
                    self.collect(uri, &mut "uri".to_owned(), None, 0, &mut items)?;
                }
            }
            "completion/complete" => {
                // Completing an argument lists the values it could take (a path argument's
                // completion lists a directory): the values the client has so far are checked
                // as the call's own arguments would be, and a resource template with them
                // expanded as the URI it would read.
                (completed, expanded) = completion_values(params);
                self.collect(&completed, &mut String::new(), None, 0, &mut items)?;
                if let Some(uri) = &expanded {
                    self.collect(uri, &mut "uri".to_owned(), None, 0, &mut items)?;
                }
            }
            _ => return Ok(vec![]),
        }
        let mut hosts = vec![];
        for item in &items {
            self.check_item(item, &mut hosts)?;
        }
        Ok(hosts)
    }

    async fn decide(&self, call: &Call<'_>) -> Verdict {
        if call.direction != Direction::ToUpstream || !call.message.is_request() {
            return Verdict::Continue;
        }
        self.verdict(self.check_request(call).await)
    }

    fn verdict(&self, checked: Result<(), Refusal>) -> Verdict {
        match checked {
            Ok(()) => Verdict::Continue,
            Err((message, detail)) => Verdict::Deny(Denial {
                guard: Self::NAME,
                code: ErrorCode::Denied,
                message,
                detail,
                controls: Self::CONTROLS,
                retry_after: None,
            }),
        }
    }
}

/// The values a `completion/complete` carries, as the arguments of the call they complete (the
/// context's resolved arguments and the argument typed so far), and for a resource template,
/// the template with them expanded.
fn completion_values(params: Option<&Value>) -> (Value, Option<Value>) {
    let mut arguments = serde_json::Map::new();
    if let Some(Value::Object(context)) = params
        .and_then(|p| p.field("context"))
        .and_then(|c| c.field("arguments"))
    {
        arguments.extend(context.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some((name, value)) = params
        .and_then(|p| p.field("argument"))
        .and_then(|a| Some((a.field("name")?.as_str()?, a.field("value")?)))
    {
        arguments.insert(name.to_owned(), value.clone());
    }
    let template = params
        .and_then(|p| p.field("ref"))
        .filter(|r| r.field("type").and_then(Value::as_str) == Some("ref/resource"))
        .and_then(|r| r.field("uri"))
        .and_then(Value::as_str);
    let expanded = template.map(|t| {
        let values: Vec<(&str, &str)> = arguments
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        Value::String(crate::policy::expand_template(t, &values))
    });
    (Value::Object(arguments), expanded)
}

impl Guard for ArgumentGuard {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn controls(&self) -> &'static [&'static str] {
        Self::CONTROLS
    }

    fn check<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Verdict, GuardError>> {
        async move { Ok(self.decide(call).await) }.boxed()
    }

    fn check_now(&self, call: &Call<'_>) -> Option<Result<Verdict, GuardError>> {
        // The tests `decide` and `check_request` start with: requests toward the upstream of
        // the methods that carry arguments or a URI. Only those can need a DNS answer.
        let concerned = call.direction == Direction::ToUpstream
            && call.message.is_request()
            && matches!(
                call.message.method(),
                Some(
                    "tools/call"
                        | "prompts/get"
                        | "resources/read"
                        | "resources/subscribe"
                        | "resources/unsubscribe"
                        | "completion/complete"
                )
            );
        if !concerned {
            return Some(Ok(Verdict::Continue));
        }
        // Decided here unless the arguments name a host, whose addresses must be looked up.
        match self.check_request_locally(call) {
            Ok(hosts) if hosts.is_empty() => Some(Ok(Verdict::Continue)),
            Ok(_) => None,
            Err(refusal) => Some(Ok(self.verdict(Err(refusal)))),
        }
    }
}

#[cfg(test)]
mod tests;
