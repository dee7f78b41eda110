//! Package launchers on a command line: `npx`, `uvx`, `pipx run`, `bunx`, `pnpm dlx`,
//! `docker run` and their kin, and the package (name and requested version) each one fetches.
//!
//! Pure string work, no I/O: the same parser serves the gateway's command pins, `check` and
//! `scan`. It never fails on hostile input; what it cannot read is not a package.

use serde::{Deserialize, Serialize};

/// The program that fetches and runs a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Launcher {
    /// `npx` (and `npm exec`).
    Npx,
    /// `pnpm dlx` (and `pnpx`).
    PnpmDlx,
    /// `yarn dlx`.
    YarnDlx,
    /// `bunx` (and `bun x`).
    Bunx,
    /// `uvx` (and `uv tool run`).
    Uvx,
    /// `pipx run`.
    PipxRun,
    /// `docker run` (and `podman run`).
    DockerRun,
}

impl Launcher {
    /// The launcher as a user types it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Npx => "npx",
            Self::PnpmDlx => "pnpm dlx",
            Self::YarnDlx => "yarn dlx",
            Self::Bunx => "bunx",
            Self::Uvx => "uvx",
            Self::PipxRun => "pipx run",
            Self::DockerRun => "docker run",
        }
    }

    /// The registry its packages come from.
    pub fn ecosystem(self) -> Ecosystem {
        match self {
            Self::Npx | Self::PnpmDlx | Self::YarnDlx | Self::Bunx => Ecosystem::Npm,
            Self::Uvx | Self::PipxRun => Ecosystem::PyPi,
            Self::DockerRun => Ecosystem::Oci,
        }
    }
}

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ecosystem {
    /// The npm registry.
    Npm,
    /// The Python Package Index.
    PyPi,
    /// A container registry.
    Oci,
}

/// How firmly a package reference names what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pinning {
    /// An exact version (`pkg@1.2.3`, `pkg==1.2.3`) or a content digest (`image@sha256:…`,
    /// a git commit).
    Exact,
    /// A name that can point elsewhere later: an image tag, a git branch or tag, a URL.
    Mutable,
    /// No version, `latest`, or a range: whatever the registry serves next is what runs.
    Unpinned,
    /// A local path: not fetched from a registry.
    Local,
}

/// One package a launcher fetches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageSpec {
    /// The launcher.
    pub launcher: Launcher,
    /// The package's name (an image's repository for OCI).
    pub name: String,
    /// The version, tag, range or digest as written (`None` when none was).
    pub requested: Option<String>,
    /// How firmly that names what runs.
    pub pinning: Pinning,
    /// The reference as written on the command line (URL credentials included: never store
    /// or print it; `name` and `requested` are free of them).
    pub raw: String,
}

impl PackageSpec {
    /// The registry of the package.
    pub fn ecosystem(&self) -> Ecosystem {
        self.launcher.ecosystem()
    }
}

/// The name of a program without its directory (and without `.cmd`/`.exe`).
pub fn program_name(program: &str) -> &str {
    let base = program.rsplit(['/', '\\']).next().unwrap_or(program);
    base.strip_suffix(".cmd")
        .or_else(|| base.strip_suffix(".exe"))
        .unwrap_or(base)
}

