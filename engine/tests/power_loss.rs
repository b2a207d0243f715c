//! Power loss, not only process death: seeded workloads (puts, deletes, batches, TTLs, clock
//! moves, segment rotation, sealing, compaction, hint files, clean restarts) run on a simulated
//! disk (`flin_engine::sim`) that loses power just before a chosen operation. The engine's real
//! recovery then opens images of what the machine would boot with: flushed bytes only are
//! guaranteed, every other page is written, lost or torn, and a prefix of the unsynced
//! directory changes survives. Each image must open, hold every acknowledged write with its
//! value, and be exactly the state after some prefix of the writes (nothing torn, stale or half
//! applied is served). The recovered engine then takes a write, loses power again, and must
//! recover the same state plus that write.
//!
//! Acknowledged: under `Durability::Always`, every write that returned `Ok`; under
//! `Durability::No`, every write before an `Engine::flush` that returned `Ok`.
//!
//! - `FLIN_POWER_SEEDS=n` runs n workloads (default 24), each crashed at
//!   `FLIN_POWER_CRASHES` points (default 4), each crash imaged `FLIN_POWER_IMAGES` times
//!   (default 3): 288 images by default.
//! - `FLIN_POWER_SEED=s` starts at workload seed s; a failure prints the seed to replay it
//!   (`FLIN_POWER_SEED=s FLIN_POWER_SEEDS=1`). Workloads with odd seeds seal segments on the
//!   background thread, whose timing the scheduler decides, so their crash points can land on
//!   a different operation in a replay; even seeds seal inline and replay exactly.
//!
//! Long run: `FLIN_POWER_SEEDS=2000 cargo test --release -p flin-engine --test power_loss`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flin_engine::sim::SimDisk;
use flin_engine::{Config, Durability, Engine, ManualClock, Namespace, WriteBatch};

const KV: Namespace = Namespace::Kv;
const KEYS: u64 = 12;
const STEPS: usize = 140;
const START_MS: u64 = 1_000_000;
const AFTER_KEY: &[u8] = b"written-after-recovery";

fn data_dir() -> PathBuf {
    PathBuf::from("/sim/data")
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64, so every choice follows from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: u64,
        len: usize,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: u64,
    },
    /// `None` deletes the key.
    Batch(Vec<(u64, Option<usize>)>),
    Advance {
        ms: u64,
    },
    Compact {
        ratio: f64,
    },
    WriteHints,
    Flush,
    ReclaimExpired,
    /// Drop the engine and open it again, power on (a clean restart).
    Restart,
}

fn value_len(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => 3000 + rng.below(4000) as usize, // larger than a segment: a segment of its own
        1..=4 => rng.below(1200) as usize,
        _ => rng.below(160) as usize,
    }
}

fn steps(seed: u64) -> Vec<Step> {
    let mut rng = Rng(seed ^ 0x5354_4550);
    (0..STEPS)
        .map(|_| match rng.below(100) {
            0..=39 => Step::Put {
                key: rng.below(KEYS),
                len: value_len(&mut rng),
                ttl_ms: None,
            },
            40..=47 => Step::Put {
                key: rng.below(KEYS),
                len: value_len(&mut rng),
                ttl_ms: Some(1 + rng.below(2000)),
            },
            48..=59 => Step::Delete {
                key: rng.below(KEYS),
            },
            60..=71 => Step::Batch(
                (0..2 + rng.below(4))
                    .map(|_| {
                        let key = rng.below(KEYS);
                        let op = (rng.below(4) != 0).then(|| rng.below(300) as usize);
                        (key, op)
                    })
                    .collect(),
            ),
            72..=76 => Step::Advance {
                ms: rng.below(1500),
            },
            77..=84 => Step::Compact {
                ratio: [0.0, 0.3, 0.5, 0.9][rng.below(4) as usize],
            },
            85..=89 => Step::WriteHints,
            90..=94 => Step::Flush,
            95..=96 => Step::ReclaimExpired,
            _ => Step::Restart,
        })
        .collect()
}

