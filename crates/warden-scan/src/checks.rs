//! Static findings on configured servers: what can be said without starting anything.

use std::collections::BTreeMap;

use serde::Serialize;
use warden_detect::Severity;

use crate::clients::Client;
use crate::servers::{ServerEntry, Transport, program_name};

/// One finding of the scanner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanFinding {
    /// Stable rule id (see [`RULES`]).
    pub rule: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// The configuration file.
    pub file: String,
    /// 1-based line in that file.
    pub line: usize,
    /// The client that reads the file.
    pub client: Client,
    /// The server the finding is about.
    pub server: String,
    /// What is wrong, for a human.
    pub message: String,
    /// Field and (masked) value that triggered it.
    pub evidence: String,
}

/// A rule's metadata (for SARIF `rules` and `--help`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Checklist controls it reports on.
    pub controls: &'static [&'static str],
    /// Default severity.
    pub severity: Severity,
}

/// Every static rule.
pub const RULES: &[Rule] = &[
    Rule {
        id: "config.plaintext-secret",
        summary: "a credential is written in plain text in a client configuration",
        controls: &["STORE-1", "CAUTH-1"],
        severity: Severity::High,
    },
    Rule {
        id: "config.unpinned-package",
        summary: "the server runs a package without a pinned version, so its code can change under you",
        controls: &["SUP-2"],
        severity: Severity::Medium,
    },
    Rule {
        id: "config.mutable-package-reference",
        summary: "the server runs a package named by a git branch or tag or by a URL: what that names can change",
        controls: &["SUP-2", "RUN-3"],
        severity: Severity::Low,
    },
    Rule {
        id: "config.insecure-transport",
        summary: "a remote server is reached over plain HTTP",
        controls: &["TLS-1"],
        severity: Severity::High,
    },
    Rule {
        id: "config.not-routed",
        summary: "the server is not routed through mcp-warden",
        controls: &["MULTI-1", "RUN-3"],
        severity: Severity::Low,
    },
    Rule {
        id: "config.name-collision",
        summary: "two different servers share a name across the machine's configurations",
        controls: &["MULTI-1"],
        severity: Severity::Medium,
    },
    Rule {
        id: "config.unreadable",
        summary: "a client configuration file could not be read",
        controls: &[],
        severity: Severity::Low,
    },
    Rule {
        id: "server.bad-tls",
        summary: "a remote server presents a TLS certificate that does not validate",
        controls: &["TLS-1", "TLS-2"],
        severity: Severity::High,
    },
    Rule {
        id: "server.unreachable",
        summary: "the server could not be started or reached for analysis",
        controls: &[],
        severity: Severity::Low,
    },
];

/// The rule with `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

fn finding(
    entry: &ServerEntry,
    rule: &'static str,
    message: String,
    evidence: String,
) -> ScanFinding {
    finding_at(entry, None, rule, message, evidence)
}

/// A finding located at `field`'s line when the file format tells it, else the entry's.
fn finding_at(
    entry: &ServerEntry,
    field: Option<&str>,
    rule: &'static str,
    message: String,
    evidence: String,
) -> ScanFinding {
    let severity = crate::checks::rule(rule).map_or(Severity::Medium, |r| r.severity);
    let line = field
        .and_then(|f| entry.field_lines.get(f))
        .copied()
        .unwrap_or(entry.line);
    ScanFinding {
        rule,
        severity,
        file: entry.location.path.display().to_string(),
        line,
        client: entry.location.client,
        server: entry.name.clone(),
        message,
        evidence,
    }
}

/// Shows the first and last characters of a secret only.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}…{tail} ({} chars)", chars.len())
}

/// True for values that refer to a secret instead of containing it: `${VAR}`, `${env:VAR}`,
/// `${input:id}`, `$VAR`, `{env:VAR}`, or empty.
fn is_reference(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || (v.starts_with("${") && v.ends_with('}'))
        || (v.starts_with('$')
            && v[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        || (v.starts_with("{env:") && v.ends_with('}'))
}

/// True for obvious placeholders people leave in examples.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.starts_with('<') && v.ends_with('>')
        || v.contains("your")
        || v.contains("xxxx")
        || v.contains("changeme")
        || v.contains("placeholder")
        || v.contains("example")
        || v.chars().all(|c| c == '*' || c == 'x' || c == '.')
}

const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "private_key",
    "credential",
    "auth",
    "pat",
    "key",
];

fn name_suggests_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|p| {
        // `key`, `pat` and `auth` only as whole words of the name (KEY, API_KEY, GITHUB_PAT,
        // AUTHORIZATION), never inside another word (MONKEY, PATH, AUTHOR).
        if matches!(*p, "key" | "pat" | "auth") {
            n.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == *p || (*p == "auth" && w == "authorization"))
        } else {
            n.contains(p)
        }
    })
}

/// True when `value`, set under `name`, is very likely a credential written in the file.
fn looks_like_secret(name: &str, value: &str) -> bool {
    if is_reference(value) || is_placeholder(value) {
        return false;
    }
    let v = value.trim();
    let v = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .or_else(|| v.strip_prefix("Basic "))
        .unwrap_or(v);
    if v.len() < 8 || v.contains(' ') {
        return false;
    }
    name_suggests_secret(name) || has_known_prefix(v)
}

