//! A key's history as text, so that a part the checker left undecided can be checked again
//! later (`flin-clustertest --recheck FILE`) with other limits or a changed checker. One
//! operation a line, tab-separated: client, call ns, return ns (`-`: unknown outcome),
//! command (`GET`, `SET`, `INCR`, `CAS`), the key in hex, the command's arguments (SET: value
//! in hex; CAS: expected in hex or `nil`, new in hex), then the output (GET: `v:<hex>` or
//! `nil`; SET: `ok`; INCR: `n:<number>` or `refused`; CAS: `true` or `false`) unless unknown.

use std::fmt::Write as _;

use flin_replication::linearizability::{KvCommand, KvInput, KvOutput, Operation};

use super::workload::KvOperation;

/// `operations` as text, a line each.
pub fn encode(operations: &[&KvOperation]) -> String {
    let mut text = String::new();
    for op in operations {
        let returned = match &op.returned {
            Some(returned) => returned.at_ns.to_string(),
            None => "-".into(),
        };
        let _ = write!(text, "{}\t{}\t{}\t", op.client, op.call_ns, returned);
        let key = hex(&op.input.key);
        match &op.input.command {
            KvCommand::Get => {
                let _ = write!(text, "GET\t{key}");
            }
            KvCommand::Set(value) => {
                let _ = write!(text, "SET\t{key}\t{}", hex(value));
            }
            KvCommand::Incr => {
                let _ = write!(text, "INCR\t{key}");
            }
            KvCommand::CompareAndSet { expected, new } => {
                let expected = expected.as_deref().map_or("nil".into(), hex);
                let _ = write!(text, "CAS\t{key}\t{expected}\t{}", hex(new));
            }
        }
        if let Some(returned) = &op.returned {
            let output = match &returned.output {
                KvOutput::Value(Some(value)) => format!("v:{}", hex(value)),
                KvOutput::Value(None) => "nil".into(),
                KvOutput::Done => "ok".into(),
                KvOutput::Incremented(n) => format!("n:{n}"),
                KvOutput::Refused => "refused".into(),
                KvOutput::Swapped(swapped) => swapped.to_string(),
            };
            let _ = write!(text, "\t{output}");
        }
        text.push('\n');
    }
    text
}

/// The operations `encode` wrote; an error names the line.
pub fn decode(text: &str) -> Result<Vec<KvOperation>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| decode_line(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1)))
        .collect()
}

fn decode_line(line: &str) -> Result<KvOperation, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let number = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .ok_or("too few fields")?
            .parse()
            .map_err(|_| format!("field {} is not a number", i + 1))
    };
    let field = |i: usize| fields.get(i).copied().ok_or("too few fields".to_string());
    let client = number(0)?;
    let call_ns = number(1)?;
    let returned = match field(2)? {
        "-" => None,
        _ => Some(number(2)?),
    };
    let key = unhex(field(4)?)?;
    let (command, next) = match field(3)? {
        "GET" => (KvCommand::Get, 5),
        "SET" => (KvCommand::Set(unhex(field(5)?)?), 6),
        "INCR" => (KvCommand::Incr, 5),
        "CAS" => {
            let expected = match field(5)? {
                "nil" => None,
                text => Some(unhex(text)?),
            };
            let new = unhex(field(6)?)?;
            (KvCommand::CompareAndSet { expected, new }, 7)
        }
        other => return Err(format!("unknown command {other}")),
    };
    let input = KvInput { key, command };
    let Some(at_ns) = returned else {
        return Ok(Operation::unknown(client, call_ns, input));
    };
    let output = match field(next)? {
        "nil" => KvOutput::Value(None),
        "ok" => KvOutput::Done,
        "refused" => KvOutput::Refused,
        "true" => KvOutput::Swapped(true),
        "false" => KvOutput::Swapped(false),
        text if text.starts_with("v:") => KvOutput::Value(Some(unhex(&text[2..])?)),
        text if text.starts_with("n:") => KvOutput::Incremented(
            text[2..]
                .parse()
                .map_err(|_| format!("bad INCR output {text}"))?,
        ),
        other => return Err(format!("unknown output {other}")),
    };
    Ok(Operation::completed(client, call_ns, input, at_ns, output))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd hex length in {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("bad hex {text:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_output_survives_the_text() {
        let ops = vec![
            Operation::completed(1, 10, KvInput::get("k\t1"), 20, KvOutput::Value(None)),
            Operation::completed(
                2,
                11,
                KvInput::get("k"),
                21,
                KvOutput::value(Some(b"\x00v")),
            ),
            Operation::completed(3, 12, KvInput::set("k", "v\n"), 22, KvOutput::Done),
            Operation::completed(4, 13, KvInput::incr("n"), 23, KvOutput::Incremented(-7)),
            Operation::completed(5, 14, KvInput::incr("n"), 24, KvOutput::Refused),
            Operation::completed(
                6,
                15,
                KvInput::compare_and_set("k", None, "a"),
                25,
                KvOutput::Swapped(true),
            ),
            Operation::completed(
                7,
                16,
                KvInput::compare_and_set("k", Some(b"a"), ""),
                26,
                KvOutput::Swapped(false),
            ),
            Operation::unknown(8, 17, KvInput::set("k", "lost")),
            Operation::unknown(9, 18, KvInput::compare_and_set("k", Some(b""), "x")),
        ];
        let refs: Vec<&KvOperation> = ops.iter().collect();
        let text = encode(&refs);
        assert_eq!(text.lines().count(), ops.len());
        assert_eq!(decode(&text).unwrap(), ops);
        assert!(decode("1\t2\t3\tPUT\t6b").unwrap_err().contains("line 1"));
    }
}
