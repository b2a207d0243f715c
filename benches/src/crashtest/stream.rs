//! The stream model: producers publish numbered records (single and batched) to a topic of
//! two partitions, group consumers consume and commit, the server is killed under all of them.
//!
//! The model keeps every acknowledged record's (partition, offset) -> number, and the highest
//! acknowledged commit per partition. After every restart it reads the partitions' end offsets
//! (STREAM.LAG) and committed offsets (STREAM.OFFSETS), and fetches back every record
//! acknowledged in the cycle, each partition's highest acknowledged offset and a sample of
//! older ones. [`check_partition`] holds the rules.
//!
//! Under `--fsync always`:
//! - every acknowledged record is fetchable at the partition and offset its publish was told,
//!   with its value, and the partition's end is past every acknowledged offset (so the next
//!   offsets handed out are new);
//! - a group's committed offset is never below the highest commit the server acknowledged.
//!
//! Under every policy (what `everysec` may lose is the recent tail of the log, so what is
//! there must still be consistent):
//! - a record found at an acknowledged offset is the acknowledged one, and a fetch returns
//!   dense offsets from the one asked for;
//! - an acknowledged record that is gone is at or past the partition's end (the tail went, no
//!   hole below the end);
//! - the committed offset is not past the partition's end (a commit does not outlive the
//!   records it counts);
//! - an offset is never acknowledged twice, and a consumer gets the acknowledged record at an
//!   acknowledged offset. The model forgets the lost tail after each restart (those offsets
//!   are handed out again), so these hold for `everysec` as for `always`.
//!
//! Group membership is not durable: after a restart consumers get `REBALANCE` and join again.
//! A publish or commit in flight at the kill may or may not have been applied.

use std::collections::{BTreeMap, HashMap};
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
/// Records per STREAM.FETCH of the read-back.
const FETCH_COUNT: u64 = 1000;

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
    /// (partition, offset) -> number, for every acknowledged record over the run that the
    /// model believes is there (a lost tail is dropped at the restart's check). Ordered, so
    /// the sample and each partition's highest offset come from the seed and a range.
    acked: BTreeMap<(u32, u64), u64>,
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
                    return vec![self.violation(format!(
                        "offset {key:?} handed out twice: to {old} and then to {}",
                        first + i
                    ))];
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
                let acked = self
                    .shared
                    .lock()
                    .expect("shared")
                    .acked
                    .get(&(p, offset))
                    .copied();
                if let Some(expected) = acked {
                    if expected != number {
                        return vec![self.violation(format!(
                            "consumed ({p}, {offset}) = {number}, acknowledged as {expected}"
                        ))];
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
    pub fn new(settings: StreamSettings, first_writer: usize, seed: u64) -> StreamModel {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let writers = (0..settings.producers + settings.consumers)
            .map(|i| StreamWriter {
                index: first_writer + i,
                producer: i < settings.producers,
                // Each producer numbers its records in its own range.
                next_number: (i as u64 + 1) << 40,
                settings,
                shared: shared.clone(),
            })
            .collect();
        StreamModel {
            writers,
            shared,
            sample: Rng::new(seed ^ 0x5354_5245_414d),
        }
    }
}

/// A partition after a restart, as STREAM.LAG and STREAM.OFFSETS report it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PartitionState {
    /// The next offset the partition hands out.
    end: u64,
    /// The group's committed offset (`None`: nothing committed).
    committed: Option<u64>,
}

/// What the model expects of one partition after a restart.
#[derive(Debug, Default)]
struct PartitionExpected {
    /// Acknowledged (offset, number) pairs read back: the cycle's, the highest and a sample.
    asked: Vec<(u64, u64)>,
    /// One past the highest offset the model holds as acknowledged (0: none).
    acked_end: u64,
    /// The highest acknowledged commit (0: none; a commit is always past a record).
    acked_commit: u64,
}

