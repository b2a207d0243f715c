//! Memory per key and recovery speed of the engine.
//!
//! `cargo run --release -p flin-benches --bin engine_footprint -- --keys 1000000`
//!
//! For each key count: populate a fresh directory engine with 16-byte keys and small values,
//! report the index bytes per key, the process RSS delta (anonymous and file-backed) and the
//! log bytes (which sit in the page cache, mapped); write hint files; then time `Engine::open`
//! with hints and without (hint files deleted), warm (files in the page cache) and cold (files
//! evicted with `posix_fadvise(DONTNEED)` after an fsync; checked with `mincore`-free means: the
//! `Cached` line of /proc/meminfo drops by about the directory's size).
//!
//! Options: `--keys N[,N...]` (default 1000000), `--value-bytes B` (default 16), `--runs R`
//! (warm runs per case, default 3), `--dir PATH` (parent of the temporary data directory),
//! `--no-cold`, `--segment-mib M` (default: the engine's 64 MiB). Only sealed segments get hint
//! files: the last (active) segment is always scanned.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flin_benches::{key, machine_line, proc_status_bytes, value};
use flin_engine::{Config, Durability, Engine, Namespace, WriteBatch};

struct Options {
    keys: Vec<u64>,
    value_bytes: usize,
    runs: usize,
    dir: Option<PathBuf>,
    cold: bool,
    segment_bytes: Option<usize>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        keys: vec![1_000_000],
        value_bytes: 16,
        runs: 3,
        dir: None,
        cold: true,
        segment_bytes: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut next = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--keys" => {
                options.keys = next("--keys")?
                    .split(',')
                    .map(|n| n.replace('_', "").parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--keys: {e}"))?
            }
            "--value-bytes" => {
                options.value_bytes = next("--value-bytes")?
                    .parse()
                    .map_err(|e| format!("--value-bytes: {e}"))?
            }
            "--runs" => {
                options.runs = next("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--dir" => options.dir = Some(next("--dir")?.into()),
            "--no-cold" => options.cold = false,
            "--segment-mib" => {
                let mib: usize = next("--segment-mib")?
                    .parse()
                    .map_err(|e| format!("--segment-mib: {e}"))?;
                options.segment_bytes = Some(mib << 20);
            }
            "-h" | "--help" => {
                println!("engine_footprint [--keys N[,N...]] [--value-bytes B] [--runs R] [--dir PATH] [--no-cold] [--segment-mib M]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    options.runs = options.runs.max(1);
    Ok(options)
}

fn config(dir: &Path, options: &Options) -> Config {
    let config = Config::directory(dir)
        .durability(Durability::No)
        .background_compaction(false);
    match options.segment_bytes {
        Some(bytes) => config.segment_bytes(bytes),
        None => config,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn rss() -> (u64, u64, u64) {
    (
        proc_status_bytes("VmRSS").unwrap_or(0),
        proc_status_bytes("RssAnon").unwrap_or(0),
        proc_status_bytes("RssFile").unwrap_or(0),
    )
}

fn meminfo_cached() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Cached:"))
                .and_then(|r| r.trim().strip_suffix("kB"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    files(dir, suffix)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Syncs every file of the directory and asks the kernel to drop their cached pages. Returns
/// how many bytes the page cache shrank by (a check that the eviction happened).
fn evict(dir: &Path) -> i64 {
    let before = meminfo_cached();
    for path in files(dir, "") {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let _ = file.sync_all();
        #[allow(unsafe_code)]
        // SAFETY: fadvise on an open descriptor we own; no memory is touched.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    before as i64 - meminfo_cached() as i64
}

/// CPU time (user + system) this thread has used: unlike wall time, it does not count the
/// time other processes on a busy machine held the CPU.
fn thread_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    #[allow(unsafe_code)]
    // SAFETY: getrusage writes a rusage into the pointer we pass; it is zero-initialized and
    // read only after the call succeeded.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

struct Recovery {
    wall: Duration,
    cpu: Duration,
    /// Peak RSS during the open above the RSS before it, if the peak mark could be reset.
    peak: Option<u64>,
    keys: u64,
    from_hints: usize,
    scanned: usize,
    index_bytes: usize,
}

fn recover(dir: &Path, options: &Options) -> Recovery {
    // Reset the peak-RSS mark (VmHWM) so it shows the peak of this open alone.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = proc_status_bytes("VmRSS").unwrap_or(0);
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let engine = Engine::open(config(dir, options)).expect("reopen");
    let wall = start.elapsed();
    let cpu = thread_cpu_time().saturating_sub(cpu_start);
    let peak = if hwm_reset {
        proc_status_bytes("VmHWM").map(|hwm| hwm.saturating_sub(rss_before))
    } else {
        None
    };
    let report = engine.recovery_report();
    let recovery = Recovery {
        wall,
        cpu,
        peak,
        keys: report.keys,
        from_hints: report.segments_from_hints,
        scanned: report.segments_scanned,
        index_bytes: engine.index_memory_bytes(),
    };
    drop(engine);
    recovery
}

fn print_recovery(label: &str, r: &Recovery, expected: u64) {
    assert_eq!(r.keys, expected, "recovered key count");
    println!(
        "  {label:<24} {:>9.1} ms  {:>7.2} M keys/s  | cpu {:>8.1} ms {:>6.2} M keys/s  (segments from hints {}, scanned {}; index after open {:.1} B/key; peak RSS +{})",
        r.wall.as_secs_f64() * 1e3,
        r.keys as f64 / r.wall.as_secs_f64() / 1e6,
        r.cpu.as_secs_f64() * 1e3,
        r.keys as f64 / r.cpu.as_secs_f64().max(1e-9) / 1e6,
        r.from_hints,
        r.scanned,
        r.index_bytes as f64 / r.keys.max(1) as f64,
        r.peak
            .map_or("unknown".to_string(), |p| format!("{:.1} MiB", mib(p))),
    );
}

fn remove_hints(dir: &Path) {
    for path in files(dir, ".hint") {
        std::fs::remove_file(&path).expect("remove hint");
    }
}

fn run(keys: u64, options: &Options) {
    let parent = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("flin-footprint-")
        .tempdir_in(&parent)
        .expect("tempdir");
    let dir = tmp.path().to_path_buf();
    println!(
        "== {keys} keys, {}-byte keys, {}-byte values, {} MiB segments, dir {} ==",
        flin_benches::KEY_BYTES,
        options.value_bytes,
        options.segment_bytes.unwrap_or(64 << 20) >> 20,
        dir.display()
    );
    println!("  machine: {}", machine_line());

    // Populate.
    let (rss0, anon0, file0) = rss();
    let engine = Engine::open(config(&dir, options)).expect("open");
    let v = value(options.value_bytes);
    let start = Instant::now();
    let mut i = 0;
    while i < keys {
        let mut batch = WriteBatch::new();
        for k in i..(i + 1000).min(keys) {
            batch.put(Namespace::Kv, &key(k), &v, 0);
        }
        engine.write(&batch).expect("populate");
        i += 1000;
    }
    let populate = start.elapsed();
    let (rss1, anon1, file1) = rss();
    let stats = engine.stats();
    let index = engine.index_memory_bytes() as u64;
    assert_eq!(stats.keys, keys);
    println!(
        "  populate (batches of 1000): {:.2} s, {:.2} M keys/s",
        populate.as_secs_f64(),
        keys as f64 / populate.as_secs_f64() / 1e6
    );
    println!(
        "  index memory:      {:>10.1} MiB = {:>6.1} B/key  (index_memory_bytes; keys live in the log)",
        mib(index),
        index as f64 / keys as f64
    );
    println!(
        "  index + key bytes: {:>10.1} B/key  (for comparison with Bitcask's keydir 44.5 B + key)",
        (index as f64 / keys as f64) + flin_benches::KEY_BYTES as f64
    );
    println!(
        "  RSS delta:         {:>10.1} MiB = {:>6.1} B/key  (anon {:.1} MiB = {:.1} B/key, file-backed {:.1} MiB)",
        mib(rss1.saturating_sub(rss0)),
        rss1.saturating_sub(rss0) as f64 / keys as f64,
        mib(anon1.saturating_sub(anon0)),
        anon1.saturating_sub(anon0) as f64 / keys as f64,
        mib(file1.saturating_sub(file0)),
    );
    println!(
        "  log:               {:>10.1} MiB = {:>6.1} B/key  in {} segments (page cache, mapped; dead {} B)",
        mib(stats.log_bytes),
        stats.log_bytes as f64 / keys as f64,
        stats.segments,
        stats.dead_bytes
    );
    let start = Instant::now();
    let hints = engine.write_missing_hints().expect("hints");
    println!(
        "  write_missing_hints: {hints} files in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    drop(engine);
    let (rss2, anon2, _) = rss();
    println!(
        "  after drop: RSS {:.1} MiB (anon {:.1} MiB); hint files {:.1} MiB, segment files {:.1} MiB",
        mib(rss2),
        mib(anon2),
        mib(dir_bytes(&dir, ".hint")),
        mib(dir_bytes(&dir, ".seg")),
    );

    // Recovery with hints.
    println!("  recovery (Engine::open: wall time | this thread's CPU time):");
    if options.cold {
        let evicted = evict(&dir);
        let r = recover(&dir, options);
        print_recovery("hints, cold", &r, keys);
        println!(
            "    (page cache shrank by {:.1} MiB before the cold open)",
            mib(evicted.max(0) as u64)
        );
    }
    let mut warm: Vec<Recovery> = (0..options.runs + 1)
        .map(|_| recover(&dir, options))
        .collect();
    warm.remove(0); // The first open after a cold one warms the cache.
    warm.sort_by_key(|r| r.wall);
    print_recovery("hints, warm (median)", &warm[warm.len() / 2], keys);
    print_recovery("hints, warm (best)", &warm[0], keys);

    // Recovery without hints (deleted before every open: an open does not write them).
    remove_hints(&dir);
    if options.cold {
        let evicted = evict(&dir);
        let r = recover(&dir, options);
        print_recovery("no hints, cold", &r, keys);
        println!(
            "    (page cache shrank by {:.1} MiB before the cold open)",
            mib(evicted.max(0) as u64)
        );
    }
    let mut warm: Vec<Recovery> = (0..options.runs + 1)
        .map(|_| {
            remove_hints(&dir);
            recover(&dir, options)
        })
        .collect();
    warm.remove(0);
    warm.sort_by_key(|r| r.wall);
    print_recovery("no hints, warm (median)", &warm[warm.len() / 2], keys);
    print_recovery("no hints, warm (best)", &warm[0], keys);
    println!("  machine at end: {}", machine_line());
    drop(tmp);
}

fn main() {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("engine_footprint: {e}");
            std::process::exit(2);
        }
    };
    for &keys in &options.keys {
        run(keys, &options);
    }
}
