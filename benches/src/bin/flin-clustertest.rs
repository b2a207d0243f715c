//! flin-clustertest: three `flin-server` processes as one cluster, a fault proxy on each link
//! between them, concurrent clients, faults drawn from a seed (kill -9, SIGSTOP, partitions,
//! one-way drops, delays, flapping), then heal and check: every acknowledged write present
//! (keys, documents, queue, stream; no acknowledged queue ack undone, no committed group offset
//! gone back), the key-value history (GET, SET, INCR, compare-and-set)
//! linearizable, the nodes' logs and copies equal (see docs/reliability.md).
//!
//! `cargo build --release -p flin-server -p flin-benches && target/release/flin-clustertest --faults 1000`
//!
//! Options: `--server PATH` (default: `flin-server` beside this binary), `--seed N` (default:
//! from the clock; printed first), `--faults N` (100), `--duration S` (stop injecting after S
//! seconds even if fewer faults ran), `--port-base P` (7900: client ports P+1..P+3, cluster
//! ports +10000), `--proxy-base P` (7940: six proxy ports), `--clients N` (4), `--keys N` (5),
//! `--key-epoch-ms MS` (3000: fresh keys this often), `--model-percent P` (30: share of
//! operations that write documents, the queue or the stream), `--check-seconds S` (300: the
//! linearizability check's wall-clock limit), `--stale-reads` (broken on purpose: GETs read
//! any node's copy with READONLY; the check should fail), `--server-arg ARG` (repeatable: one
//! more flag or value for every node, e.g. `--server-arg --raft-retain-entries --server-arg
//! 2000` so that followers back from a fault are caught up by snapshots), `--dir PATH`,
//! `--keep`, `--quiet`.
//! Exit status 0 when every check passed, 1 on a broken promise, 2 on bad arguments.
//!
//! A key whose history the check left undecided is saved (`flin-clustertest-<seed>.history`,
//! the path in the verdict); `flin-clustertest --recheck FILE [--check-seconds S]` checks it
//! again, alone, and prints the verdict and the time (exit 0 linearizable, 1 not, 3
//! undecided); `--plain` checks it without the rules for unknown-outcome writes (the
//! checker's module doc), to compare.

use std::path::PathBuf;
use std::time::Duration;

use flin_benches::clustertest::{self, Options};

fn parse_options() -> Result<Options, String> {
    let server = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("flin-server")))
        .unwrap_or_else(|| PathBuf::from("flin-server"));
    let seed = flin_benches::crashtest::now_ms() ^ (std::process::id() as u64) << 40;
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
        let port = |name: &str, text: String| -> Result<u16, String> {
            text.parse()
                .map_err(|_| format!("{name}: '{text}' is not a port"))
        };
        match arg.as_str() {
            "--server" => options.server = PathBuf::from(value("--server")?),
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--faults" => options.faults = number("--faults", value("--faults")?)?,
            "--duration" => {
                options.duration_max =
                    Duration::from_secs(number("--duration", value("--duration")?)?)
            }
            "--port-base" => options.port_base = port("--port-base", value("--port-base")?)?,
            "--proxy-base" => options.proxy_base = port("--proxy-base", value("--proxy-base")?)?,
            "--clients" => options.clients = number("--clients", value("--clients")?)?.max(1),
            "--keys" => options.workload.keys = number("--keys", value("--keys")?)?.max(1),
            "--key-epoch-ms" => {
                options.workload.key_epoch_ms =
                    number("--key-epoch-ms", value("--key-epoch-ms")?)?.max(1)
            }
            "--check-seconds" => {
                options.check_time_max =
                    Duration::from_secs(number("--check-seconds", value("--check-seconds")?)?)
            }
            "--stale-reads" => options.workload.stale_reads = true,
            "--model-percent" => {
                options.workload.model_percent =
                    number("--model-percent", value("--model-percent")?)?.min(100)
            }
            "--dir" => options.work_dir = Some(PathBuf::from(value("--dir")?)),
            "--keep" => options.keep = true,
            "--server-arg" => options.server_args.push(value("--server-arg")?),
            "--quiet" => options.verbose = false,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(options)
}

/// `--recheck FILE [--check-seconds S]`: checks a saved history again.
fn recheck(mut args: impl Iterator<Item = String>) -> i32 {
    use flin_replication::linearizability::{self, KvModel, Limits, Outcome};
    let (mut file, mut seconds, mut plain) = (None, 300u64, false);
    while let Some(arg) = args.next() {
        if arg == "--plain" {
            plain = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--recheck", Some(path)) => file = Some(path),
            ("--check-seconds", Some(text)) => match text.parse() {
                Ok(number) => seconds = number,
                Err(_) => {
                    eprintln!("flin-clustertest: --check-seconds: '{text}' is not a number");
                    return 2;
                }
            },
            _ => {
                eprintln!("flin-clustertest: --recheck FILE [--check-seconds S] [--plain]");
                return 2;
            }
        }
    }
    let Some(file) = file else { return 2 };
    let history = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|text| clustertest::history::decode(&text))
    {
        Ok(history) => history,
        Err(why) => {
            eprintln!("flin-clustertest: {file}: {why}");
            return 2;
        }
    };
    let unknown = history.iter().filter(|op| op.returned.is_none()).count();
    let limits = Limits {
        time_max: Some(Duration::from_secs(seconds)),
        unknown_write_rules: !plain,
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let outcome = linearizability::check(&KvModel, &history, limits);
    let took = started.elapsed().as_secs_f64();
    let (verdict, code) = match &outcome {
        Outcome::Ok => ("linearizable".to_string(), 0),
        Outcome::Illegal(illegal) => (format!("{illegal}"), 1),
        Outcome::Timeout { part, exhausted } => (
            format!("undecided (key {part:?}: the {exhausted:?} limit ran out)"),
            3,
        ),
    };
    println!(
        "{file}: {} operations ({unknown} unknown): {verdict} in {took:.2} s",
        history.len()
    );
    code
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--recheck") {
        std::process::exit(recheck(std::env::args().skip(1)));
    }
    let options = match parse_options() {
        Ok(options) => options,
        Err(why) => {
            eprintln!("flin-clustertest: {why}");
            std::process::exit(2);
        }
    };
    println!(
        "flin-clustertest: seed {} ({} faults, server {}); {}",
        options.seed,
        options.faults,
        options.server.display(),
        flin_benches::machine_line()
    );
    match clustertest::run(&options) {
        Ok(report) => println!("{report}"),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    }
}
