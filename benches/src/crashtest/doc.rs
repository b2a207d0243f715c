//! The document model: writers run the transactional outbox under kills. Each step of writer
//! `w` is one MULTI/EXEC holding every model's write:
//! - DOC.INSERT of order `w-i` into a collection with an index on `w` and a unique index on
//!   `ref`,
//! - DOC.UPDATE (upsert) of the writer's head document `{_id: w}`: `last = i`, `n += 1`,
//! - every 10th step, DOC.DELETE of order `w-(i-5)`,
//! - SET of the key `crash:doc:w` to `i`,
//! - STREAM.PUBLISH of `w-i` to partition `w` of a topic,
//! - QUEUE.PUSH of `w-i` to the writer's durable queue `crash.outbox.w` (nobody pops it).
//!
//! The promises checked after each restart, per writer, with `L` the head's `last`:
//! - no half transaction, under every policy: the key holds `L`, the head's `n` is `L + 1`,
//!   partition `w` ends at offset `L + 1` with `w-L` last, the writer's queue holds `L + 1`
//!   messages (each step's message is there exactly when its document is), and the writer's
//!   orders are exactly `0..=L` less the deleted ones;
//! - under `--fsync always`, nothing acknowledged is lost: `L` is at least the last step
//!   acknowledged, and at most the last sent;
//! - the indexes are exact: the orders found through the `w` index are those a full scan
//!   finds (`$or` is never an index bound), and the unique `ref` index finds each of the last
//!   50 orders by its key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::client::{encode, Client, Reply};
use super::model::{CycleFacts, Fsync, Model, Tally, Violation, Writer};
use super::rng::Rng;

const COLLECTION: &[u8] = b"crash.orders";
const HEADS: &[u8] = b"crash.heads";
const TOPIC: &[u8] = b"crash.outbox";
/// Writer `w`'s queue is this prefix and `w`.
const QUEUE_PREFIX: &str = "crash.outbox.";
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
const MODEL: &str = "document";
/// The keys this model writes (`crash:doc:<w>`); the key-value model's key-space check leaves
/// them to this one.
pub const KEY_PREFIX: &[u8] = b"crash:doc:";

/// How many writers.
#[derive(Clone, Copy, Debug)]
pub struct DocSettings {
    pub writers: usize,
    /// Padding of each order document, at most (bytes).
    pub pad_max: usize,
}

struct DocWriter {
    /// The writer's number in the model (its head `_id` and partition).
    w: usize,
    /// Its number among all the harness's writers (for reports).
    index: usize,
    settings: DocSettings,
    /// The next step.
    next: u64,
    /// The last step acknowledged, and the step in flight at the kill.
    acked: Option<u64>,
    in_flight: Option<u64>,
    acknowledged: u64,
}

/// Whether step `j` of a writer whose last step is `last` deleted order `j`'s document.
fn deleted(j: u64, last: u64) -> bool {
    j % 10 == 5 && j + 5 <= last
}

impl DocWriter {
    fn violation(&self, what: String) -> Violation {
        Violation {
            model: MODEL,
            writer: Some(self.index),
            what,
        }
    }

