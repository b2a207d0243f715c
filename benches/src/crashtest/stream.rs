//! The stream model: producers publish numbered records (single and batched) to a topic of
//! two partitions, group consumers consume and commit, the server is killed under all of them.
//!
//! The promises checked after every restart (under `--fsync always`; other policies count
//! what was lost and check nothing else):
//! - every acknowledged record is fetchable at the partition and offset its publish was told,
//!   with its value: offsets are never reused (an acknowledged offset holds the same record
//!   for the rest of the run) and the partition's next offset is past every acknowledged one;
//! - a group's committed offset in a partition is never below the highest commit the server
//!   acknowledged (committed offsets never go backwards);
//! - every record a consumer receives at an acknowledged offset is that offset's record.
//!
//! Group membership is not durable: after a restart consumers get `REBALANCE` and join again.
//! A publish or commit in flight at the kill may or may not have been applied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{encode, Client, Reply};
use super::model::{CycleFacts, Fsync, Model, Tally, Violation, Writer};
use super::rng::Rng;

const TOPIC: &[u8] = b"crash.t";
const GROUP: &[u8] = b"crash.g";
const PARTITIONS: u32 = 2;
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
const MODEL: &str = "stream";
/// Old acknowledged records read back again after each restart (the cycle's new ones are all
/// read).
const SAMPLE_OLD: usize = 64;

/// How many of each.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    pub producers: usize,
    pub consumers: usize,
    /// Records in one MPUBLISH, at most (a publish is single or batched at random).
    pub batch_max: usize,
}

/// What every writer shares.
#[derive(Default)]
struct Shared {
    /// (partition, offset) -> number, for every acknowledged record, over the run.
    acked: HashMap<(u32, u64), u64>,
    /// Acknowledged this cycle (read back in full at the next verify).
    fresh: Vec<(u32, u64)>,
    /// Highest acknowledged commit per partition.
    committed: [u64; PARTITIONS as usize],
    /// Publishes and commits sent but unanswered at the kill, this cycle.
    in_flight: u64,
    acks_this_cycle: u64,
}

struct StreamWriter {
    index: usize,
    producer: bool,
    next_number: u64,
    settings: StreamSettings,
    shared: Arc<Mutex<Shared>>,
    fsync: Fsync,
}

fn int(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Integer(n) => Some(*n),
        _ => None,
    }
}

fn items(reply: &Reply) -> Option<&[Reply]> {
    match reply {
        Reply::Array(Some(items)) => Some(items),
        _ => None,
    }
}

/// `[partition, offset, timestamp, key, headers, value]` -> (partition, offset, number).
fn parse_record(record: &Reply) -> Option<(u32, u64, u64)> {
    let fields = items(record)?;
    let partition = int(fields.first()?)? as u32;
    let offset = int(fields.get(1)?)? as u64;
    let Reply::Bulk(Some(value)) = fields.get(5)? else {
        return None;
    };
    Some((
        partition,
        offset,
        std::str::from_utf8(value).ok()?.parse().ok()?,
    ))
}

fn is_rebalance(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(e) if e.starts_with("REBALANCE"))
}

impl StreamWriter {
    fn violation(&self, what: String) -> Violation {
        Violation {
            model: MODEL,
            writer: Some(self.index),
            what,
        }
    }

