//! Shannon entropy of a candidate secret, the test gitleaks applies to generic patterns.

/// Shannon entropy in bits per byte of `data`, computed over byte frequencies (for the ASCII
/// strings secrets are made of this equals gitleaks' per-character figure). Empty input has
/// entropy 0.
///
/// ```
/// use warden_detect::entropy::shannon;
/// assert_eq!(shannon(b"aaaa"), 0.0);
/// assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
/// ```
pub fn shannon(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Number of distinct character classes (lower, upper, digit, other) in `data`; random
/// credentials use several, words and identifiers few.
pub fn char_classes(data: &[u8]) -> u8 {
    let mut lower = false;
    let mut upper = false;
    let mut digit = false;
    let mut other = false;
    for &b in data {
        match b {
            b'a'..=b'z' => lower = true,
            b'A'..=b'Z' => upper = true,
            b'0'..=b'9' => digit = true,
            _ => other = true,
        }
    }
    u8::from(lower) + u8::from(upper) + u8::from(digit) + u8::from(other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_looking_strings_score_higher_than_words() {
        assert!(shannon(b"gX69YO4CvBsVjzAwYxdGyDd30t5+9ez31gKATtj4") > 4.5);
        assert!(shannon(b"password") < 3.0);
        assert_eq!(char_classes(b"abcABC123-"), 4);
        assert_eq!(char_classes(b"hello"), 1);
    }
}