fn key_bytes(key: u64) -> Vec<u8> {
    format!("key{key}").into_bytes()
}

/// A value naming its key and the write that made it, so a stale or misplaced value cannot
/// pass for the right one.
fn value_bytes(key: u64, write: usize, len: usize) -> Vec<u8> {
    let mut value = format!("{key}/{write}/").into_bytes();
    value.extend((0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(write as u8)));
    value
}

/// One write's effect: per key, the new value and expiry, or `None` for a delete.
type Change = Vec<(Vec<u8>, Option<(Vec<u8>, u64)>)>;
/// What a reader sees: key -> (value, expiry_ms).
type State = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

#[derive(Clone, Copy, Debug)]
struct Settings {
    durability: Durability,
    background_sealing: bool,
    /// Not always a multiple of 4096: segments are created rounded up.
    segment_bytes: usize,
}

impl Settings {
    /// Sealing inline (every file operation in the order the writer decides), for the
    /// hand-made crashes.
    fn inline(durability: Durability, segment_bytes: usize) -> Settings {
        Settings {
            durability,
            background_sealing: false,
            segment_bytes,
        }
    }

    fn of(seed: u64) -> Settings {
        Settings {
            durability: if seed % 4 < 2 {
                Durability::Always
            } else {
                Durability::No
            },
            background_sealing: seed % 2 == 1,
            segment_bytes: [4096, 5000, 4096, 6144][(seed / 4 % 4) as usize],
        }
    }
}

fn config(disk: &SimDisk, clock: &Arc<ManualClock>, settings: Settings) -> Config {
    let mut config = Config::simulated(disk, data_dir())
        .durability(settings.durability)
        .segment_bytes(settings.segment_bytes)
        .background_compaction(false)
        .clock(clock.clone())
        .logger(Arc::new(|_, line: &str| {
            if std::env::var_os("FLIN_POWER_DEBUG").is_some() {
                eprintln!("engine: {line}");
            }
        }));
    config.background_sealing = settings.background_sealing;
    config
}

/// What a workload did before the power went.
struct Run {
    /// Every write that reached the log (including one cut off by the crash), in order.
    writes: Vec<Change>,
    /// Writes known durable: a prefix of `writes`.
    acknowledged: usize,
    clock: Arc<ManualClock>,
    /// The disk's last operations before the power loss.
    trace: String,
}

fn apply(state: &mut State, change: &Change) {
    for (key, op) in change {
        match op {
            Some(entry) => state.insert(key.clone(), entry.clone()),
            None => state.remove(key),
        };
    }
}

fn visible(state: &State, now_ms: u64) -> State {
    state
        .iter()
        .filter(|(_, (_, expiry_ms))| *expiry_ms == 0 || *expiry_ms > now_ms)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Everything a reader of `engine` sees, through scan and get.
fn read_state(engine: &Engine) -> State {
    let mut keys = Vec::new();
    let mut cursor = 0;
    loop {
        let (next, batch) = engine.scan(KV, cursor, 64).expect("scan");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut state = State::new();
    for key in keys {
        let value = engine
            .get(KV, &key)
            .unwrap_or_else(|e| panic!("get {:?}: {e}", String::from_utf8_lossy(&key)))
            .expect("a scanned key is there");
        state.insert(key, (value.value, value.expiry_ms));
    }
    assert_eq!(engine.len(KV) as usize, state.len(), "key count");
    state
}

/// An error is only expected once the power is gone.
fn expect_powered<T>(disk: &SimDisk, result: flin_engine::Result<T>, what: &str) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) if disk.crashed() => {
            let _ = e;
            None
        }
        Err(e) => panic!("{what} failed with the power on: {e}\n{}", disk.trace()),
    }
}