    fn produce(&mut self, client: &mut Client, stop: &AtomicBool, rng: &mut Rng) -> Vec<Violation> {
        while !stop.load(Ordering::Relaxed) {
            let partition = rng.below(PARTITIONS as u64).to_string();
            let count = rng.between(1, self.settings.batch_max as u64);
            let first = self.next_number;
            self.next_number += count;
            let numbers: Vec<String> = (first..first + count).map(|n| n.to_string()).collect();
            let mut args: Vec<&[u8]> = Vec::new();
            if count == 1 {
                args.extend([
                    &b"STREAM.PUBLISH"[..],
                    TOPIC,
                    b"PARTITION",
                    partition.as_bytes(),
                ]);
                args.push(numbers[0].as_bytes());
            } else {
                args.extend([
                    &b"STREAM.MPUBLISH"[..],
                    TOPIC,
                    b"PARTITION",
                    partition.as_bytes(),
                    b"VALUES",
                ]);
                args.extend(numbers.iter().map(|n| n.as_bytes()));
            }
            let mut out = Vec::new();
            encode(&mut out, &args);
            self.shared.lock().expect("shared").in_flight += 1;
            if client.send(&out).is_err() {
                return Vec::new();
            }
            let reply = match client.read_reply() {
                Ok(reply) => reply,
                Err(_) => return Vec::new(), // killed: in flight
            };
            // [partition, offset] or [[partition, base, count]].
            let placed = match (&reply, count) {
                (Reply::Array(Some(pair)), 1) if pair.len() == 2 => {
                    int(&pair[0]).zip(int(&pair[1])).map(|(p, o)| (p, o, 1))
                }
                (Reply::Array(Some(ranges)), _) if ranges.len() == 1 => items(&ranges[0])
                    .filter(|r| r.len() == 3)
                    .and_then(|r| Some((int(&r[0])?, int(&r[1])?, int(&r[2])?))),
                _ => None,
            };
            let Some((p, base, n)) = placed else {
                return vec![
                    self.violation(format!("publish of {first}..: unexpected reply {reply:?}"))
                ];
            };
            if p.to_string() != partition || n as u64 != count {
                return vec![self.violation(format!("publish of {first}..: placed {placed:?}"))];
            }
            let mut shared = self.shared.lock().expect("shared");
            shared.in_flight -= 1;
            shared.acks_this_cycle += count;
            for i in 0..count {
                let key = (p as u32, base as u64 + i);
                if let Some(old) = shared.acked.insert(key, first + i) {
                    if self.fsync == Fsync::Always {
                        return vec![self.violation(format!(
                            "offset {key:?} handed out twice: to {old} and then to {}",
                            first + i
                        ))];
                    }
                }
                shared.fresh.push(key);
            }
        }
        Vec::new()
    }

    fn join(&self, client: &mut Client, name: &[u8]) -> Result<u64, Vec<Violation>> {
        match client.call(&[
            b"STREAM.JOIN",
            TOPIC,
            GROUP,
            name,
            b"SESSION",
            b"5000",
            b"RESET",
            b"EARLIEST",
        ]) {
            Ok(reply) => items(&reply)
                .and_then(|r| int(r.first()?))
                .map(|g| g as u64)
                .ok_or_else(|| vec![self.violation(format!("STREAM.JOIN: {reply:?}"))]),
            Err(_) => Err(Vec::new()),
        }
    }

    fn consume(&mut self, client: &mut Client, stop: &AtomicBool, rng: &mut Rng) -> Vec<Violation> {
        let name = format!("c{}", self.index);
        let mut generation = match self.join(client, name.as_bytes()) {
            Ok(g) => g,
            Err(v) => return v,
        };
        while !stop.load(Ordering::Relaxed) {
            let count = rng.between(1, 200).to_string();
            let reply = match client.call(&[
                b"STREAM.CONSUME",
                TOPIC,
                GROUP,
                name.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                b"50",
            ]) {
                Ok(reply) => reply,
                Err(_) => return Vec::new(),
            };
            if is_rebalance(&reply) {
                match self.join(client, name.as_bytes()) {
                    Ok(g) => generation = g,
                    Err(v) => return v,
                }
                continue;
            }
            let Some(records) = items(&reply) else {
                return vec![self.violation(format!("STREAM.CONSUME: {reply:?}"))];
            };
            let mut next: HashMap<u32, u64> = HashMap::new();
            for record in records {
                let Some((p, offset, number)) = parse_record(record) else {
                    return vec![self.violation(format!("STREAM.CONSUME: malformed {record:?}"))];
                };
                if self.fsync == Fsync::Always {
                    if let Some(&expected) =
                        self.shared.lock().expect("shared").acked.get(&(p, offset))
                    {
                        if expected != number {
                            return vec![self.violation(format!(
                                "consumed ({p}, {offset}) = {number}, acknowledged as {expected}"
                            ))];
                        }
                    }
                }
                let at = next.entry(p).or_insert(0);
                *at = (*at).max(offset + 1);
            }
            if next.is_empty() {
                continue;
            }
            let pairs: Vec<(String, String)> = next
                .iter()
                .map(|(p, o)| (p.to_string(), o.to_string()))
                .collect();
            let generation_text = generation.to_string();
            let mut args: Vec<&[u8]> = vec![
                b"STREAM.COMMIT",
                TOPIC,
                GROUP,
                name.as_bytes(),
                generation_text.as_bytes(),
            ];
            for (p, o) in &pairs {
                args.extend([p.as_bytes(), o.as_bytes()]);
            }
            self.shared.lock().expect("shared").in_flight += 1;
            let reply = match client.call(&args) {
                Ok(reply) => reply,
                Err(_) => return Vec::new(),
            };
            let mut shared = self.shared.lock().expect("shared");
            shared.in_flight -= 1;
            match reply {
                Reply::Simple(_) => {
                    shared.acks_this_cycle += 1;
                    for (&p, &o) in &next {
                        let c = &mut shared.committed[p as usize];
                        *c = (*c).max(o);
                    }
                }
                ref r if is_rebalance(r) => {
                    drop(shared);
                    match self.join(client, name.as_bytes()) {
                        Ok(g) => generation = g,
                        Err(v) => return v,
                    }
                }
                other => return vec![self.violation(format!("STREAM.COMMIT: {other:?}"))],
            }
        }
        Vec::new()
    }
}