/// Every package the command `program args...` fetches through a launcher (empty for any
/// other command). `npx -p a -p b cmd` fetches two.
///
/// ```
/// use warden_pins::command::spec::{packages, Pinning};
/// let args: Vec<String> = ["-y", "@modelcontextprotocol/server-everything@2026.8.31"]
///     .iter().map(|s| s.to_string()).collect();
/// let found = packages("npx", &args);
/// assert_eq!(found[0].name, "@modelcontextprotocol/server-everything");
/// assert_eq!(found[0].requested.as_deref(), Some("2026.8.31"));
/// assert_eq!(found[0].pinning, Pinning::Exact);
/// ```
pub fn packages(program: &str, args: &[String]) -> Vec<PackageSpec> {
    let first = |s: &str| args.first().is_some_and(|a| a == s);
    let (launcher, rest) = match program_name(program) {
        "npx" => (Launcher::Npx, args),
        "npm" if first("exec") || first("x") => (Launcher::Npx, &args[1..]),
        "pnpx" => (Launcher::PnpmDlx, args),
        "pnpm" if first("dlx") => (Launcher::PnpmDlx, &args[1..]),
        "yarn" if first("dlx") => (Launcher::YarnDlx, &args[1..]),
        "bunx" => (Launcher::Bunx, args),
        "bun" if first("x") => (Launcher::Bunx, &args[1..]),
        "uvx" => (Launcher::Uvx, args),
        "uv" if first("tool") && args.get(1).is_some_and(|a| a == "run") => {
            (Launcher::Uvx, &args[2..])
        }
        "pipx" if first("run") => (Launcher::PipxRun, &args[1..]),
        "docker" | "podman" if first("run") => (Launcher::DockerRun, &args[1..]),
        "docker" | "podman" if first("container") && args.get(1).is_some_and(|a| a == "run") => {
            (Launcher::DockerRun, &args[2..])
        }
        _ => return Vec::new(),
    };
    let refs = match launcher.ecosystem() {
        Ecosystem::Npm => npm_refs(rest),
        Ecosystem::PyPi => python_refs(rest),
        Ecosystem::Oci => oci_ref(rest).into_iter().collect(),
    };
    refs.into_iter()
        .map(|raw| parse_reference(launcher, raw))
        .collect()
}

/// The spec of one package reference of `launcher`'s registry.
pub fn parse_reference(launcher: Launcher, raw: &str) -> PackageSpec {
    // Parsed without any URL credentials, so none reaches a name or a version.
    let clean = without_userinfo(raw);
    let (name, requested, pinning) = match launcher.ecosystem() {
        Ecosystem::Npm => npm_spec(&clean),
        Ecosystem::PyPi => python_spec(&clean),
        Ecosystem::Oci => oci_spec(&clean),
    };
    PackageSpec {
        launcher,
        name,
        requested,
        pinning,
        raw: raw.to_owned(),
    }
}

/// Options of npm-family launchers that take a value as the next argument.
const NPM_VALUE_OPTIONS: &[&str] = &[
    "-p",
    "--package",
    "-c",
    "--call",
    "--registry",
    "--cache",
    "--userconfig",
    "--prefix",
    "-w",
    "--workspace",
    "--loglevel",
];

fn npm_refs(args: &[String]) -> Vec<&str> {
    let mut explicit = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        if let Some(p) = a.strip_prefix("--package=") {
            explicit.push(p);
        } else if matches!(a, "-p" | "--package") {
            if let Some(p) = args.get(i + 1) {
                explicit.push(p.as_str());
            }
            i += 1;
        } else if a == "-c" || a == "--call" {
            // `npx -c 'cmd'`: a shell command, with packages (if any) from `-p`.
            return explicit;
        } else if NPM_VALUE_OPTIONS.contains(&a) {
            i += 1;
        }
        i += 1;
    }
    if explicit.is_empty() {
        // The first positional is both the package and the command.
        args.get(i).map(String::as_str).into_iter().collect()
    } else {
        explicit
    }
}

/// Options of `uvx`/`pipx run` that take a value as the next argument.
const PYTHON_VALUE_OPTIONS: &[&str] = &[
    "--with",
    "--with-editable",
    "--with-requirements",
    "--python",
    "-p",
    "--index",
    "--default-index",
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--constraints",
    "-c",
    "--overrides",
    "--build-constraints",
    "--env-file",
    "--directory",
    "--project",
    "--cache-dir",
    "--config-file",
    "--pip-args",
    "--index-strategy",
    "--keyring-provider",
    "--resolution",
    "--prerelease",
    "--exclude-newer",
    "--refresh-package",
    "--reinstall-package",
    "--upgrade-package",
    "--color",
];

fn python_refs(args: &[String]) -> Vec<&str> {
    let mut from = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        if let Some(p) = a
            .strip_prefix("--from=")
            .or_else(|| a.strip_prefix("--spec="))
        {
            from = Some(p);
        } else if matches!(a, "--from" | "--spec") {
            from = args.get(i + 1).map(String::as_str);
            i += 1;
        } else if PYTHON_VALUE_OPTIONS.contains(&a) {
            i += 1;
        }
        i += 1;
    }
    match from {
        Some(p) => vec![p],
        None => args.get(i).map(String::as_str).into_iter().collect(),
    }
}

