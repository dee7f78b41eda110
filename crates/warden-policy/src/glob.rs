//! `*` globs over names, URIs and hosts: `*` matches any run of characters (including none and
//! including `/`); every other character matches itself. No character classes, no escapes: the
//! patterns come from `warden.toml` and must read the same to the operator and to the matcher.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The literal pieces between `*`s (one piece: no `*`).
    parts: Vec<String>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        Self {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    /// True when `text` matches the whole pattern.
    ///
    /// ```
    /// use warden_policy::glob::Glob;
    /// assert!(Glob::new("files/read_*").matches("files/read_text"));
    /// assert!(!Glob::new("files/read_*").matches("files/write"));
    /// ```
    pub fn matches(&self, text: &str) -> bool {
        let parts = &self.parts;
        if parts.len() == 1 {
            return parts[0] == text;
        }
        let (first, rest) = parts.split_first().expect("split yields at least one part");
        let (last, middle) = rest
            .split_last()
            .expect("a pattern with a star has two parts");
        let Some(mut tail) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        // Greedy-left matching of the middle pieces is correct for `*`-only globs: taking the
        // leftmost occurrence leaves the most room for what follows.
        for piece in middle {
            match tail.find(piece.as_str()) {
                Some(at) => tail = &tail[at + piece.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

/// A set of globs; matches when any does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobSet(Vec<Glob>);

impl GlobSet {
    /// Compiles every pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self(patterns.iter().map(|p| Glob::new(p.as_ref())).collect())
    }

    /// True when some glob matches `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|g| g.matches(text))
    }

    /// True when the set holds no glob.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Reference matcher: dynamic programming over characters.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
            for j in 1..=t.len() {
                dp[i][j] = if p[i - 1] == '*' {
                    dp[i - 1][j] || dp[i][j - 1]
                } else {
                    dp[i - 1][j - 1] && p[i - 1] == t[j - 1]
                };
            }
        }
        dp[p.len()][t.len()]
    }

    #[test]
    fn examples() {
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*a").matches("aa"));
        assert!(!Glob::new("a*a").matches("a"));
        assert!(Glob::new("*/read_*").matches("files/read_file"));
        assert!(!Glob::new("files/read").matches("files/read_file"));
        assert!(Glob::new("file:///srv/*").matches("file:///srv/a/b"));
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pattern in "[ab*/]{0,8}", text in "[ab/]{0,10}") {
            prop_assert_eq!(Glob::new(&pattern).matches(&text), reference(&pattern, &text));
        }

        #[test]
        fn a_literal_matches_only_itself(a in "[a-z/_]{0,12}", b in "[a-z/_]{0,12}") {
            prop_assert_eq!(Glob::new(&a).matches(&b), a == b);
        }
    }
}
