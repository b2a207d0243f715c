//! How an exchange picks queues: RabbitMQ's matching rules, pure.
//!
//! - direct: the binding key equals the routing key.
//! - fanout: every bound queue.
//! - topic: keys are dot-separated words; in a binding, `*` matches exactly one word and `#`
//!   zero or more words (`a.#` matches `a`, `#` matches everything, the empty key included).
//! - headers: the binding lists header pairs; `ALL` wants every pair present in the message
//!   with an equal value, `ANY` at least one (a pair whose value is empty matches on the
//!   header's presence alone, as RabbitMQ's void-valued binding argument does).

/// Whether a topic binding `pattern` matches `routing_key`.
pub fn topic_matches(pattern: &[u8], routing_key: &[u8]) -> bool {
    let pattern: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    let key: Vec<&[u8]> = routing_key.split(|&b| b == b'.').collect();
    // Dynamic programming over (pattern words used, key words used): `#` may absorb any run.
    let mut reachable = vec![false; key.len() + 1];
    reachable[0] = true;
    for word in &pattern {
        let mut next = vec![false; key.len() + 1];
        match *word {
            b"#" => {
                let mut seen = false;
                for i in 0..=key.len() {
                    seen |= reachable[i];
                    next[i] = seen;
                }
            }
            b"*" => {
                next[1..].copy_from_slice(&reachable[..key.len()]);
            }
            literal => {
                for i in 0..key.len() {
                    next[i + 1] = reachable[i] && key[i] == literal;
                }
            }
        }
        reachable = next;
    }
    reachable[key.len()]
}

/// How a headers binding combines its pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersMatch {
    All,
    Any,
}

/// Whether a headers binding (`mode`, `wanted` pairs) matches a message's `headers`.
pub fn headers_match(
    mode: HeadersMatch,
    wanted: &[(Vec<u8>, Vec<u8>)],
    headers: &[(Vec<u8>, Vec<u8>)],
) -> bool {
    let has = |(key, value): &(Vec<u8>, Vec<u8>)| {
        headers
            .iter()
            .any(|(k, v)| k == key && (value.is_empty() || v == value))
    };
    match mode {
        HeadersMatch::All => wanted.iter().all(has),
        HeadersMatch::Any => wanted.iter().any(has),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ's topic semantics, as its tutorial and its routing tests state them.
    #[test]
    fn topic_patterns_match_as_rabbitmq_does() {
        let table: &[(&str, &str, bool)] = &[
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b", "a.b.c", false),
            ("*.orange.*", "quick.orange.rabbit", true),
            ("*.orange.*", "lazy.orange.elephant", true),
            ("*.orange.*", "quick.orange.fox", true),
            ("*.orange.*", "quick.brown.fox", false),
            ("*.orange.*", "orange", false),
            ("*.orange.*", "quick.orange.male.rabbit", false),
            ("*.*.rabbit", "quick.orange.rabbit", true),
            ("*.*.rabbit", "lazy.orange.male.rabbit", false),
            ("lazy.#", "lazy.orange.elephant", true),
            ("lazy.#", "lazy.orange.male.rabbit", true),
            ("lazy.#", "lazy", true),
            ("lazy.#", "lazyx", false),
            ("#", "", true),
            ("#", "anything.at.all", true),
            ("#.end", "end", true),
            ("#.end", "a.b.end", true),
            ("#.end", "a.b.ends", false),
            ("a.#.z", "a.z", true),
            ("a.#.z", "a.b.c.z", true),
            ("a.#.z", "a.b.c", false),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("a.*.#", "a.b.c.d", true),
            ("#.#", "a", true),
            ("*", "", true),
            ("*", "a.b", false),
            ("", "", true),
            ("", "a", false),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
        ];
        for (pattern, key, expected) in table {
            assert_eq!(
                topic_matches(pattern.as_bytes(), key.as_bytes()),
                *expected,
                "pattern {pattern:?} key {key:?}"
            );
        }
    }

    #[test]
    fn headers_bindings_want_all_or_any_pair() {
        let pair = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let headers = vec![pair("format", "pdf"), pair("type", "report")];
        let both = vec![pair("format", "pdf"), pair("type", "report")];
        let one_wrong = vec![pair("format", "pdf"), pair("type", "log")];
        assert!(headers_match(HeadersMatch::All, &both, &headers));
        assert!(!headers_match(HeadersMatch::All, &one_wrong, &headers));
        assert!(headers_match(HeadersMatch::Any, &one_wrong, &headers));
        assert!(!headers_match(
            HeadersMatch::Any,
            &[pair("format", "zip")],
            &headers
        ));
        // A pair without a value matches on presence.
        assert!(headers_match(
            HeadersMatch::All,
            &[pair("type", "")],
            &headers
        ));
        assert!(!headers_match(
            HeadersMatch::All,
            &[pair("size", "")],
            &headers
        ));
        // An empty ALL binding matches everything; an empty ANY nothing.
        assert!(headers_match(HeadersMatch::All, &[], &headers));
        assert!(!headers_match(HeadersMatch::Any, &[], &headers));
    }
}
