//! LCS: the longest common subsequence of two strings, by Redis's dynamic program and its
//! walk back through the table, so that among several longest subsequences Flin answers the
//! one Redis answers, with the same matched ranges.

use super::core::{KvError, KvRead, Result, STRING_BYTES_MAX};

/// What LCS asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcsQuery {
    /// The subsequence itself (no option).
    Sequence,
    /// LEN: its length only.
    Length,
    /// IDX: the matched ranges, those of at least `min_length` bytes (MINMATCHLEN; 0 for all).
    Matches { min_length: u64 },
}

/// A run of bytes common to both strings, as byte ranges (inclusive) of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LcsMatch {
    pub a: (u32, u32),
    pub b: (u32, u32),
    pub length: u32,
}

/// LCS's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LcsAnswer {
    Sequence(Vec<u8>),
    Length(u32),
    /// The runs from the end of the strings backwards, as Redis lists them, and the length of
    /// the whole subsequence.
    Matches {
        matches: Vec<LcsMatch>,
        length: u32,
    },
}

/// Redis's table: the LCS length of every pair of prefixes, a `u32` each.
struct Table {
    cells: Vec<u32>,
    width: usize,
}

impl Table {
    /// Refuses a table past `proto-max-bulk-len` bytes, as Redis does (`(|a| + 1) * (|b| + 1)`
    /// cells of 4 bytes).
    fn build(a: &[u8], b: &[u8]) -> Result<Table> {
        let width = b.len() + 1;
        let cells = (a.len() as u64 + 1) * width as u64;
        if cells * 4 > STRING_BYTES_MAX as u64 {
            return Err(KvError::LcsTableTooLarge);
        }
        let mut table = Table {
            cells: vec![0; cells as usize],
            width,
        };
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cell = if a[i - 1] == b[j - 1] {
                    table.at(i - 1, j - 1) + 1
                } else {
                    table.at(i - 1, j).max(table.at(i, j - 1))
                };
                table.cells[i * width + j] = cell;
            }
        }
        Ok(table)
    }

    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }
}

/// LCS of `a` and `b`.
pub fn longest_common_subsequence(a: &[u8], b: &[u8], query: LcsQuery) -> Result<LcsAnswer> {
    let table = Table::build(a, b)?;
    let length = table.at(a.len(), b.len());
    if query == LcsQuery::Length {
        return Ok(LcsAnswer::Length(length));
    }
    let min_length = match query {
        LcsQuery::Matches { min_length } => min_length,
        _ => 0,
    };
    let mut sequence = vec![0u8; length as usize];
    let mut matches = Vec::new();
    // The run being followed, backwards: `None` between runs.
    let mut run: Option<LcsMatch> = None;
    let (mut i, mut j, mut filled) = (a.len(), b.len(), length as usize);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            sequence[filled - 1] = a[i - 1];
            filled -= 1;
            let (ai, bj) = (i as u32 - 1, j as u32 - 1);
            match &mut run {
                None => {
                    run = Some(LcsMatch {
                        a: (ai, ai),
                        b: (bj, bj),
                        length: 0,
                    })
                }
                // Contiguous with the run: extend it backwards.
                Some(current) if current.a.0 == ai + 1 && current.b.0 == bj + 1 => {
                    current.a.0 = ai;
                    current.b.0 = bj;
                }
                Some(_) => emit = true,
            }
            // A run that reached the start of either string ends here.
            if run.is_some_and(|run| run.a.0 == 0 || run.b.0 == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table.at(i - 1, j) > table.at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = run.is_some();
        }
        if emit {
            if let Some(mut ended) = run.take() {
                ended.length = ended.a.1 - ended.a.0 + 1;
                if min_length == 0 || ended.length as u64 >= min_length {
                    matches.push(ended);
                }
            }
        }
    }
    Ok(match query {
        LcsQuery::Matches { .. } => LcsAnswer::Matches { matches, length },
        _ => LcsAnswer::Sequence(sequence),
    })
}