/// Runs the workload of `seed` on `disk` until its steps end or the power goes.
fn run(seed: u64, disk: &SimDisk) -> Run {
    let settings = Settings::of(seed);
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut run = Run {
        writes: Vec::new(),
        acknowledged: 0,
        clock: clock.clone(),
        trace: String::new(),
    };
    let mut model = State::new();
    let Some(mut engine) = expect_powered(
        disk,
        Engine::open(config(disk, &clock, settings)),
        "first open",
    ) else {
        return run;
    };
    for (at, step) in steps(seed).into_iter().enumerate() {
        let now_ms = clock_now(&clock);
        let before = engine.last_seq();
        let mut change: Change = Vec::new();
        let write = run.writes.len();
        let result: flin_engine::Result<()> = match &step {
            Step::Put { key, len, ttl_ms } => {
                let value = value_bytes(*key, write, *len);
                let expiry_ms = ttl_ms.map_or(0, |ttl| now_ms + ttl);
                change.push((key_bytes(*key), Some((value.clone(), expiry_ms))));
                engine
                    .put(KV, &key_bytes(*key), &value, expiry_ms)
                    .map(drop)
            }
            Step::Delete { key } => {
                let exists = visible(&model, now_ms).contains_key(&key_bytes(*key));
                change.push((key_bytes(*key), None));
                engine.delete(KV, &key_bytes(*key)).map(|existed| {
                    assert_eq!(existed, exists, "seed {seed} step {at}: delete saw the key");
                })
            }
            Step::Batch(ops) => {
                let mut batch = WriteBatch::new();
                for (key, op) in ops {
                    match op {
                        Some(len) => {
                            let value = value_bytes(*key, write, *len);
                            batch.put(KV, &key_bytes(*key), &value, 0);
                            change.push((key_bytes(*key), Some((value, 0))));
                        }
                        None => {
                            batch.delete(KV, &key_bytes(*key));
                            change.push((key_bytes(*key), None));
                        }
                    }
                }
                engine.write(&batch).map(drop)
            }
            Step::Advance { ms } => {
                clock.advance(*ms);
                Ok(())
            }
            Step::Compact { ratio } => engine.compact(*ratio).map(drop),
            Step::WriteHints => engine.write_missing_hints().map(drop),
            Step::Flush => engine.flush(),
            Step::ReclaimExpired => {
                engine.reclaim_expired();
                Ok(())
            }
            Step::Restart => {
                drop(engine);
                match Engine::open(config(disk, &clock, settings)) {
                    Ok(reopened) => {
                        engine = reopened;
                        // A clean restart keeps the page cache: nothing may be lost.
                        assert_eq!(
                            read_state(&engine),
                            visible(&model, now_ms),
                            "seed {seed} step {at}: state after a clean restart"
                        );
                        Ok(())
                    }
                    Err(e) => {
                        expect_powered(disk, Err::<(), _>(e), "restart");
                        run.trace = disk.trace();
                        return run;
                    }
                }
            }
        };
        // A write reached the log if it took a seq (even when its flush then failed).
        if std::env::var_os("FLIN_POWER_DEBUG").is_some() {
            eprintln!(
                "step {at}: {step:?} -> write {write} seq {} (ops {})",
                engine.last_seq(),
                disk.operations()
            );
        }
        if engine.last_seq() > before {
            apply(&mut model, &change);
            run.writes.push(change);
        }
        let succeeded = expect_powered(disk, result, &format!("seed {seed} step {at} {step:?}"));
        if succeeded.is_none() {
            break;
        }
        let durable_now = match step {
            Step::Flush => true,
            Step::Put { .. } | Step::Delete { .. } | Step::Batch(_) => {
                settings.durability == Durability::Always
            }
            _ => false,
        };
        if durable_now {
            run.acknowledged = run.writes.len();
        }
        if disk.crashed() {
            break;
        }
    }
    drop(engine);
    run.trace = disk.trace();
    run
}

fn clock_now(clock: &Arc<ManualClock>) -> u64 {
    use flin_engine::Clock;
    clock.now_ms()
}

