//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then
//! one `name{label="value",...} number` line per sample.

use std::fmt::Write as _;

/// `Content-Type` of a scrape response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape body being written.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines. `name` must be a valid metric name
    /// (the registry's names are constants).
    pub(crate) fn family(&mut self, name: &str, help: &str, kind: Kind) {
        debug_assert!(valid_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample. Label names are constants of the registry; values are escaped here.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Value) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_label_name(k), "invalid label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(&mut self.out);
        self.out.push('\n');
    }

    /// The body.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A sample value.
pub(crate) trait Value {
    fn write(&self, out: &mut String);
}

impl Value for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

/// A duration in microseconds, written in seconds with every digit kept (no float rounding).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Micros(pub(crate) u64);

impl Value for Micros {
    fn write(&self, out: &mut String) {
        write_micros(self.0, out);
    }
}

/// `micros` as a decimal number of seconds: `1500` is `0.0015`, `2000000` is `2`.
pub(crate) fn write_micros(micros: u64, out: &mut String) {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(out, "{whole}");
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// `\` and newline are escaped in help text.
fn escape_help(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `\`, `"` and newline are escaped in label values.
pub(crate) fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escaped_samples() {
        let mut e = Exposition::default();
        e.family(
            "warden_x_total",
            "Things \\ counted.\nSecond line.",
            Kind::Counter,
        );
        e.sample("warden_x_total", &[("a", "q\"uo\\te\nnl"), ("b", "")], 3u64);
        e.sample("warden_x_total", &[], 0u64);
        assert_eq!(
            e.finish(),
            "# HELP warden_x_total Things \\\\ counted.\\nSecond line.\n\
             # TYPE warden_x_total counter\n\
             warden_x_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"\"} 3\n\
             warden_x_total 0\n"
        );
    }

    #[test]
    fn writes_microseconds_as_exact_seconds() {
        let s = |m| {
            let mut out = String::new();
            write_micros(m, &mut out);
            out
        };
        assert_eq!(s(0), "0");
        assert_eq!(s(1), "0.000001");
        assert_eq!(s(1500), "0.0015");
        assert_eq!(s(250_000), "0.25");
        assert_eq!(s(2_000_000), "2");
        assert_eq!(s(61_000_010), "61.00001");
        assert_eq!(s(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn checks_names() {
        assert!(valid_name("warden_requests_total"));
        assert!(valid_name("a:b"));
        assert!(!valid_name("1a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a-b"));
        assert!(valid_label_name("upstream"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
    }
}