/// `docker run` options that are flags (take no value); any other option takes one unless
/// written `--opt=value`.
const OCI_FLAGS: &[&str] = &[
    "-d",
    "--detach",
    "-i",
    "--interactive",
    "-t",
    "--tty",
    "--rm",
    "--init",
    "--privileged",
    "--read-only",
    "-P",
    "--publish-all",
    "-q",
    "--quiet",
    "--sig-proxy",
    "--no-healthcheck",
    "--oom-kill-disable",
    "--disable-content-trust",
    "--help",
    "--use-api-socket",
];

fn oci_ref(args: &[String]) -> Option<&str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            return args.get(i + 1).map(String::as_str);
        }
        if !a.starts_with('-') || a == "-" {
            return Some(a);
        }
        let takes_value = if a.contains('=') {
            false
        } else if let Some(short) = a.strip_prefix('-').filter(|s| !s.starts_with('-')) {
            // A cluster of short options (`-it`, `-e`): the last one decides.
            short
                .chars()
                .last()
                .is_some_and(|c| !OCI_FLAGS.contains(&format!("-{c}").as_str()))
        } else {
            !OCI_FLAGS.contains(&a)
        };
        i += if takes_value { 2 } else { 1 };
    }
    None
}

/// An exact semantic version: `1.2.3`, `1.2.3-rc.1`, `1.2.3+build` (a leading `v` or `=`
/// allowed, as npm allows it).
pub fn is_exact_semver(v: &str) -> bool {
    let v = v
        .strip_prefix('=')
        .or_else(|| v.strip_prefix('v'))
        .unwrap_or(v);
    let (rest, build) = match v.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let ident_ok = |s: &str| {
        s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && pre.is_none_or(ident_ok)
        && build.is_none_or(ident_ok)
}

/// A full git commit id (40 or 64 hex digits).
fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_local_path(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.starts_with("file:")
}

/// `(name, requested, pinning)` of an npm package spec.
fn npm_spec(raw: &str) -> (String, Option<String>, Pinning) {
    if is_local_path(raw) {
        return (raw.to_owned(), None, Pinning::Local);
    }
    let is_git = raw.starts_with("git+")
        || raw.starts_with("git:")
        || ["github:", "gitlab:", "bitbucket:", "gist:"]
            .iter()
            .any(|p| raw.starts_with(p))
        || (!raw.starts_with('@') && raw.contains('/') && !raw.contains("://"));
    if is_git {
        // `github:o/r#<commit>` or `git+https://…#<commit>`: pinned only by a full commit.
        let (name, fragment) = raw.split_once('#').unwrap_or((raw, ""));
        let name = without_userinfo(name);
        let pinning = if is_commit(fragment) {
            Pinning::Exact
        } else {
            Pinning::Mutable
        };
        return (
            name,
            (!fragment.is_empty()).then(|| fragment.to_owned()),
            pinning,
        );
    }
    if raw.contains("://") {
        // A tarball URL: what it serves can change.
        return (without_userinfo(raw), None, Pinning::Mutable);
    }
    // `@scope/name@version` or `name@version`: the version follows the first `@` after the
    // scope's.
    let split_at = if let Some(body) = raw.strip_prefix('@') {
        body.find('@').map(|i| i + 1)
    } else {
        raw.find('@')
    };
    let Some(at) = split_at else {
        return (raw.to_owned(), None, Pinning::Unpinned);
    };
    let name = &raw[..at];
    let version = &raw[at + 1..];
    let pinning = if is_exact_semver(version) {
        Pinning::Exact
    } else {
        // `latest`, `next`, `^1.2`, `1.x`, `npm:other@1` (an alias: judged unpinned), ...
        Pinning::Unpinned
    };
    (
        name.to_owned(),
        (!version.is_empty()).then(|| version.to_owned()),
        pinning,
    )
}

/// An exact PEP 440 version (no wildcard, no local range): digits, letters, `.`, `-`, `_`,
/// `+`, `!`, starting with a digit (or `v`).
fn is_exact_python_version(v: &str) -> bool {
    let v = v.trim();
    let body = v.strip_prefix('v').unwrap_or(v);
    body.chars().next().is_some_and(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '!'))
}