/// Each key with the write that made its value (values start with "key/write/").
fn describe(state: &State) -> String {
    state
        .iter()
        .map(|(k, (v, expiry_ms))| {
            let name = String::from_utf8_lossy(k);
            let write = String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned();
            let write = write.split('/').nth(1).unwrap_or("?").to_string();
            match expiry_ms {
                0 => format!("{name}=w{write}"),
                _ => format!("{name}=w{write}@{expiry_ms}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens the image and returns the number of writes it holds: the state must be exactly the
/// one after some prefix of the writes, at least the acknowledged ones.
fn recover_prefix(image: &SimDisk, run: &Run, extra: &State, what: &str) -> (usize, State) {
    let settings = Settings::inline(Durability::Always, 4096);
    let engine = Engine::open(config(image, &run.clock, settings))
        .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}\n{}", image.trace()));
    let recovered = read_state(&engine);
    drop(engine);
    let now_ms = clock_now(&run.clock);
    let mut model = State::new();
    for change in &run.writes[..run.acknowledged] {
        apply(&mut model, change);
    }
    let mut held = None;
    // The prefix closest to what was recovered, for the failure message.
    let mut closest = (usize::MAX, 0, State::new());
    for k in run.acknowledged..=run.writes.len() {
        if k > run.acknowledged {
            apply(&mut model, &run.writes[k - 1]);
        }
        let mut expected = visible(&model, now_ms);
        expected.extend(extra.clone());
        if expected == recovered {
            held = Some(k);
            break;
        }
        let differing = expected
            .keys()
            .chain(recovered.keys())
            .filter(|key| expected.get(*key) != recovered.get(*key))
            .count();
        if differing < closest.0 {
            closest = (differing, k, expected);
        }
    }
    let Some(k) = held else {
        let (_, k, expected) = closest;
        panic!(
            "{what}: the recovered state is no prefix of the writes ({} written, {} \
             acknowledged)\nrecovered:            {}\nclosest prefix ({k:>3}):  {}\n\
             the disk before the power loss:\n{}",
            run.writes.len(),
            run.acknowledged,
            describe(&recovered),
            describe(&expected),
            run.trace
        );
    };
    (k, recovered)
}

/// Recovers one image, writes to it, loses power again, and recovers the second image.
fn check_image(image: &SimDisk, run: &Run, image_seed: u64, what: &str) -> usize {
    let (held, recovered) = recover_prefix(image, run, &State::new(), what);
    let settings = Settings::inline(Durability::Always, 4096);
    {
        let engine = Engine::open(config(image, &run.clock, settings)).expect("reopen");
        engine
            .put(KV, AFTER_KEY, b"acknowledged after recovery", 0)
            .unwrap_or_else(|e| panic!("{what}: write after recovery: {e}"));
    }
    let second = image.after_power_loss(image_seed ^ 0xa5a5);
    let mut extra = State::new();
    extra.insert(
        AFTER_KEY.to_vec(),
        (b"acknowledged after recovery".to_vec(), 0),
    );
    let second_run = Run {
        writes: run.writes[..held].to_vec(),
        acknowledged: held,
        clock: run.clock.clone(),
        trace: image.trace(),
    };
    // Only the state of the first recovery (plus the new write) may come back.
    let (_, state) = recover_prefix(
        &second,
        &second_run,
        &extra,
        &format!("{what}, second power loss"),
    );
    let mut expected = recovered;
    expected.extend(extra);
    assert_eq!(state, expected, "{what}: second recovery");
    held
}

/// Runs one workload: a dry run counts its operations, then it is crashed at `crashes` points
/// spread over them, and each crash is imaged `images` times.
fn power_loss_workload(seed: u64, crashes: u64, images: u64) -> (u64, u64) {
    let dry = SimDisk::new();
    run(seed, &dry);
    let operations = dry.operations();
    assert!(!dry.crashed());
    let mut rng = Rng(seed ^ 0x0043_5241_5348);
    let mut imaged = 0;
    let mut acknowledged_kept = 0;
    for crash in 0..crashes {
        // The last point is the end of the run: power lost after everything was written.
        let crash_after = if crash + 1 == crashes {
            operations
        } else {
            rng.below(operations + 1)
        };
        let disk = SimDisk::new();
        disk.crash_after_operations(crash_after);
        let run = run(seed, &disk);
        for image in 0..images {
            let image_seed = seed.wrapping_mul(1_000_003) ^ (crash << 20) ^ image;
            let what = format!(
                "seed {seed} ({:?}), power lost after operation {crash_after} of {operations}, \
                 image seed {image_seed} (replay: FLIN_POWER_SEED={seed} FLIN_POWER_SEEDS=1)",
                Settings::of(seed)
            );
            let snapshot = disk.after_power_loss(image_seed);
            check_image(&snapshot, &run, image_seed, &what);
            imaged += 1;
            acknowledged_kept += run.acknowledged as u64;
        }
    }
    (imaged, acknowledged_kept)
}

#[test]
fn every_acknowledged_write_survives_power_loss_at_any_operation() {
    let first = env("FLIN_POWER_SEED", 1);
    let seeds = env("FLIN_POWER_SEEDS", 24);
    let crashes = env("FLIN_POWER_CRASHES", 4);
    let images = env("FLIN_POWER_IMAGES", 3);
    eprintln!(
        "power loss: seeds {first}..{} (FLIN_POWER_SEED, FLIN_POWER_SEEDS), {crashes} crash \
         points each (FLIN_POWER_CRASHES), {images} images each (FLIN_POWER_IMAGES)",
        first + seeds
    );
    let mut imaged = 0;
    let mut acknowledged = 0;
    for seed in first..first + seeds {
        let (n, kept) = power_loss_workload(seed, crashes, images);
        imaged += n;
        acknowledged += kept;
    }
    eprintln!("power loss: {imaged} images recovered, {acknowledged} acknowledged writes checked");
    assert_eq!(imaged, seeds * crashes * images);
}

// Regression tests for what the workloads above found, each on a hand-made crash.

fn put_change(key: &[u8], value: &[u8]) -> Change {
    vec![(key.to_vec(), Some((value.to_vec(), 0)))]
}

/// Checks `IMAGES` power-loss images of `disk` against the writes: each must hold a prefix of
/// them, at least the acknowledged ones.
fn assert_every_image_is_a_prefix(disk: &SimDisk, writes: Vec<Change>, acknowledged: usize) {
    let run = Run {
        writes,
        acknowledged,
        clock: Arc::new(ManualClock::new(START_MS)),
        trace: disk.trace(),
    };
    for seed in 0..64 {
        let image = disk.after_power_loss(seed);
        recover_prefix(&image, &run, &State::new(), &format!("image seed {seed}"));
    }
}

/// Compaction drops a record that a newer one replaced. It used to commit its swap while that
/// newer record was still only in the page cache: a power loss then took both, and the key went
/// back to an even older value (here: to none at all).
#[test]
fn compaction_keeps_a_replaced_record_until_its_replacement_is_durable() {
    let disk = SimDisk::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let settings = Settings::inline(Durability::No, 4096);
    let mut writes = Vec::new();
    {
        let engine = Engine::open(config(&disk, &clock, settings)).unwrap();
        engine.put(KV, b"victim", b"old", 0).unwrap();
        writes.push(put_change(b"victim", b"old"));
        for i in 0..40 {
            let key = format!("filler{i}").into_bytes();
            engine.put(KV, &key, &[b'f'; 100], 0).unwrap();
            writes.push(put_change(&key, &[b'f'; 100]));
        }
        engine.flush().unwrap();
        engine.put(KV, b"victim", b"new", 0).unwrap();
        writes.push(put_change(b"victim", b"new"));
        let report = engine.compact(0.0).unwrap();
        assert_eq!(report.segments_in, 1, "{report:?}");
        // Before the engine's last flush on close.
        disk.crash_now();
    }
    assert_every_image_is_a_prefix(&disk, writes, 41);
}

/// Sets up a segment whose seal fails (its unflushed pages are dropped, as after a writeback
/// error) while the write that rotated away from it sits in the next segment's page cache.
/// `flushed` writes are flushed first.
fn unsealed_segment_losing_records(flushed: usize) -> (SimDisk, Vec<Change>) {
    let disk = SimDisk::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let settings = Settings {
        durability: Durability::No,
        background_sealing: true,
        segment_bytes: 4096,
    };
    let mut writes = Vec::new();
    let engine = Engine::open(config(&disk, &clock, settings)).unwrap();
    for i in 0..3 {
        if i == flushed {
            engine.flush().unwrap();
        }
        let key = format!("small{i}").into_bytes();
        engine.put(KV, &key, b"v", 0).unwrap();
        writes.push(put_change(&key, b"v"));
    }
    disk.fail_next_sync(
        Some(flin_engine::sim::SyncKind::Flush),
        "00000000000000000001.seg",
    );
    let big = vec![b'b'; 5000];
    engine.put(KV, b"big", &big, 0).unwrap();
    writes.push(put_change(b"big", &big));
    // The seal fails on the sealer thread and poisons the engine: its last flush on close
    // does nothing then.
    drop(engine);
    assert!(disk.trace().contains("injected EIO"), "{}", disk.trace());
    (disk, writes)
}

/// The records a segment lost at its end look like the room a rotation leaves there. Recovery
/// used to keep the next segment's records anyway, which is no prefix of the log.
#[test]
fn records_lost_at_the_end_of_an_unsealed_segment_take_the_newer_segment_with_them() {
    let (disk, writes) = unsealed_segment_losing_records(1);
    assert_every_image_is_a_prefix(&disk, writes, 1);
}

#[test]
fn an_unsealed_segment_that_lost_every_record_takes_the_newer_segment_with_them() {
    let (disk, writes) = unsealed_segment_losing_records(0);
    assert_every_image_is_a_prefix(&disk, writes, 0);
}

/// The other side of the rule above: a segment rotated away from without any record (the
/// first write after an open was too large for it) is sealed before the next segment exists,
/// so recovery does not mistake it for one that lost its records and drop acknowledged writes.
/// (It used to wait for the sealer thread, which is held back here until the power is gone.)
#[test]
fn a_write_too_large_for_an_empty_segment_survives_power_loss() {
    let disk = SimDisk::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let settings = Settings {
        durability: Durability::Always,
        background_sealing: true,
        segment_bytes: 4096,
    };
    let big = vec![b'b'; 5000];
    disk.pause_thread("flin-seal");
    {
        let engine = Engine::open(config(&disk, &clock, settings)).unwrap();
        engine.put(KV, b"big", &big, 0).unwrap();
        disk.crash_now();
        disk.resume_threads();
    }
    assert_every_image_is_a_prefix(&disk, vec![put_change(b"big", &big)], 1);
}

/// Writes `key` under `Durability::Always` on a thread named `name`; the receiver gets the
/// put's result once it returns.
fn put_on_thread(
    engine: &Arc<Engine>,
    name: &str,
    key: &'static [u8],
) -> std::sync::mpsc::Receiver<flin_engine::Result<()>> {
    let (done, result) = std::sync::mpsc::channel();
    let engine = engine.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = engine.put(KV, key, b"value", 0).map(|_| ());
            // Gone before the result is: the test may then drop the last handle and read
            // the disk, which needs the engine's mappings closed.
            drop(engine);
            let _ = done.send(result);
        })
        .unwrap();
    result
}

/// Waits (up to 10 s) until `count` of the disk reaches `at_least` (`what` names it).
fn wait_for(disk: &SimDisk, count: impl Fn(&SimDisk) -> u64, at_least: u64, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(disk) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{} {what}, expected {at_least}",
            count(disk)
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Waits (up to 10 s) until `threads` paused threads wait at the disk.
fn wait_for_held(disk: &SimDisk, threads: usize) {
    wait_for(
        disk,
        |disk| disk.threads_held() as u64,
        threads as u64,
        "threads held at the disk",
    );
}

/// Waits (up to 10 s) until the disk has seen `syncs` syncs.
fn wait_for_syncs(disk: &SimDisk, syncs: u64) {
    wait_for(disk, SimDisk::syncs, syncs, "syncs");
}

/// Two flushes at once (decision 108): a write that arrives while a flush is under way starts
/// its own flush of the bytes after that flush's range instead of waiting for it. That later
/// flush may land first; it must acknowledge nothing until the earlier one has landed too,
/// and nothing at all if the earlier one never does (power lost under it).
fn a_later_flush_landing_first(power_lost: bool) {
    let disk = SimDisk::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let settings = Settings::inline(Durability::Always, 1 << 20);
    let engine = Arc::new(Engine::open(config(&disk, &clock, settings)).unwrap());
    let before = disk.syncs();
    disk.pause_thread("first");
    let first = put_on_thread(&engine, "first", b"first");
    // The first flush is under way (its thread waits at the disk), so the second write starts
    // a flush of its own: it reaches the disk while the first is held.
    wait_for_held(&disk, 1);
    let second = put_on_thread(&engine, "second", b"second");
    wait_for_syncs(&disk, before + 1);
    let waited = second.recv_timeout(std::time::Duration::from_millis(300));
    assert!(
        waited.is_err(),
        "the second write was acknowledged while the flush of the first one's bytes was still under way: {waited:?}"
    );
    assert!(first.try_recv().is_err());
    if power_lost {
        disk.crash_now();
    }
    disk.resume_threads();
    let first = first.recv().unwrap();
    let second = second.recv().unwrap();
    match power_lost {
        true => {
            assert!(first.is_err(), "{first:?}");
            assert!(second.is_err(), "{second:?}");
        }
        false => {
            first.unwrap();
            second.unwrap();
            drop(engine);
            disk.crash_now();
            let writes = vec![
                put_change(b"first", b"value"),
                put_change(b"second", b"value"),
            ];
            assert_every_image_is_a_prefix(&disk, writes, 2);
        }
    }
}

#[test]
fn a_later_flush_that_lands_first_waits_for_the_earlier_one() {
    a_later_flush_landing_first(false);
}

#[test]
fn a_later_flush_that_lands_first_acknowledges_nothing_when_the_earlier_one_fails() {
    a_later_flush_landing_first(true);
}

/// A flush whose range was taken before a truncation covers the entries the cut removed, not
/// the ones written at their seqs after it: when it lands it must not declare those durable
/// (they were acknowledged unflushed; found while making flushes overlap, decision 108).
#[test]
fn a_flush_under_way_across_a_truncation_declares_only_what_the_cut_kept() {
    let disk = SimDisk::new();
    let clock = Arc::new(ManualClock::new(START_MS));
    let settings = Settings::inline(Durability::No, 1 << 20);
    let engine = Arc::new(Engine::open(config(&disk, &clock, settings).replicated(0)).unwrap());
    for key in 1..=10 {
        engine.put(KV, &key_bytes(key), b"old", 0).unwrap();
    }
    assert_eq!(engine.last_seq(), 10);
    disk.pause_thread("flusher");
    let (done, flushed) = std::sync::mpsc::channel();
    let flusher = engine.clone();
    std::thread::Builder::new()
        .name("flusher".into())
        .spawn(move || {
            let result = flusher.flush();
            drop(flusher);
            let _ = done.send(result);
        })
        .unwrap();
    // The flusher takes its range (through seq 10) and waits at the disk.
    wait_for_held(&disk, 1);
    engine.truncate_after(5).unwrap();
    engine.set_term(2).unwrap();
    for seq in 6..=8 {
        let mut batch = WriteBatch::new();
        batch.put(KV, &key_bytes(seq), b"new", 0);
        engine.append_entry(seq, 2, &batch).unwrap();
    }
    disk.resume_threads();
    // Asked before the cut, answered after it: it makes durable what is written now, the
    // new entries 6..=8 included.
    flushed.recv().unwrap().unwrap();
    assert_eq!(engine.durable_seq(), 8);
    disk.crash_now();
    drop(engine);
    let mut writes: Vec<Change> = (1..=5)
        .map(|key| put_change(&key_bytes(key), b"old"))
        .collect();
    writes.extend((6..=8).map(|key| put_change(&key_bytes(key), b"new")));
    assert_every_image_is_a_prefix(&disk, writes, 8);
}