/// LCS of the strings at two keys (a missing key is an empty string).
pub fn lcs_of_keys(read: &impl KvRead, a: &[u8], b: &[u8], query: LcsQuery) -> Result<LcsAnswer> {
    let a = read.get(a)?.map(|found| found.value).unwrap_or_default();
    let b = read.get(b)?.map(|found| found.value).unwrap_or_default();
    longest_common_subsequence(&a, &b, query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The LCS length by plain recursion over suffixes (memoised), a second computation to
    /// check the table against.
    fn naive_length(a: &[u8], b: &[u8]) -> u32 {
        fn go(
            a: &[u8],
            b: &[u8],
            memo: &mut std::collections::HashMap<(usize, usize), u32>,
        ) -> u32 {
            if a.is_empty() || b.is_empty() {
                return 0;
            }
            if let Some(known) = memo.get(&(a.len(), b.len())) {
                return *known;
            }
            let found = if a[0] == b[0] {
                1 + go(&a[1..], &b[1..], memo)
            } else {
                go(&a[1..], b, memo).max(go(a, &b[1..], memo))
            };
            memo.insert((a.len(), b.len()), found);
            found
        }
        go(a, b, &mut Default::default())
    }

    fn is_subsequence(needle: &[u8], haystack: &[u8]) -> bool {
        let mut rest = haystack.iter();
        needle.iter().all(|byte| rest.any(|other| other == byte))
    }

    fn small_strings() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), any::<u8>()],
            0..24,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_answer_is_a_longest_common_subsequence(a in small_strings(), b in small_strings()) {
            let LcsAnswer::Sequence(sequence) = longest_common_subsequence(&a, &b, LcsQuery::Sequence).unwrap() else {
                panic!("a sequence")
            };
            prop_assert_eq!(sequence.len() as u32, naive_length(&a, &b));
            prop_assert!(is_subsequence(&sequence, &a) && is_subsequence(&sequence, &b));
            prop_assert_eq!(
                longest_common_subsequence(&a, &b, LcsQuery::Length).unwrap(),
                LcsAnswer::Length(sequence.len() as u32)
            );
        }

        #[test]
        fn matches_are_the_sequence_in_runs(a in small_strings(), b in small_strings(), min in 0u64..4) {
            let LcsAnswer::Sequence(sequence) = longest_common_subsequence(&a, &b, LcsQuery::Sequence).unwrap() else {
                panic!("a sequence")
            };
            let LcsAnswer::Matches { matches, length } =
                longest_common_subsequence(&a, &b, LcsQuery::Matches { min_length: 0 }).unwrap() else {
                panic!("matches")
            };
            prop_assert_eq!(length as usize, sequence.len());
            // Every run is the same bytes in both strings, runs go backwards without overlap,
            // and together (in forward order) they spell the subsequence.
            let mut spelled = Vec::new();
            for run in matches.iter().rev() {
                let (a_run, b_run) = (
                    &a[run.a.0 as usize..=run.a.1 as usize],
                    &b[run.b.0 as usize..=run.b.1 as usize],
                );
                prop_assert_eq!(a_run, b_run);
                prop_assert_eq!(run.length as usize, a_run.len());
                spelled.extend_from_slice(a_run);
            }
            for pair in matches.windows(2) {
                prop_assert!(pair[1].a.1 < pair[0].a.0 && pair[1].b.1 < pair[0].b.0);
            }
            prop_assert_eq!(spelled, sequence);
            let LcsAnswer::Matches { matches: long, .. } =
                longest_common_subsequence(&a, &b, LcsQuery::Matches { min_length: min }).unwrap() else {
                panic!("matches")
            };
            let expected: Vec<LcsMatch> =
                matches.into_iter().filter(|run| run.length as u64 >= min).collect();
            prop_assert_eq!(long, expected);
        }
    }

    #[test]
    fn redis_examples() {
        // From Redis's documentation: LCS key1 key2 [IDX] [MINMATCHLEN 4] on these strings.
        let (a, b) = (b"ohmytext", b"mynewtext");
        assert_eq!(
            longest_common_subsequence(a, b, LcsQuery::Sequence).unwrap(),
            LcsAnswer::Sequence(b"mytext".to_vec())
        );
        let run = |a, b| LcsMatch {
            a,
            b,
            length: a.1 - a.0 + 1,
        };
        assert_eq!(
            longest_common_subsequence(a, b, LcsQuery::Matches { min_length: 0 }).unwrap(),
            LcsAnswer::Matches {
                matches: vec![run((4, 7), (5, 8)), run((2, 3), (0, 1))],
                length: 6
            }
        );
        assert_eq!(
            longest_common_subsequence(a, b, LcsQuery::Matches { min_length: 4 }).unwrap(),
            LcsAnswer::Matches {
                matches: vec![run((4, 7), (5, 8))],
                length: 6
            }
        );
        assert_eq!(
            longest_common_subsequence(b"", b"abc", LcsQuery::Sequence).unwrap(),
            LcsAnswer::Sequence(Vec::new())
        );
        // 2^15 bytes each: a table of 2^30 + 2^16 + 1 cells of 4 bytes, past 512 MiB.
        let big = vec![b'x'; 1 << 15];
        assert!(matches!(
            longest_common_subsequence(&big, &big, LcsQuery::Length),
            Err(KvError::LcsTableTooLarge)
        ));
    }
}