    fn step(&self, i: u64, rng: &mut Rng) -> Vec<u8> {
        let w = self.w;
        let pad = "p".repeat(rng.between(0, self.settings.pad_max as u64) as usize);
        let order =
            format!(r#"{{"_id":"{w}-{i}","w":{w},"i":{i},"ref":"r{w}-{i}","pad":"{pad}"}}"#);
        let head_filter = format!(r#"{{"_id":{w}}}"#);
        let head_update = format!(r#"{{"$set":{{"last":{i}}},"$inc":{{"n":1}}}}"#);
        let key = format!("crash:doc:{w}");
        let partition = w.to_string();
        let event = format!("{w}-{i}");
        let value = i.to_string();
        let mut out = Vec::new();
        encode(&mut out, &[b"MULTI"]);
        encode(&mut out, &[b"DOC.INSERT", COLLECTION, order.as_bytes()]);
        encode(
            &mut out,
            &[
                b"DOC.UPDATE",
                HEADS,
                head_filter.as_bytes(),
                head_update.as_bytes(),
                b"UPSERT",
            ],
        );
        if i.is_multiple_of(10) && i >= 10 {
            let gone = format!(r#"{{"_id":"{w}-{}"}}"#, i - 5);
            encode(&mut out, &[b"DOC.DELETE", COLLECTION, gone.as_bytes()]);
        }
        encode(&mut out, &[b"SET", key.as_bytes(), value.as_bytes()]);
        encode(
            &mut out,
            &[
                b"STREAM.PUBLISH",
                TOPIC,
                b"PARTITION",
                partition.as_bytes(),
                event.as_bytes(),
            ],
        );
        let queue = format!("{QUEUE_PREFIX}{w}");
        encode(
            &mut out,
            &[b"QUEUE.PUSH", queue.as_bytes(), event.as_bytes()],
        );
        encode(&mut out, &[b"EXEC"]);
        out
    }

    /// The EXEC's replies, each as the step expects, or what was wrong.
    fn check_exec(&self, i: u64, replies: Vec<Reply>) -> Result<(), String> {
        let with_delete = i.is_multiple_of(10) && i >= 10;
        if replies.len() != 5 + with_delete as usize {
            return Err(format!("EXEC of step {i}: {} replies", replies.len()));
        }
        let mut at = 0;
        let mut expect = |ok: bool, what: &str| {
            let reply = &replies[at];
            at += 1;
            match ok {
                true => Ok(()),
                false => Err(format!("EXEC of step {i}: {what} replied {reply:?}")),
            }
        };
        expect(
            matches!(&replies[0], Reply::Array(Some(ids)) if ids.len() == 1),
            "DOC.INSERT",
        )?;
        expect(
            matches!(&replies[1], Reply::Array(Some(r)) if r.len() == 3),
            "DOC.UPDATE",
        )?;
        if with_delete {
            expect(matches!(&replies[2], Reply::Integer(1)), "DOC.DELETE")?;
        }
        let n = 2 + with_delete as usize;
        expect(matches!(&replies[n], Reply::Simple(s) if s == "OK"), "SET")?;
        let placed = matches!(&replies[n + 1], Reply::Array(Some(p))
            if p.len() == 2 && p[0] == Reply::Integer(self.w as i64) && p[1] == Reply::Integer(i as i64));
        expect(placed, "STREAM.PUBLISH (partition w, offset i)")?;
        expect(
            matches!(&replies[n + 2], Reply::Integer(id) if *id > 0),
            "QUEUE.PUSH",
        )
    }
}

impl Writer for DocWriter {
    fn drive(&mut self, addr: SocketAddr, stop: &AtomicBool, mut rng: Rng) -> Vec<Violation> {
        let Ok(mut client) = Client::connect(addr, REPLY_TIMEOUT) else {
            return Vec::new();
        };
        let partitions = self.settings.writers.to_string();
        let queue = format!("{QUEUE_PREFIX}{}", self.w);
        let setup: [&[&[u8]]; 4] = [
            &[b"DOC.INDEX", COLLECTION, b"w"],
            &[b"DOC.INDEX", COLLECTION, b"ref", b"UNIQUE"],
            &[
                b"STREAM.CREATE",
                TOPIC,
                b"PARTITIONS",
                partitions.as_bytes(),
            ],
            &[b"QUEUE.DECLARE", queue.as_bytes(), b"DURABLE"],
        ];
        for args in setup {
            match client.call(args) {
                Ok(Reply::Bulk(Some(_)) | Reply::Simple(_)) => {}
                Ok(Reply::Error(e)) if e.contains("already exists") => {}
                Ok(other) => return vec![self.violation(format!("{:?}: {other:?}", args[0]))],
                Err(_) => return Vec::new(),
            }
        }
        while !stop.load(Ordering::Relaxed) {
            let i = self.next;
            self.in_flight = Some(i);
            if client.send(&self.step(i, &mut rng)).is_err() {
                return Vec::new();
            }
            let with_delete = i.is_multiple_of(10) && i >= 10;
            // +OK, a QUEUED per command, then EXEC's array.
            for _ in 0..6 + with_delete as usize {
                match client.read_reply() {
                    Ok(Reply::Simple(_)) => {}
                    Ok(other) => return vec![self.violation(format!("step {i} queued: {other:?}"))],
                    Err(_) => return Vec::new(),
                }
            }
            match client.read_reply() {
                Ok(Reply::Array(Some(replies))) => {
                    if let Err(what) = self.check_exec(i, replies) {
                        return vec![self.violation(what)];
                    }
                }
                Ok(other) => return vec![self.violation(format!("EXEC of step {i}: {other:?}"))],
                Err(_) => return Vec::new(),
            }
            self.acked = Some(i);
            self.in_flight = None;
            self.acknowledged += 1;
            self.next += 1;
        }
        Vec::new()
    }
}

/// The document model: its writers, and the check of what survived.
pub struct DocModel {
    writers: Vec<DocWriter>,
}

impl DocModel {
    pub fn new(settings: DocSettings, first_writer: usize) -> DocModel {
        let writers = (0..settings.writers)
            .map(|w| DocWriter {
                w,
                index: first_writer + w,
                settings,
                next: 0,
                acked: None,
                in_flight: None,
                acknowledged: 0,
            })
            .collect();
        DocModel { writers }
    }
}

fn json_of(reply: &Reply) -> Option<serde_json::Value> {
    match reply {
        Reply::Bulk(Some(bytes)) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}

/// The `i`s of the documents a DOC.FIND returned.
fn steps_of(reply: &Reply) -> Option<BTreeSet<u64>> {
    let Reply::Array(Some(items)) = reply else {
        return None;
    };
    items
        .iter()
        .map(|item| json_of(item)?["i"].as_u64())
        .collect()
}

impl DocModel {
    /// Checks writer `w` after a restart; the head's `last` (`None`: no step survived).
    fn check_writer(
        &self,
        writer: &DocWriter,
        client: &mut Client,
        facts: &CycleFacts,
    ) -> Result<Option<u64>, String> {
        let w = writer.w;
        let call = |client: &mut Client, args: &[&[u8]]| {
            client
                .call(args)
                .map_err(|e| format!("{:?} failed: {e}", String::from_utf8_lossy(args[0])))
        };
        let head_id = w.to_string();
        let head = call(client, &[b"DOC.GET", HEADS, head_id.as_bytes()])?;
        let (last, n) = match &head {
            Reply::Bulk(None) => (None, 0),
            other => {
                let doc = json_of(other).ok_or(format!("the head document: {other:?}"))?;
                (doc["last"].as_u64(), doc["n"].as_u64().unwrap_or(0))
            }
        };
        let expected_n = last.map_or(0, |l| l + 1);
        if n != expected_n {
            return Err(format!("half a transaction: head last {last:?} but n {n}"));
        }
        if facts.fsync == Fsync::Always {
            if let Some(acked) = writer.acked {
                if last.is_none_or(|l| l < acked) {
                    return Err(format!(
                        "step {acked} was acknowledged, the head has {last:?}"
                    ));
                }
            }
        }
        // The last step sent: the one in flight, or else the one before `next`.
        let sent_max = writer.in_flight.or(writer.next.checked_sub(1));
        if last.is_some() && (sent_max.is_none() || last > sent_max) {
            return Err(format!(
                "the head has step {last:?}, never sent (sent to {sent_max:?})"
            ));
        }
        let key = format!("crash:doc:{w}");
        let kv = call(client, &[b"GET", key.as_bytes()])?;
        let kv_last = match &kv {
            Reply::Bulk(None) => None,
            Reply::Bulk(Some(v)) => std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok()),
            other => return Err(format!("GET {key}: {other:?}")),
        };
        if kv_last != last {
            return Err(format!(
                "half a transaction: key {key} holds {kv_last:?}, the head {last:?}"
            ));
        }
        // The orders: through the w index, and through a full scan.
        let by_index = format!(r#"{{"w":{w}}}"#);
        let by_scan = format!(r#"{{"$or":[{{"w":{w}}}]}}"#);
        let project = br#"{"i":1}"#;
        let mut found = Vec::new();
        for filter in [&by_index, &by_scan] {
            let reply = call(
                client,
                &[
                    b"DOC.FIND",
                    COLLECTION,
                    filter.as_bytes(),
                    b"PROJECT",
                    project,
                ],
            )?;
            found.push(steps_of(&reply).ok_or(format!("DOC.FIND {filter}: {reply:?}"))?);
        }
        if found[0] != found[1] {
            return Err(format!(
                "the w index is not exact: {} orders through it, {} by a scan",
                found[0].len(),
                found[1].len()
            ));
        }
        let expected: BTreeSet<u64> = match last {
            Some(l) => (0..=l).filter(|j| !deleted(*j, l)).collect(),
            None => BTreeSet::new(),
        };
        if found[0] != expected {
            let extra: Vec<_> = found[0].difference(&expected).take(5).collect();
            let missing: Vec<_> = expected.difference(&found[0]).take(5).collect();
            return Err(format!(
                "orders do not match head {last:?}: extra {extra:?}, missing {missing:?}"
            ));
        }
        // The unique ref index finds the last 50 orders by their keys, one key each.
        if let Some(l) = last {
            let window: Vec<u64> = expected.range(l.saturating_sub(49)..=l).copied().collect();
            let refs: Vec<String> = window.iter().map(|j| format!(r#""r{w}-{j}""#)).collect();
            let filter = format!(r#"{{"ref":{{"$in":[{}]}}}}"#, refs.join(","));
            let report = call(client, &[b"DOC.EXPLAIN", COLLECTION, filter.as_bytes()])?;
            let report = json_of(&report).ok_or("DOC.EXPLAIN: not JSON")?;
            let stats = &report["executionStats"];
            let plan = &report["queryPlanner"]["winningPlan"];
            if plan["index"] != "ref_1"
                || stats["nReturned"] != window.len()
                || stats["totalKeysExamined"] != window.len()
            {
                return Err(format!(
                    "the ref index does not find the last {} orders by key: {report}",
                    window.len()
                ));
            }
        }
        // The outbox partition ends at L + 1 with w-L last.
        let partition = w.to_string();
        let from = last.map_or(0, |l| l.saturating_sub(2)).to_string();
        let fetched = call(
            client,
            &[
                b"STREAM.FETCH",
                TOPIC,
                partition.as_bytes(),
                from.as_bytes(),
                b"COUNT",
                b"10",
            ],
        )?;
        // A kill during the writers' set-up (before any step) can leave the topic and this
        // writer's queue undeclared: consistent only with no step having survived.
        let undeclared = |reply: &Reply, missing: &str| {
            last.is_none() && matches!(reply, Reply::Error(e) if e.contains(missing))
        };
        if undeclared(&fetched, "unknown topic") {
            return Ok(last);
        }
        let Reply::Array(Some(records)) = &fetched else {
            return Err(format!("STREAM.FETCH: {fetched:?}"));
        };
        let want = match last {
            Some(l) => (l.saturating_sub(2)..=l).count(),
            None => 0,
        };
        // A record is [partition, offset, timestamp, key, headers, value].
        let tail = records.last().and_then(|record| match record {
            Reply::Array(Some(items)) => match (items.get(1), items.get(5)) {
                (Some(Reply::Integer(offset)), Some(Reply::Bulk(Some(value)))) => {
                    Some((*offset as u64, String::from_utf8_lossy(value).into_owned()))
                }
                _ => None,
            },
            _ => None,
        });
        let want_tail = last.map(|l| (l, format!("{w}-{l}")));
        if records.len() != want || tail != want_tail {
            return Err(format!(
                "half a transaction: partition {w} from {from} holds {} records ending {tail:?}, the head is {last:?}",
                records.len()
            ));
        }
        // The outbox queue holds one message per step that survived.
        let queue = format!("{QUEUE_PREFIX}{w}");
        let len = call(client, &[b"QUEUE.LEN", queue.as_bytes()])?;
        let want = last.map_or(0, |l| l + 1) as i64;
        if len != Reply::Integer(want) && !undeclared(&len, "no queue") {
            return Err(format!(
                "half a transaction: queue {queue} holds {len:?} messages, the head is {last:?}"
            ));
        }
        Ok(last)
    }
}

impl Model for DocModel {
    fn name(&self) -> &'static str {
        MODEL
    }

    fn writers(&mut self) -> Vec<&mut dyn Writer> {
        self.writers
            .iter_mut()
            .map(|w| w as &mut dyn Writer)
            .collect()
    }

    fn verify(&mut self, client: &mut Client, facts: &CycleFacts) -> Result<Tally, Vec<Violation>> {
        let mut tally = Tally::default();
        let mut violations = Vec::new();
        for i in 0..self.writers.len() {
            let writer = &self.writers[i];
            tally.acknowledged += writer.acknowledged;
            tally.in_flight += writer.in_flight.is_some() as u64;
            match self.check_writer(writer, client, facts) {
                Ok(last) => {
                    let writer = &mut self.writers[i];
                    if writer.in_flight.is_some() && last == writer.in_flight {
                        tally.in_flight_applied += 1;
                    }
                    if let (Some(acked), Some(l)) = (writer.acked, last) {
                        tally.acknowledged_lost += acked.saturating_sub(l);
                    }
                    tally.keys_checked += last.map_or(0, |l| l + 1);
                    // The next step follows what survived (lost steps are gone for good).
                    writer.next = last.map_or(0, |l| l + 1);
                    writer.acked = last;
                    writer.in_flight = None;
                    writer.acknowledged = 0;
                }
                Err(what) => violations.push(writer.violation(what)),
            }
        }
        if violations.is_empty() {
            Ok(tally)
        } else {
            Err(violations)
        }
    }
}