/// Prefixes of well-known credential formats, found whatever the variable is called.
fn has_known_prefix(v: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "xapp-",
        "sk-ant-",
        "sk-proj-",
        "sk_live_",
        "rk_live_",
        "AKIA",
        "ASIA",
        "AIza",
        "npm_",
        "hf_",
        "mwk_",
    ];
    PREFIXES
        .iter()
        .any(|p| v.starts_with(p) && v.len() >= p.len() + 12)
}

/// Command-line flags whose next argument (or `=value`) is a credential.
fn secret_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let a = arg.trim_start_matches('-');
    if a.len() == arg.len() {
        return None;
    }
    let (name, value) = match a.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (a, None),
    };
    name_suggests_secret(name).then_some((name, value))
}

/// A package runner and the position of its package argument.
fn package_of<'a>(command: &str, args: &'a [String]) -> Option<(&'static str, &'a str)> {
    let prog = program_name(command);
    let (runner, rest): (&'static str, &[String]) = match prog {
        "npx" | "bunx" => ("npm", args),
        "pnpm" | "yarn" if args.first().map(String::as_str) == Some("dlx") => ("npm", &args[1..]),
        "npm" if args.first().map(String::as_str) == Some("exec") => ("npm", &args[1..]),
        "uvx" => ("pypi", args),
        "uv" if args.first().map(String::as_str) == Some("tool")
            && args.get(1).map(String::as_str) == Some("run") =>
        {
            ("pypi", &args[2..])
        }
        "pipx" if args.first().map(String::as_str) == Some("run") => ("pypi", &args[1..]),
        "docker" | "podman" if args.first().map(String::as_str) == Some("run") => {
            ("oci", &args[1..])
        }
        _ => return None,
    };
    let mut it = rest.iter().peekable();
    while let Some(a) = it.next() {
        // An explicit package flag names the package (npx -p, uvx --from, pipx --spec).
        if matches!(a.as_str(), "-p" | "--package" | "--from" | "--spec") {
            return it.next().map(|p| (runner, p.as_str()));
        }
        for flag in ["--package=", "--from=", "--spec="] {
            if let Some(p) = a.strip_prefix(flag) {
                return Some((runner, p));
            }
        }
        if a.starts_with('-') {
            // Flags that take a value in docker (`-e X`, `--name n`, `-v a:b`): skip it.
            if runner == "oci"
                && matches!(
                    a.as_str(),
                    "-e" | "--env"
                        | "-v"
                        | "--volume"
                        | "--name"
                        | "--network"
                        | "-u"
                        | "--user"
                        | "-w"
                        | "--workdir"
                        | "--env-file"
                        | "--mount"
                        | "-p"
                        | "--publish"
                )
            {
                it.next();
            }
            continue;
        }
        return Some((runner, a.as_str()));
    }
    None
}