/// What the check of one partition came to.
#[derive(Debug, Default, PartialEq)]
struct PartitionCheck {
    /// Acknowledged offsets read back with nothing there.
    lost: Vec<u64>,
    /// Broken promises, in words.
    broken: Vec<String>,
}

/// The rules of the module doc for one partition: `found` is offset -> number for what the
/// read-back's fetches returned, `state` what the restarted server reports.
fn check_partition(
    partition: u32,
    expected: &PartitionExpected,
    found: &HashMap<u64, u64>,
    state: PartitionState,
    fsync: Fsync,
) -> PartitionCheck {
    let mut check = PartitionCheck::default();
    let end = state.end;
    for &(offset, number) in &expected.asked {
        match found.get(&offset) {
            Some(&there) if there == number => {}
            Some(&there) => check.broken.push(format!(
                "({partition}, {offset}) holds {there}, acknowledged as {number}"
            )),
            None => {
                check.lost.push(offset);
                if offset < end {
                    check.broken.push(format!(
                        "acknowledged record {number} at ({partition}, {offset}) is missing \
                         below the partition's end {end}: a hole, not a lost tail"
                    ));
                } else if fsync == Fsync::Always {
                    check.broken.push(format!(
                        "acknowledged record {number} at ({partition}, {offset}) is not there \
                         after the restart (the partition ends at {end})"
                    ));
                }
            }
        }
    }
    if fsync == Fsync::Always && end < expected.acked_end {
        check.broken.push(format!(
            "partition {partition} ends at {end} after the restart, but offset {} was \
             acknowledged: offsets from {end} would be handed out again",
            expected.acked_end - 1
        ));
    }
    if fsync == Fsync::Always
        && expected.acked_commit > 0
        && state.committed.is_none_or(|c| c < expected.acked_commit)
    {
        check.broken.push(format!(
            "partition {partition}: committed offset {:?} is below the acknowledged commit {}",
            state.committed, expected.acked_commit
        ));
    }
    if let Some(committed) = state.committed.filter(|&c| c > end) {
        check.broken.push(format!(
            "partition {partition}: committed offset {committed} is past the partition's end \
             {end}: the commit outlived the records it counts"
        ));
    }
    check
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

/// Fetches the records at `offsets` (sorted) below `end`, in pages: offset -> number. A page
/// must hold dense offsets from the one asked for.
fn read_back(
    client: &mut Client,
    partition: u32,
    offsets: &[u64],
    end: u64,
) -> Result<HashMap<u64, u64>, String> {
    let mut found = HashMap::new();
    let mut i = 0;
    while i < offsets.len() && offsets[i] < end {
        let from = offsets[i];
        let records = fetch(client, partition, from, FETCH_COUNT)?;
        for (k, record) in records.iter().enumerate() {
            let (p, offset, number) = parse_record(record)
                .ok_or_else(|| format!("STREAM.FETCH {partition} {from}: malformed {record:?}"))?;
            if (p, offset) != (partition, from + k as u64) {
                return Err(format!(
                    "STREAM.FETCH {partition} {from}: record {k} is ({p}, {offset}), not \
                     ({partition}, {}): offsets are not dense",
                    from + k as u64
                ));
            }
            found.insert(offset, number);
        }
        let reached = from + (records.len() as u64).max(1);
        while i < offsets.len() && offsets[i] < reached {
            i += 1;
        }
    }
    Ok(found)
}

/// `rows` as an array of one row per partition, each starting with its partition number.
fn partition_rows<'a>(command: &str, reply: &'a Reply) -> Result<Vec<&'a [Reply]>, String> {
    let rows: Option<Vec<&[Reply]>> = items(reply).and_then(|rows| {
        rows.iter()
            .enumerate()
            .map(|(p, row)| items(row).filter(|r| r.first().and_then(int) == Some(p as i64)))
            .collect()
    });
    match rows {
        Some(rows) if rows.len() == PARTITIONS as usize => Ok(rows),
        _ => Err(format!(
            "{command}: expected a row per partition, got {reply:?}"
        )),
    }
}

