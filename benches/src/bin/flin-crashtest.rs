//! flin-crashtest: kill `flin-server` with SIGKILL at random moments under concurrent writers,
//! restart it, and check that every acknowledged write survived (see docs/reliability.md).
//!
//! `cargo build --release -p flin-server -p flin-benches && target/release/flin-crashtest --cycles 1000`
//!
//! Options: `--server PATH` (default: `flin-server` beside this binary), `--seed N` (default:
//! from the clock; printed first), `--cycles N` (100), `--fsync always|everysec|no` (always),
//! `--segment-bytes N` (65536), `--compaction-interval-ms N` (20), `--writers N` (6),
//! `--run-ms MIN,MAX` (20,600: writers run this long before the kill, or before aiming),
//! `--dir PATH` (parent of the scratch directory), `--keep`, `--quiet` (no line per cycle),
//! `--queue P,C` (queue producers and consumers, default 2,2; `--queue 0,0` leaves the queue
//! model out), `--stream P,C` (stream producers and group consumers, default 2,2; `--stream
//! 0,0` leaves the stream model out), `--doc N` (document outbox writers, default 2; `--doc 0`
//! leaves the document model out).
//! Exit status 0 when every check passed, 1 on a broken promise, 2 on bad arguments.

use std::path::PathBuf;

use flin_benches::crashtest::{self, model::Fsync, Options};

fn parse_options() -> Result<Options, String> {
    let server = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("flin-server")))
        .unwrap_or_else(|| PathBuf::from("flin-server"));
    let seed = crashtest::now_ms() ^ (std::process::id() as u64) << 40;
    let mut options = Options::new(server, seed, 100);
    options.verbose = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: '{text}' is not a number"))
        };
        match arg.as_str() {
            "--server" => options.server = PathBuf::from(value("--server")?),
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--cycles" => options.cycles = number("--cycles", value("--cycles")?)?,
            "--fsync" => {
                let text = value("--fsync")?;
                options.fsync = Fsync::parse(&text)
                    .ok_or(format!("--fsync: '{text}' is not always, everysec or no"))?;
            }
            "--segment-bytes" => {
                options.segment_bytes =
                    number("--segment-bytes", value("--segment-bytes")?)? as usize
            }
            "--compaction-interval-ms" => {
                options.compaction_interval_ms = number(
                    "--compaction-interval-ms",
                    value("--compaction-interval-ms")?,
                )?
            }
            "--writers" => {
                options.kv.writers = number("--writers", value("--writers")?)?.max(1) as usize
            }
            "--run-ms" => {
                let text = value("--run-ms")?;
                let (min, max) = text
                    .split_once(',')
                    .ok_or(format!("--run-ms: '{text}' is not MIN,MAX"))?;
                options.run_ms_min = number("--run-ms", min.into())?;
                options.run_ms_max = number("--run-ms", max.into())?.max(options.run_ms_min);
            }
            "--queue" => {
                let text = value("--queue")?;
                let (p, c) = text
                    .split_once(',')
                    .ok_or(format!("--queue: '{text}' is not P,C"))?;
                let (p, c) = (number("--queue", p.into())?, number("--queue", c.into())?);
                options.queue = match (p, c) {
                    (0, 0) => None,
                    (p, c) => options.queue.map(|q| crashtest::queue::QueueSettings {
                        producers: p as usize,
                        consumers: c as usize,
                        ..q
                    }),
                };
            }
            "--stream" => {
                let text = value("--stream")?;
                let (p, c) = text
                    .split_once(',')
                    .ok_or(format!("--stream: '{text}' is not P,C"))?;
                let (p, c) = (number("--stream", p.into())?, number("--stream", c.into())?);
                options.stream = match (p, c) {
                    (0, 0) => None,
                    (p, c) => options.stream.map(|s| crashtest::stream::StreamSettings {
                        producers: p as usize,
                        consumers: c as usize,
                        ..s
                    }),
                };
            }
            "--doc" => {
                let writers = number("--doc", value("--doc")?)? as usize;
                options.doc = match writers {
                    0 => None,
                    n => options
                        .doc
                        .map(|d| crashtest::doc::DocSettings { writers: n, ..d }),
                };
            }
            "--dir" => options.work_dir = Some(PathBuf::from(value("--dir")?)),
            "--keep" => options.keep = true,
            "--quiet" => options.verbose = false,
            "--help" | "-h" => {
                return Err(
                    "see the options at the top of benches/src/bin/flin-crashtest.rs".into(),
                )
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(options)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("flin-crashtest: {message}");
            std::process::exit(2);
        }
    };
    println!(
        "flin-crashtest: seed={} cycles={} fsync={} segment_bytes={} writers={} server={}",
        options.seed,
        options.cycles,
        options.fsync.as_str(),
        options.segment_bytes,
        options.kv.writers,
        options.server.display()
    );
    match crashtest::run(&options) {
        Ok(report) => println!("{report}"),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