/// True when `spec` names an exact version (or digest) of a package.
pub fn is_pinned(runner: &str, spec: &str) -> bool {
    if spec.starts_with('.') || spec.starts_with('/') || spec.contains("://") {
        // A local path or a URL: not a registry package.
        return true;
    }
    let exact = |v: &str| {
        !v.is_empty()
            && v.chars().next().is_some_and(|c| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    };
    match runner {
        "npm" => {
            // `@scope/name@1.2.3` or `name@1.2.3`; the version follows the last `@` that is
            // not the scope's.
            let body = spec.strip_prefix('@').unwrap_or(spec);
            body.rsplit_once('@').is_some_and(|(_, v)| exact(v))
        }
        "pypi" => spec
            .split_once("==")
            .or_else(|| spec.split_once('@'))
            .is_some_and(|(_, v)| exact(v.trim())),
        "oci" => spec.contains("@sha256:"),
        _ => false,
    }
}

/// True when the server already runs through mcp-warden.
pub fn is_routed(entry: &ServerEntry) -> bool {
    match &entry.transport {
        Some(Transport::Stdio { command, args, .. }) => {
            program_name(command) == "mcp-warden" && args.first().is_some_and(|a| a == "run")
        }
        _ => false,
    }
}

/// Static findings for one server.
pub fn check_server(entry: &ServerEntry) -> Vec<ScanFinding> {
    let mut out = Vec::new();
    match &entry.transport {
        Some(Transport::Stdio { command, args, env }) => {
            for (k, v) in env {
                if looks_like_secret(k, v) {
                    out.push(finding_at(
                        entry,
                        Some(&format!("env.{k}")),
                        "config.plaintext-secret",
                        format!("environment variable `{k}` holds a credential in plain text; reference it instead (e.g. `${{env:{k}}}` or a secret store)"),
                        format!("env.{k} = {}", mask(v)),
                    ));
                }
            }
            let mut i = 0;
            while i < args.len() {
                if let Some((name, inline)) = secret_flag(&args[i]) {
                    let value = inline.or_else(|| args.get(i + 1).map(String::as_str));
                    if let Some(v) = value
                        && !v.starts_with('-')
                        && looks_like_secret(name, v)
                    {
                        out.push(finding_at(
                            entry,
                            Some("args"),
                            "config.plaintext-secret",
                            format!("command-line flag `{name}` carries a credential in plain text (visible to every local user in the process list)"),
                            format!("args: --{name} {}", mask(v)),
                        ));
                    }
                } else if has_known_prefix(&args[i]) {
                    out.push(finding(
                        entry,
                        "config.plaintext-secret",
                        "a command-line argument is a credential in plain text".into(),
                        format!("args[{i}] = {}", mask(&args[i])),
                    ));
                }
                i += 1;
            }
            // A wrapped server: judge what mcp-warden runs, not mcp-warden itself.
            let (cmd, rest) = if is_routed(entry) {
                match args.iter().position(|a| a == "--") {
                    Some(p) if p + 1 < args.len() => (args[p + 1].as_str(), &args[p + 2..]),
                    _ => (command.as_str(), &args[..0]),
                }
            } else {
                (command.as_str(), &args[..])
            };
            if let Some((runner, spec)) = package_of(cmd, rest)
                && !is_pinned(runner, spec)
            {
                out.push(finding(
                    entry,
                    "config.unpinned-package",
                    format!("`{}` runs `{spec}` without an exact version: whatever the registry serves next is what runs", program_name(cmd)),
                    format!("{} {}", program_name(cmd), rest.join(" ")),
                ));
            }
            out.extend(mutable_references(entry, cmd, rest));
            if !is_routed(entry) {
                out.push(finding(
                    entry,
                    "config.not-routed",
                    "runs with the client's full rights and no gateway: `mcp-warden wrap` routes it through `mcp-warden run`".into(),
                    format!("command = {}", program_name(command)),
                ));
            }
        }
        Some(Transport::Remote { url, headers }) => {
            for (k, v) in headers {
                if looks_like_secret(k, v)
                    || k.eq_ignore_ascii_case("authorization")
                        && !is_reference(v)
                        && !is_placeholder(v)
                        && v.len() > 12
                {
                    out.push(finding_at(
                        entry,
                        Some(&format!("headers.{k}")),
                        "config.plaintext-secret",
                        format!("header `{k}` holds a credential in plain text"),
                        format!("headers.{k} = {}", mask(v)),
                    ));
                }
            }
            if let Some(rest) = url.strip_prefix("http://") {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let name = if host.starts_with('[') {
                    host.split(']').next().unwrap_or("").trim_start_matches('[')
                } else {
                    host.split(':').next().unwrap_or("")
                };
                let loopback = name == "localhost"
                    || name == "::1"
                    || name
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|a| a.is_loopback());
                if !loopback {
                    out.push(finding(
                        entry,
                        "config.insecure-transport",
                        "a remote server over plain HTTP: tokens and tool traffic can be read and changed on the way".into(),
                        url.clone(),
                    ));
                }
            }
            out.push(finding(
                entry,
                "config.not-routed",
                "a remote server reached directly: `mcp-warden wrap` routes it through `mcp-warden run --url`".into(),
                url.clone(),
            ));
        }
        None => {}
    }
    out
}

/// Servers that share a name across files but are not the same server.
pub fn check_collisions(entries: &[ServerEntry]) -> Vec<ScanFinding> {
    let mut by_name: BTreeMap<&str, Vec<&ServerEntry>> = BTreeMap::new();
    for e in entries {
        by_name.entry(e.name.as_str()).or_default().push(e);
    }
    let mut out = Vec::new();
    for (name, group) in by_name {
        let first = group[0];
        for e in &group[1..] {
            if e.transport != first.transport {
                out.push(finding(
                    e,
                    "config.name-collision",
                    format!("another server named `{name}` is configured differently in {} (line {}): a model cannot tell them apart", first.location.path.display(), first.line),
                    name.to_string(),
                ));
            }
        }
    }
    out
}

/// `config.mutable-package-reference`: packages a launcher fetches from a git branch or tag
/// or from a URL (not already reported as unpinned).
fn mutable_references(entry: &ServerEntry, cmd: &str, rest: &[String]) -> Vec<ScanFinding> {
    use warden_pins::command::spec::{Ecosystem, Pinning, packages, without_userinfo};
    packages(cmd, rest)
        .into_iter()
        .filter(|p| p.pinning == Pinning::Mutable)
        .filter(|p| {
            let runner = match p.ecosystem() {
                Ecosystem::Npm => "npm",
                Ecosystem::PyPi => "pypi",
                Ecosystem::Oci => "oci",
            };
            // What `config.unpinned-package` reports is not reported twice.
            is_pinned(runner, &p.raw)
        })
        .map(|p| {
            let shown = without_userinfo(&p.raw);
            finding(
                entry,
                "config.mutable-package-reference",
                format!(
                    "`{}` runs `{shown}`: a branch, tag or URL can point at other code tomorrow; pin a commit or an exact registry version",
                    p.launcher.as_str()
                ),
                format!("{} {shown}", program_name(cmd)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