impl Writer for StreamWriter {
    fn drive(&mut self, addr: SocketAddr, stop: &AtomicBool, mut rng: Rng) -> Vec<Violation> {
        let Ok(mut client) = Client::connect(addr, REPLY_TIMEOUT) else {
            return Vec::new();
        };
        let partitions = PARTITIONS.to_string();
        match client.call(&[
            b"STREAM.CREATE",
            TOPIC,
            b"PARTITIONS",
            partitions.as_bytes(),
        ]) {
            Ok(Reply::Simple(_)) => {}
            Ok(Reply::Error(e)) if e.contains("already exists") => {}
            Ok(other) => return vec![self.violation(format!("STREAM.CREATE: {other:?}"))],
            Err(_) => return Vec::new(),
        }
        if self.producer {
            self.produce(&mut client, stop, &mut rng)
        } else {
            self.consume(&mut client, stop, &mut rng)
        }
    }
}

/// The stream model: its writers, and the read-back after each restart.
pub struct StreamModel {
    writers: Vec<StreamWriter>,
    shared: Arc<Mutex<Shared>>,
    sample: Rng,
}

impl StreamModel {
    pub fn new(
        settings: StreamSettings,
        fsync: Fsync,
        first_writer: usize,
        seed: u64,
    ) -> StreamModel {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let writers = (0..settings.producers + settings.consumers)
            .map(|i| StreamWriter {
                index: first_writer + i,
                producer: i < settings.producers,
                // Each producer numbers its records in its own range.
                next_number: (i as u64 + 1) << 40,
                settings,
                shared: shared.clone(),
                fsync,
            })
            .collect();
        StreamModel {
            writers,
            shared,
            sample: Rng::new(seed ^ 0x5354_5245_414d),
        }
    }
}

fn fetch(
    client: &mut Client,
    partition: u32,
    offset: u64,
    count: u64,
) -> Result<Vec<Reply>, String> {
    let (p, o, c) = (partition.to_string(), offset.to_string(), count.to_string());
    match client.call(&[
        b"STREAM.FETCH",
        TOPIC,
        p.as_bytes(),
        o.as_bytes(),
        b"COUNT",
        c.as_bytes(),
        b"MAXBYTES",
        b"100000000",
    ]) {
        Ok(Reply::Array(Some(records))) => Ok(records),
        Ok(other) => Err(format!("STREAM.FETCH {partition} {offset}: {other:?}")),
        Err(e) => Err(format!("STREAM.FETCH {partition} {offset}: {e}")),
    }
}

