//! What is stored per pinned tool and per upstream, and how it is keyed.
//!
//! Every record lives in [`Namespace::PIN`](warden_store::Namespace::PIN) as JSON:
//! - `tool:<upstream>:<sha256 hex of the tool name>` -> [`ToolRecord`] (the name is hashed so a
//!   hostile or very long tool name can never make an invalid or colliding key; the record holds
//!   the name itself);
//! - `server:<upstream>` -> [`ServerRecord`]: the upstream's baseline (its first complete list
//!   was pinned), after which a tool never seen before is a change, not a first sight.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Version of the stored record format.
pub const RECORD_VERSION: u32 = 1;

/// One definition as seen at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `sha256:<hex>` of the canonical form.
    pub hash: String,
    /// The definition as the upstream sent it (decoded; members in the upstream's order).
    pub definition: Value,
    /// When it was first seen, in Unix seconds.
    pub seen_at: u64,
}

/// What a record pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One tool definition (the whole tool object).
    #[default]
    Tool,
    /// The server's `instructions` (from `initialize` or `server/discover`); the definition is
    /// the instructions string.
    Instructions,
}

/// The name shown for an instructions record (never a key: instructions have their own).
pub const INSTRUCTIONS_NAME: &str = "(instructions)";

/// The pin state of one tool (or of the instructions) of one upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// Record format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// What is pinned.
    #[serde(default)]
    pub kind: Kind,
    /// The upstream's pin identity.
    pub upstream: String,
    /// The tool's name as the upstream spells it ([`INSTRUCTIONS_NAME`] for instructions).
    pub tool: String,
    /// The approved definition; `None` for a tool added after the baseline and not yet approved,
    /// or whose pin was revoked.
    pub pinned: Option<Snapshot>,
    /// A definition seen since that differs from `pinned`, waiting for approval.
    pub pending: Option<Snapshot>,
    /// When the tool was last missing from a complete list while pinned (Unix seconds).
    pub removed_at: Option<u64>,
}

/// Pin-wide state of one upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// Record format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// The upstream's pin identity.
    pub upstream: String,
    /// When its first complete tool list was pinned (Unix seconds).
    pub baseline_at: u64,
}

/// The status of a tool, as `pins list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Pinned; the last definition seen matched.
    Pinned,
    /// Pinned, and a different definition is waiting for approval.
    Changed,
    /// Not pinned (new after the baseline, or revoked); a definition is waiting for approval.
    Added,
    /// Pinned, and missing from the upstream's last complete list.
    Removed,
}

impl ToolRecord {
    /// What `pins list` says about this tool.
    pub fn status(&self) -> Status {
        match (&self.pinned, &self.pending) {
            (Some(_), Some(_)) => Status::Changed,
            (None, _) => Status::Added,
            (Some(_), None) if self.removed_at.is_some() => Status::Removed,
            (Some(_), None) => Status::Pinned,
        }
    }

    /// True when calls to this tool are refused (in `block` mode): a definition is waiting.
    pub fn is_held(&self) -> bool {
        self.pending.is_some() || self.pinned.is_none()
    }
}

/// Key prefix of every tool record of `upstream`.
pub fn tool_prefix(upstream: &str) -> String {
    format!("tool:{upstream}:")
}

/// Key of the record of tool `name` of `upstream`.
pub fn tool_key(upstream: &str, name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut key = tool_prefix(upstream);
    for b in digest {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// Key of the instructions record of `upstream`.
pub fn instructions_key(upstream: &str) -> String {
    format!("instructions:{upstream}")
}

/// Key of the server record of `upstream`.
pub fn server_key(upstream: &str) -> String {
    format!("server:{upstream}")
}

/// Current Unix time in seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pin identity of a server that has no configured name (`mcp-warden run`): `base` reduced
/// to at most 32 of `[A-Za-z0-9._-]`, `@`, and 12 hex digits of SHA-256 over `parts` (the command
/// line or URL), so two different servers never share pins while the same command line keeps
/// them across runs. Configured names cannot contain `@`, so the two kinds never collide.
///
/// ```
/// let a = warden_pins::record::derived_pin_id("python3", &["cmd", "python3", "a.py"]);
/// let b = warden_pins::record::derived_pin_id("python3", &["cmd", "python3", "b.py"]);
/// assert!(a.starts_with("python3@") && a.len() == "python3@".len() + 12);
/// assert_ne!(a, b);
/// ```
pub fn derived_pin_id(base: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        // Length-prefixed, so ["ab", "c"] and ["a", "bc"] differ.
        hasher.update((p.len() as u64).to_be_bytes());
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut id: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(32)
        .collect();
    if id.is_empty() {
        id.push_str("server");
    }
    id.push('@');
    for b in &digest[..6] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}