/// `(name, requested, pinning)` of a Python requirement as `uvx`/`pipx` accept it.
fn python_spec(raw: &str) -> (String, Option<String>, Pinning) {
    if is_local_path(raw) {
        return (raw.to_owned(), None, Pinning::Local);
    }
    if let Some((name, url)) = raw.split_once(" @ ").or_else(|| {
        raw.starts_with("git+")
            .then_some(("", raw))
            .or_else(|| raw.contains("://").then_some(("", raw)))
    }) {
        // A direct reference (`name @ git+https://…@<commit>`, a URL): pinned only by a commit.
        let url = without_userinfo(url);
        let name = if name.is_empty() {
            url.clone()
        } else {
            name.trim().to_owned()
        };
        // The revision follows an `@` in the path, never one in the host part.
        let path = url.split_once("://").map_or(url.as_str(), |(_, rest)| {
            rest.find('/').map_or("", |i| &rest[i..])
        });
        let commit = path.rsplit_once('@').map(|(_, c)| c).unwrap_or("");
        let commit = commit.split(['#', '?']).next().unwrap_or("");
        let pinning = if is_commit(commit) {
            Pinning::Exact
        } else {
            Pinning::Mutable
        };
        return (
            name,
            (!commit.is_empty()).then(|| commit.to_owned()),
            pinning,
        );
    }
    // The name ends at the first character that starts extras, a marker or a specifier.
    let end = raw
        .find(['[', '=', '<', '>', '!', '~', '@', ';', ' ', ','])
        .unwrap_or(raw.len());
    let name = raw[..end].trim();
    let mut rest = raw[end..].trim();
    if rest.starts_with('[') {
        rest = rest.find(']').map_or("", |i| rest[i + 1..].trim());
    }
    // Environment markers do not change which version runs.
    let rest = rest.split(';').next().unwrap_or("").trim();
    if rest.is_empty() {
        return (name.to_owned(), None, Pinning::Unpinned);
    }
    let pinning = if let Some(v) = rest.strip_prefix("===") {
        if v.trim().is_empty() || v.contains(',') {
            Pinning::Unpinned
        } else {
            Pinning::Exact
        }
    } else if let Some(v) = rest.strip_prefix("==") {
        if is_exact_python_version(v) {
            Pinning::Exact
        } else {
            Pinning::Unpinned
        }
    } else if let Some(v) = rest.strip_prefix('@') {
        // uvx's shorthand `tool@1.2.3`; `tool@latest` is unpinned.
        if is_exact_python_version(v) {
            Pinning::Exact
        } else {
            Pinning::Unpinned
        }
    } else {
        Pinning::Unpinned
    };
    let requested = rest
        .strip_prefix("===")
        .or_else(|| rest.strip_prefix("=="))
        .or_else(|| rest.strip_prefix('@'))
        .map_or(rest, str::trim);
    (name.to_owned(), Some(requested.to_owned()), pinning)
}

/// `(name, requested, pinning)` of an image reference `[registry/]repo[:tag][@sha256:…]`.
fn oci_spec(raw: &str) -> (String, Option<String>, Pinning) {
    if let Some((name, digest)) = raw.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        let pinning = if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Pinning::Exact
        } else {
            Pinning::Unpinned
        };
        let name = strip_tag(name).0;
        return (name.to_owned(), Some(digest.to_owned()), pinning);
    }
    let (name, tag) = strip_tag(raw);
    match tag {
        None | Some("latest") | Some("") => {
            (name.to_owned(), tag.map(str::to_owned), Pinning::Unpinned)
        }
        // A tag is a name the registry can move.
        Some(t) => (name.to_owned(), Some(t.to_owned()), Pinning::Mutable),
    }
}

/// `repo:tag` -> (`repo`, `tag`); a `:` in the registry's host part (`host:5000/repo`) is no tag.
fn strip_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// A URL with any `user:password@` in its authority replaced by `***@`: credentials in a
/// package URL never reach a pin record, an audit line or a finding.
pub fn without_userinfo(reference: &str) -> String {
    let Some((scheme, rest)) = reference.split_once("://") else {
        return reference.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => reference.to_owned(),
    }
}
