//! Configuration errors: every problem found in one pass, each naming file, line and field.

use std::error::Error as _;
use std::fmt;

/// Where in the configuration an error lies, such as `upstreams.github.env.TOKEN` or
/// `upstreams.github.args[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<PathSegment>);

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A key of a table.
    Key(String),
    /// An element of an array, counted from 0.
    Index(usize),
}

impl FieldPath {
    /// The path of the whole document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// The path of the entry `key` in the table at this path.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Key(key.into()));
        Self(segments)
    }

    /// The path of element `index` of the array at this path.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(PathSegment::Index(index));
        Self(segments)
    }

    /// The steps of this path, outermost first.
    pub fn segments(&self) -> &[PathSegment] {
        &self.0
    }

    /// Whether this is the path of the whole document.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` is `prefix` or lies inside it.
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        // Quoted like a TOML basic string, so the path can be pasted back.
                        write!(f, "{key:?}")?;
                    }
                }
                PathSegment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Whether TOML accepts `key` unquoted.
fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What is wrong. The message never repeats the location; [`ConfigError`] adds it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    #[error("cannot read the configuration file")]
    Read {
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file exceeds [`crate::MAX_CONFIG_FILE_BYTES`].
    #[error("the configuration file is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not UTF-8, which TOML requires.
    #[error("the configuration file is not valid UTF-8")]
    NotUtf8,
    /// The text is not valid TOML (this includes duplicate keys).
    #[error("invalid TOML: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// The TOML is valid but does not fit the schema: an unknown key or a value of the wrong type.
    #[error("{message}")]
    Schema {
        /// The deserializer's description, such as ``unknown field `x`, expected one of ...``.
        message: String,
    },
    /// `listen` is not an `IP:port` socket address.
    #[error(
        "invalid socket address \"{value}\"; expected IP:port such as \"127.0.0.1:8080\" (host names are not resolved)"
    )]
    InvalidSocketAddr {
        /// The value as written.
        value: String,
        /// The parser's reason.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A duration is not a humantime string.
    #[error(
        "invalid duration \"{value}\"; expected a number with a unit, such as \"30s\" or \"5m\""
    )]
    InvalidDuration {
        /// The value as written.
        value: String,
        /// The parser's reason.
        #[source]
        source: humantime::DurationError,
    },
    /// A duration that must be positive is zero.
    #[error("duration \"{value}\" must be greater than zero")]
    ZeroDuration {
        /// The value as written.
        value: String,
    },
    /// A duration exceeds [`crate::MAX_DURATION`].
    #[error("duration \"{value}\" is too long; the maximum is {max}")]
    DurationTooLong {
        /// The value as written.
        value: String,
        /// The maximum, in humantime form.
        max: String,
    },
    /// A number is outside its allowed range.
    #[error("{value} is out of range; expected {min} to {max}")]
    OutOfRange {
        /// The value as written.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A URL does not parse.
    #[error("invalid URL \"{value}\"")]
    InvalidUrl {
        /// The value as written.
        value: String,
        /// The parser's reason.
        #[source]
        source: url::ParseError,
    },
    /// A URL uses a scheme other than http or https.
    #[error("unsupported scheme \"{scheme}\"; expected http or https")]
    UnsupportedScheme {
        /// The scheme as parsed (lowercase).
        scheme: String,
    },
    /// A URL embeds a user name or password.
    #[error(
        "the URL contains credentials; remove them and send them in `headers` with an env: or file: reference"
    )]
    UrlCredentials,
    /// A URL has a `#fragment`, which is never sent to a server.
    #[error("the URL has a fragment (\"#{fragment}\"), which has no meaning here")]
    UrlFragment {
        /// The fragment, without `#`.
        fragment: String,
    },
    /// An `allowed_hosts` entry is not `host` or `host:port`.
    #[error("invalid host \"{value}\": {reason}")]
    InvalidHost {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `allowed_origins` entry is not `scheme://host[:port]`.
    #[error("invalid origin \"{value}\": {reason}")]
    InvalidOrigin {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A list that must have entries is empty.
    #[error("must not be empty: {reason}")]
    EmptyList {
        /// Why an empty list is refused.
        reason: &'static str,
    },
    /// A string that must have content is empty.
    #[error("must not be empty")]
    Empty,
    /// A string contains a NUL byte, which no process argument, path or header can carry.
    #[error("must not contain a NUL byte")]
    ContainsNul,
    /// An `[upstreams.<name>]` name breaks the naming rule.
    #[error("invalid upstream name \"{name}\": {reason}")]
    InvalidUpstreamName {
        /// The name as written.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An upstream sets both `command` and `url`.
    #[error(
        "both `command` and `url` are set; an upstream is either a stdio server (`command`) or a remote server (`url`)"
    )]
    CommandAndUrl,
    /// An upstream sets neither `command` nor `url`.
    #[error(
        "neither `command` nor `url` is set; an upstream needs exactly one: `command` for a stdio server, `url` for a remote server"
    )]
    NoCommandOrUrl,
    /// A key that belongs to the other kind of upstream.
    #[error("`{key}` applies only to {applies_to} upstreams (those with `{requires}`)")]
    WrongTransportKey {
        /// The key that is set.
        key: &'static str,
        /// `stdio` or `HTTP`.
        applies_to: &'static str,
        /// `command` or `url`.
        requires: &'static str,
    },
    /// An environment variable name that no process environment can hold.
    #[error(
        "invalid environment variable name \"{name}\"; names must be non-empty without `=` or NUL"
    )]
    InvalidEnvName {
        /// The name as written.
        name: String,
    },
    /// A header name that is not an HTTP token.
    #[error("invalid header name \"{name}\"; expected letters, digits and !#$%&'*+-.^_`|~")]
    InvalidHeaderName {
        /// The name as written.
        name: String,
    },
    /// A header the gateway sets itself.
    #[error("header \"{name}\" is managed by the gateway and cannot be configured")]
    ManagedHeader {
        /// The name as written.
        name: String,
    },
    /// The same header twice, differing only in case.
    #[error("header \"{name}\" is set more than once (header names ignore case)")]
    DuplicateHeader {
        /// The name of the later occurrence, as written.
        name: String,
    },
    /// A literal header value with a line break or NUL, which would split the request.
    #[error("header value must not contain CR, LF or NUL")]
    InvalidHeaderValue,
    /// Only one of a certificate and its key is set (`tls_cert`/`tls_key`,
    /// `client_cert`/`client_key`).
    #[error("`{present}` is set without `{missing}`; set both or neither")]
    TlsIncomplete {
        /// The key that is set.
        present: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// A value that breaks a rule stated in the message (request-guard sections).
    #[error("{reason}")]
    Invalid {
        /// What is wrong, naming the value.
        reason: String,
    },
    /// A problem specific to `[auth]`.
    #[error(transparent)]
    Auth(crate::auth::AuthConfigError),
}

/// One configuration error, located by file, line and field.
///
/// Displays as `warden.toml:14: upstreams.github.url: unsupported scheme "ftp"; expected http or https`.
/// Parts that are unknown (no line for an unreadable file, no field for a syntax error) are left out.
#[derive(Debug)]
pub struct ConfigError {
    /// The file name as given to [`crate::Config::load`] or [`crate::Config::parse`].
    pub file: String,
    /// The 1-based line, when the error has a position.
    pub line: Option<usize>,
    /// The field, when the error concerns one.
    pub field: Option<FieldPath>,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = self.field.as_ref().filter(|field| !field.is_root()) {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind's own message is already part of ours; expose its cause.
        self.kind.source()
    }
}

/// Every error found in a configuration: syntax errors first, then schema and validation errors,
/// each group in line order.
///
/// Displays one error per line, each followed by its causes (`: cause`).
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }

    /// The errors, in report order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: a `ConfigErrors` is only returned when something is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An iterator over the errors, in report order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The errors, in report order.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, error) in self.0.iter().enumerate() {
            if position > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
            let mut cause = error.source();
            while let Some(inner) = cause {
                write!(f, ": {inner}")?;
                cause = inner.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