/// Each partition's end (STREAM.LAG) and committed offset (STREAM.OFFSETS; LAG must agree).
fn partition_states(client: &mut Client) -> Result<Vec<PartitionState>, String> {
    let lag = client
        .call(&[b"STREAM.LAG", TOPIC, GROUP])
        .map_err(|e| format!("STREAM.LAG: {e}"))?;
    let offsets = client
        .call(&[b"STREAM.OFFSETS", TOPIC, GROUP])
        .map_err(|e| format!("STREAM.OFFSETS: {e}"))?;
    let lag_rows = partition_rows("STREAM.LAG", &lag)?;
    let offset_rows = partition_rows("STREAM.OFFSETS", &offsets)?;
    lag_rows
        .iter()
        .zip(&offset_rows)
        .map(|(lag_row, offset_row)| {
            let end = lag_row.get(1).and_then(int).filter(|&e| e >= 0);
            let committed = offset_row.get(1).and_then(int).filter(|&c| c >= -1);
            match (end, committed) {
                (Some(end), Some(committed)) if lag_row.get(2).and_then(int) == Some(committed) => {
                    Ok(PartitionState {
                        end: end as u64,
                        committed: (committed >= 0).then_some(committed as u64),
                    })
                }
                _ => Err(format!(
                    "STREAM.LAG row {lag_row:?} and STREAM.OFFSETS row {offset_row:?} disagree or \
                     are malformed"
                )),
            }
        })
        .collect()
}

