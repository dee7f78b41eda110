//! Bounded label values: the first values seen are kept, the rest become [`OTHER`].

use std::collections::HashSet;
use std::sync::Arc;

/// The value a label takes once its cap is reached, or when the value is unfit to be a label
/// (too long, or containing control characters).
pub const OTHER: &str = "other";

/// Longest label value kept as written, in bytes: longer values are folded into [`OTHER`]
/// rather than truncated, so two values never merge silently under one shortened name.
pub(crate) const MAX_LABEL_BYTES: usize = 128;

/// The distinct values one label may take.
#[derive(Debug, Clone)]
pub(crate) struct LabelCap {
    cap: usize,
    kept: HashSet<Arc<str>>,
    other: Arc<str>,
    folded: u64,
}

impl LabelCap {
    /// A label that keeps at most `cap` distinct values besides [`OTHER`].
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            kept: HashSet::new(),
            other: Arc::from(OTHER),
            folded: 0,
        }
    }

    /// The label value to record for `value`: `value` itself when it was seen before or there
    /// is room for it, [`OTHER`] otherwise. Allocates only for a newly kept value.
    pub(crate) fn admit(&mut self, value: &str) -> Arc<str> {
        if let Some(v) = self.kept.get(value) {
            return v.clone();
        }
        if value == OTHER {
            return self.other.clone();
        }
        if self.kept.len() >= self.cap || !fit(value) {
            self.folded += 1;
            return self.other.clone();
        }
        let v: Arc<str> = Arc::from(value);
        self.kept.insert(v.clone());
        v
    }

    /// The `other` value, for a series folded as a whole.
    pub(crate) fn other(&self) -> Arc<str> {
        self.other.clone()
    }

    /// How many values were folded into [`OTHER`] so far.
    pub(crate) fn folded(&self) -> u64 {
        self.folded
    }

    /// Distinct values kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }
}

/// True when `value` can be a label value as it is: short, and free of control characters (a
/// method name sent by a peer could otherwise carry terminal escapes into a dashboard).
fn fit(value: &str) -> bool {
    value.len() <= MAX_LABEL_BYTES && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_the_first_values_and_folds_the_rest() {
        let mut cap = LabelCap::new(2);
        assert_eq!(&*cap.admit("a"), "a");
        assert_eq!(&*cap.admit("b"), "b");
        assert_eq!(&*cap.admit("c"), OTHER);
        assert_eq!(&*cap.admit("a"), "a");
        assert_eq!(&*cap.admit("d"), OTHER);
        assert_eq!(cap.folded(), 2);
        assert_eq!(cap.len(), 2);
    }

    #[test]
    fn folds_long_and_control_values_even_with_room() {
        let mut cap = LabelCap::new(10);
        assert_eq!(&*cap.admit(&"x".repeat(MAX_LABEL_BYTES + 1)), OTHER);
        assert_eq!(&*cap.admit("tools/call\u{1b}[31m"), OTHER);
        assert_eq!(&*cap.admit("line\nbreak"), OTHER);
        assert_eq!(&*cap.admit(&"x".repeat(MAX_LABEL_BYTES)), "x".repeat(128));
        assert_eq!(cap.folded(), 3);
        assert_eq!(cap.len(), 1);
    }

    #[test]
    fn other_itself_takes_no_slot() {
        let mut cap = LabelCap::new(1);
        assert_eq!(&*cap.admit(OTHER), OTHER);
        assert_eq!(&*cap.admit("a"), "a");
        assert_eq!(cap.folded(), 0);
    }

    proptest! {
        /// Whatever arrives, at most `cap` distinct values (plus `other`) come out, a kept
        /// value always maps to itself, and every fold is counted.
        #[test]
        fn never_exceeds_the_cap(cap in 1usize..8, values in proptest::collection::vec(".{0,12}", 0..64)) {
            let mut label = LabelCap::new(cap);
            let mut out = HashSet::new();
            let mut folded = 0;
            for v in &values {
                let got = label.admit(v);
                if &*got == v.as_str() {
                    prop_assert!(fit(v));
                } else {
                    prop_assert_eq!(&*got, OTHER);
                    folded += 1;
                }
                out.insert(got.to_string());
            }
            out.remove(OTHER);
            prop_assert!(out.len() <= cap);
            prop_assert_eq!(label.folded(), folded);
        }
    }
}