impl Model for StreamModel {
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
        let violation = |what: String| Violation {
            model: MODEL,
            writer: None,
            what,
        };
        let mut shared = self.shared.lock().expect("shared");
        let mut tally = Tally {
            acknowledged: shared.acks_this_cycle,
            in_flight: shared.in_flight,
            ..Tally::default()
        };
        shared.acks_this_cycle = 0;
        shared.in_flight = 0;
        let mut to_check: Vec<(u32, u64)> = std::mem::take(&mut shared.fresh);
        if !shared.acked.is_empty() {
            let keys: Vec<(u32, u64)> = shared.acked.keys().copied().collect();
            for _ in 0..SAMPLE_OLD {
                to_check.push(keys[self.sample.below(keys.len() as u64) as usize]);
            }
        }
        // Read each partition's checked range in pages.
        let mut found: HashMap<(u32, u64), u64> = HashMap::new();
        let mut violations = Vec::new();
        for p in 0..PARTITIONS {
            let mut offsets: Vec<u64> = to_check.iter().filter(|k| k.0 == p).map(|k| k.1).collect();
            offsets.sort_unstable();
            offsets.dedup();
            let mut i = 0;
            while i < offsets.len() {
                let from = offsets[i];
                let records = fetch(client, p, from, 1000).map_err(|e| vec![violation(e)])?;
                for record in &records {
                    if let Some((rp, offset, number)) = parse_record(record) {
                        found.insert((rp, offset), number);
                    }
                }
                let reached = records
                    .last()
                    .and_then(parse_record)
                    .map_or(from + 1, |r| r.1 + 1);
                while i < offsets.len() && offsets[i] < reached {
                    i += 1;
                }
                if records.is_empty() {
                    i += 1;
                }
            }
        }
        let mut lost = 0u64;
        for key in &to_check {
            let expected = shared.acked[key];
            tally.keys_checked += 1;
            match found.get(key) {
                Some(&number) if number == expected => {}
                Some(&number) => violations.push(violation(format!(
                    "offset {key:?} holds {number}, acknowledged as {expected}"
                ))),
                None => {
                    lost += 1;
                    if facts.fsync == Fsync::Always {
                        violations.push(violation(format!(
                            "acknowledged record {expected} at {key:?} is not there after the restart"
                        )));
                    }
                }
            }
        }
        tally.acknowledged_lost = lost;
        // The next offsets are past every acknowledged one; committed offsets did not go back.
        let offsets = client
            .call(&[b"STREAM.OFFSETS", TOPIC, GROUP])
            .map_err(|e| vec![violation(format!("STREAM.OFFSETS: {e}"))])?;
        if facts.fsync == Fsync::Always {
            for (p, pair) in items(&offsets).unwrap_or(&[]).iter().enumerate() {
                let committed = items(pair).and_then(|r| int(r.get(1)?)).unwrap_or(-1);
                let acked = shared.committed[p];
                if acked > 0 && committed < acked as i64 {
                    violations.push(violation(format!(
                        "partition {p}: committed offset {committed} is below the acknowledged commit {acked}"
                    )));
                }
            }
            let mut top = [0u64; PARTITIONS as usize];
            for &(p, o) in shared.acked.keys() {
                top[p as usize] = top[p as usize].max(o + 1);
            }
            for (p, &end) in top.iter().enumerate() {
                if end == 0 {
                    continue;
                }
                let records =
                    fetch(client, p as u32, end - 1, 1).map_err(|e| vec![violation(e)])?;
                if records.is_empty() {
                    violations.push(violation(format!(
                        "partition {p}: the last acknowledged offset {} reads nothing",
                        end - 1
                    )));
                }
            }
        } else {
            // Lost acknowledged records (allowed) free their offsets for reuse.
            let gone: Vec<(u32, u64)> = to_check
                .iter()
                .filter(|k| !found.contains_key(k))
                .copied()
                .collect();
            for key in gone {
                shared.acked.remove(&key);
            }
            let found_committed = items(&offsets).map(|rows| {
                rows.iter()
                    .filter_map(|r| items(r).and_then(|r| int(r.get(1)?)))
                    .collect::<Vec<_>>()
            });
            if let Some(found_committed) = found_committed {
                for (p, c) in found_committed
                    .into_iter()
                    .enumerate()
                    .take(PARTITIONS as usize)
                {
                    shared.committed[p] = c.max(0) as u64;
                }
            }
        }
        if violations.is_empty() {
            Ok(tally)
        } else {
            Err(violations)
        }
    }
}