impl StreamModel {
    /// What to read back in `partition`: the cycle's acknowledged records, the highest
    /// acknowledged offset, and a sample of older ones (a random offset below the highest,
    /// rounded up to the next acknowledged one).
    fn expected(
        &mut self,
        shared: &Shared,
        partition: u32,
        fresh: &[(u32, u64)],
    ) -> PartitionExpected {
        let all = (partition, 0)..=(partition, u64::MAX);
        let mut offsets: Vec<u64> = fresh
            .iter()
            .filter(|k| k.0 == partition)
            .map(|k| k.1)
            .collect();
        let acked_end = shared
            .acked
            .range(all.clone())
            .next_back()
            .map_or(0, |(k, _)| k.1 + 1);
        if acked_end > 0 {
            offsets.push(acked_end - 1);
            for _ in 0..SAMPLE_OLD / PARTITIONS as usize {
                let at = self.sample.below(acked_end);
                if let Some((k, _)) = shared
                    .acked
                    .range((partition, at)..=(partition, u64::MAX))
                    .next()
                {
                    offsets.push(k.1);
                }
            }
        }
        offsets.sort_unstable();
        offsets.dedup();
        PartitionExpected {
            asked: offsets
                .into_iter()
                .map(|o| (o, shared.acked[&(partition, o)]))
                .collect(),
            acked_end,
            acked_commit: shared.committed[partition as usize],
        }
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
        let shared_handle = self.shared.clone();
        let mut shared = shared_handle.lock().expect("shared");
        let mut tally = Tally {
            acknowledged: shared.acks_this_cycle,
            in_flight: shared.in_flight,
            ..Tally::default()
        };
        shared.acks_this_cycle = 0;
        shared.in_flight = 0;
        let fresh = std::mem::take(&mut shared.fresh);
        let states = partition_states(client).map_err(|e| vec![violation(e)])?;
        let mut violations = Vec::new();
        for (p, state) in (0..PARTITIONS).zip(states) {
            let expected = self.expected(&shared, p, &fresh);
            let offsets: Vec<u64> = expected.asked.iter().map(|a| a.0).collect();
            let found =
                read_back(client, p, &offsets, state.end).map_err(|e| vec![violation(e)])?;
            let check = check_partition(p, &expected, &found, state, facts.fsync);
            tally.keys_checked += expected.asked.len() as u64;
            violations.extend(check.broken.into_iter().map(violation));
            // What is gone is the tail from the partition's end: the model forgets it (those
            // offsets are handed out again), and takes the commit the server has.
            let gone: Vec<(u32, u64)> = shared
                .acked
                .range((p, state.end)..=(p, u64::MAX))
                .map(|(k, _)| *k)
                .collect();
            tally.acknowledged_lost += gone.len() as u64;
            for key in gone {
                shared.acked.remove(&key);
            }
            shared.committed[p as usize] = match facts.fsync {
                Fsync::Always => shared.committed[p as usize].max(state.committed.unwrap_or(0)),
                Fsync::EverySec | Fsync::No => state.committed.unwrap_or(0),
            };
        }
        if violations.is_empty() {
            Ok(tally)
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets 0..4 acknowledged as numbers 100..104, commit 3 acknowledged.
    fn expected() -> PartitionExpected {
        PartitionExpected {
            asked: (0..4).map(|o| (o, 100 + o)).collect(),
            acked_end: 4,
            acked_commit: 3,
        }
    }

    fn found(offsets: std::ops::Range<u64>) -> HashMap<u64, u64> {
        offsets.map(|o| (o, 100 + o)).collect()
    }

    fn state(end: u64, committed: Option<u64>) -> PartitionState {
        PartitionState { end, committed }
    }

    #[test]
    fn everything_there_passes_under_every_policy() {
        for fsync in [Fsync::Always, Fsync::EverySec] {
            let check = check_partition(0, &expected(), &found(0..4), state(4, Some(3)), fsync);
            assert_eq!(check, PartitionCheck::default(), "{fsync:?}");
        }
    }

    #[test]
    fn a_lost_tail_fails_under_always_but_not_everysec() {
        let lost_tail = (found(0..2), state(2, Some(2)));
        let always = check_partition(0, &expected(), &lost_tail.0, lost_tail.1, Fsync::Always);
        assert_eq!(always.lost, vec![2, 3]);
        // Two records gone, the end below them, the commit below the acknowledged one.
        assert_eq!(always.broken.len(), 4, "{:?}", always.broken);
        let everysec = check_partition(0, &expected(), &lost_tail.0, lost_tail.1, Fsync::EverySec);
        assert_eq!(everysec.lost, vec![2, 3]);
        assert!(everysec.broken.is_empty(), "{:?}", everysec.broken);
    }

    #[test]
    fn a_hole_or_a_changed_record_fails_under_every_policy() {
        for fsync in [Fsync::Always, Fsync::EverySec] {
            let mut with_hole = found(0..4);
            with_hole.remove(&1);
            let check = check_partition(0, &expected(), &with_hole, state(4, Some(3)), fsync);
            assert_eq!(check.lost, vec![1]);
            assert!(check.broken[0].contains("a hole"), "{:?}", check.broken);
            let mut changed = found(0..4);
            changed.insert(2, 7);
            let check = check_partition(0, &expected(), &changed, state(4, Some(3)), fsync);
            assert!(check.broken[0].contains("holds 7"), "{:?}", check.broken);
        }
    }

    #[test]
    fn commits_go_back_only_under_everysec_and_never_past_the_end() {
        let back = check_partition(0, &expected(), &found(0..4), state(4, None), Fsync::Always);
        assert!(back.broken[0].contains("below the acknowledged commit"));
        let back = check_partition(
            0,
            &expected(),
            &found(0..4),
            state(4, None),
            Fsync::EverySec,
        );
        assert!(back.broken.is_empty());
        for fsync in [Fsync::Always, Fsync::EverySec] {
            let past = check_partition(0, &expected(), &found(0..4), state(4, Some(5)), fsync);
            assert!(
                past.broken[0].contains("past the partition's end"),
                "{fsync:?}"
            );
        }
    }
}
