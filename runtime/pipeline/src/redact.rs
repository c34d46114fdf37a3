//! Redaction of secret values from text the runtime keeps or shows (attempt logs,
//! response snippets, error messages).

/// Shortest secret that is redacted: shorter values would blank out ordinary text.
pub const MIN_SECRET_LEN: usize = 4;

/// What replaces a secret.
pub const MARK: &str = "<redacted>";

/// Replace every occurrence of each secret (non-empty, at least [`MIN_SECRET_LEN`] bytes)
/// with `<redacted>`. Overlapping occurrences, of one secret or of several, are merged
/// into one mark, so no part of a secret survives.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        let mut from = 0;
        while let Some(i) = text[from..].find(s) {
            let start = from + i;
            ranges.push((start, start + s.len()));
            // Next search one character later, so overlapping occurrences are found too.
            from = start
                + text[start..]
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .unwrap_or(1);
            if from >= text.len() {
                break;
            }
        }
    }
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut iter = ranges.into_iter().peekable();
    while let Some((start, mut end)) = iter.next() {
        while let Some(&(s, e)) = iter.peek() {
            if s > end {
                break;
            }
            end = end.max(e);
            iter.next();
        }
        out.push_str(&text[pos..start]);
        out.push_str(MARK);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            redact("token=abcd1234; again abcd1234.", &["abcd1234"]),
            "token=<redacted>; again <redacted>."
        );
    }

    #[test]
    fn short_and_empty_secrets_are_ignored() {
        assert_eq!(redact("a abc b", &["", "abc"]), "a abc b");
        assert_eq!(redact("a abcd b", &["abcd"]), "a <redacted> b");
    }

    #[test]
    fn overlapping_secrets_leave_nothing() {
        // One secret inside another, and two that overlap.
        assert_eq!(
            redact("xx-secretvalue-yy", &["secret", "secretvalue"]),
            "xx-<redacted>-yy"
        );
        assert_eq!(
            redact("AAAABBBBCCCC", &["AAAABBBB", "BBBBCCCC"]),
            "<redacted>"
        );
        assert_eq!(redact("aaaaa", &["aaaa"]), "<redacted>");
        // A secret that occurs in the mark itself does not garble the output.
        assert_eq!(redact("dact here", &["dact"]), "<redacted> here");
    }

    #[test]
    fn multibyte_text() {
        assert_eq!(
            redact("é-clé-secrète-é", &["secrète"]),
            "é-clé-<redacted>-é"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn no_secret_survives(prefix in ".{0,20}", secret in "[a-zA-Z0-9é]{4,12}", suffix in ".{0,20}") {
            let text = format!("{prefix}{secret}{suffix}{secret}");
            let out = redact(&text, &[&secret]);
            prop_assert!(out.contains(MARK));
            // The mark itself may spell a short secret (`dact`): blank it before looking.
            prop_assert!(!out.replace(MARK, "\0").contains(&secret));
        }
    }
}
