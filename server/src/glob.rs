//! Glob matching for KEYS and SCAN MATCH, following Redis's `stringmatchlen` (util.c): `*`,
//! `?`, `[abc]`, `[^a]` negation, `[a-c]` ranges (either order), and `\` escapes. As in Redis,
//! the empty string matches only the empty pattern.

/// Nesting bound for `*` backtracking: Redis caps its recursion the same way, so a pattern of
/// many stars cannot take exponential time.
const STAR_NESTING_MAX: usize = 1000;

/// Whether `string` matches `pattern` (case-sensitive).
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, string, &mut skip_longer, 0)
}

fn match_from(
    mut pattern: &[u8],
    mut string: &[u8],
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    if nesting > STAR_NESTING_MAX {
        return false;
    }
    while !pattern.is_empty() && !string.is_empty() {
        match pattern[0] {
            b'*' => {
                while pattern.len() > 1 && pattern[1] == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                while !string.is_empty() {
                    if match_from(&pattern[1..], string, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    string = &string[1..];
                }
                // No suffix of the string matched the rest of the pattern: a longer string
                // cannot match either (Redis's skipLongerMatches).
                *skip_longer = true;
                return false;
            }
            b'?' => string = &string[1..],
            b'[' => {
                pattern = &pattern[1..];
                let negate = matches!(pattern.first(), Some(b'^'));
                if negate {
                    pattern = &pattern[1..];
                }
                let mut matched = false;
                loop {
                    if pattern.is_empty() {
                        // Unterminated class: Redis steps back so the loop's advance lands on
                        // the end.
                        break;
                    }
                    if pattern[0] == b'\\' && pattern.len() >= 2 {
                        pattern = &pattern[1..];
                        if pattern[0] == string[0] {
                            matched = true;
                        }
                    } else if pattern[0] == b']' {
                        break;
                    } else if pattern.len() >= 3 && pattern[1] == b'-' {
                        let (mut start, mut end) = (pattern[0], pattern[2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pattern = &pattern[2..];
                        if (start..=end).contains(&string[0]) {
                            matched = true;
                        }
                    } else if pattern[0] == string[0] {
                        matched = true;
                    }
                    pattern = &pattern[1..];
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                string = &string[1..];
                if pattern.is_empty() {
                    // The class ran to the end of the pattern.
                    return string.is_empty();
                }
            }
            b'\\' if pattern.len() >= 2 => {
                pattern = &pattern[1..];
                if pattern[0] != string[0] {
                    return false;
                }
                string = &string[1..];
            }
            literal => {
                if literal != string[0] {
                    return false;
                }
                string = &string[1..];
            }
        }
        pattern = &pattern[1..];
        if string.is_empty() {
            while !pattern.is_empty() && pattern[0] == b'*' {
                pattern = &pattern[1..];
            }
            break;
        }
    }
    // Trailing stars were stripped above once the string ran out; an empty string never
    // enters the loop, so, as in Redis, it matches only the empty pattern (`**` does not match
    // the empty key). KEYS and SCAN treat the pattern "*" as "everything" before getting here.
    pattern.is_empty() && string.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_rules() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", false),
            ("**", "", false),
            ("a**", "a", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:age", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
            ("", "a", false),
            ("abc", "ab", false),
            ("ab*", "ab", true),
            ("[abc", "a", true),
        ];
        for (pattern, string, expected) in cases {
            assert_eq!(
                matches(pattern.as_bytes(), string.as_bytes()),
                *expected,
                "{pattern:?} vs {string:?}"
            );
        }
    }

    #[test]
    fn many_stars_finish_quickly() {
        let pattern = "*a".repeat(40) + "b";
        let string = "a".repeat(60);
        assert!(!matches(pattern.as_bytes(), string.as_bytes()));
    }
}
