//! flin-difftest: differential testing of flin-server against a real redis-server. Both are
//! started on free 127.0.0.1 ports, sent the same commands over raw RESP (RESP2, and RESP3
//! after `HELLO 3`), and every reply that differs is reported (docs/commands.md, "Checking
//! against Redis").
//!
//! `cargo build --release -p flin-server -p flin-benches && target/release/flin-difftest`
//!
//! Options: `--mode curated|random|both` (both), `--seed N` (first seed; default from the
//! clock, printed), `--seeds N` (random sequences to run, 10), `--commands N` (per sequence,
//! 2000), `--redis PATH` (redis-server), `--flin PATH` (flin-server beside this binary),
//! `--data` (run flin-server on a scratch data directory instead of `--memory`),
//! `--show N` (divergences printed in full, 200), `--group NAME` (one curated group),
//! `--trace` (print every reply pair compared).
//! Exit status: 0 no divergence, 1 divergences, 2 the run could not be done.
//!
//! # Layout
//! - `resp`: reply values and their parser.
//! - `servers`: the two child processes and raw connections.
//! - `compare`: when two replies agree (exact bytes, or a named tolerance).
//! - `session`: runs steps on both servers and records the verdicts.
//! - `script`: the curated edge cases; `random`: the seeded generator.

mod compare;
mod random;
mod resp;
mod script;
mod servers;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use servers::Server;
use session::Session;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Curated,
    Random,
    Both,
}

struct Options {
    mode: Mode,
    seed: u64,
    seeds: u64,
    commands: usize,
    redis: PathBuf,
    flin: PathBuf,
    data: bool,
    show: usize,
    group: Option<String>,
    trace: bool,
}

fn parse_options() -> Result<Options, String> {
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(1);
    let mut options = Options {
        mode: Mode::Both,
        seed: clock_seed % 1_000_000_000,
        seeds: 10,
        commands: 2000,
        redis: PathBuf::from("redis-server"),
        flin: servers::sibling_or_path("flin-server"),
        data: false,
        show: 200,
        group: None,
        trace: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| -> Result<u64, String> {
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))
        };
        match flag.as_str() {
            "--mode" => {
                options.mode = match value()?.as_str() {
                    "curated" => Mode::Curated,
                    "random" => Mode::Random,
                    "both" => Mode::Both,
                    other => {
                        return Err(format!("--mode: '{other}' is not curated, random or both"))
                    }
                }
            }
            "--seed" => options.seed = number(value()?)?,
            "--seeds" => options.seeds = number(value()?)?,
            "--commands" => options.commands = number(value()?)? as usize,
            "--redis" => options.redis = PathBuf::from(value()?),
            "--flin" => options.flin = PathBuf::from(value()?),
            "--data" => options.data = true,
            "--show" => options.show = number(value()?)? as usize,
            "--group" => options.group = Some(value()?),
            "--trace" => options.trace = true,
            "--help" | "-h" => {
                return Err(
                    "see the options at the top of benches/src/bin/flin-difftest/main.rs".into(),
                )
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(options)
}

/// Both servers, started with `extra` flags (each understands `--requirepass`).
fn start(options: &Options, scratch: &std::path::Path, extra: &[&str]) -> Result<Session, String> {
    let name = if extra.is_empty() { "plain" } else { "extra" };
    let redis_dir = scratch.join(format!("redis-{name}"));
    std::fs::create_dir_all(&redis_dir).map_err(|e| e.to_string())?;
    let redis = Server::start_redis(&options.redis, &redis_dir, extra)?;
    let data = options.data.then(|| scratch.join(format!("flin-{name}")));
    let flin = Server::start_flin(&options.flin, data.as_deref(), extra)?;
    println!(
        "redis-server at {} ({}), flin-server at {} ({})",
        redis.addr,
        options.redis.display(),
        flin.addr,
        options.flin.display()
    );
    Session::new(redis, flin, 2)
}

fn run(options: &Options) -> Result<bool, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
    let mut session = start(options, scratch.path(), &[])?;
    session.trace = options.trace;
    if options.mode != Mode::Random {
        let mut steps = 0;
        for group in script::groups() {
            if options
                .group
                .as_deref()
                .is_some_and(|name| name != group.name)
            {
                continue;
            }
            for (index, step) in group.steps.iter().enumerate() {
                session.run(&format!("{}#{index}", group.name), step)?;
                steps += 1;
            }
        }
        if options
            .group
            .as_deref()
            .is_none_or(|name| name == "requirepass")
        {
            // The same servers started with a password, for the authentication rules; its
            // counts join the main report.
            let mut guarded = start(
                options,
                scratch.path(),
                &["--requirepass", script::PASSWORD],
            )?;
            guarded.trace = options.trace;
            for (index, step) in script::requirepass_steps().iter().enumerate() {
                guarded.run(&format!("requirepass#{index}"), step)?;
                steps += 1;
            }
            session.report.absorb(std::mem::take(&mut guarded.report));
        }
        println!(
            "curated: {steps} steps, {} divergences so far",
            session.report.divergences.len()
        );
    }
    if options.mode != Mode::Curated {
        println!(
            "random: seeds {}..{} ({} seeds x {} commands)",
            options.seed,
            options.seed + options.seeds,
            options.seeds,
            options.commands
        );
        for seed in options.seed..options.seed + options.seeds {
            session.resync()?;
            let steps = random::Generator::new(seed).steps(options.commands);
            let before = session.report.divergences.len();
            for (index, step) in steps.iter().enumerate() {
                if session.run(&format!("seed {seed} step {index}"), step)? {
                    session.resync()?;
                }
            }
            let found = session.report.divergences.len() - before;
            if found > 0 {
                println!("seed {seed}: {found} divergences");
            }
        }
    }
    let report = &session.report;
    for divergence in report.divergences.iter().take(options.show) {
        println!(
            "\nDIVERGENCE at {}\n  request: {}\n  redis:   {}\n  flin:    {}",
            divergence.label,
            cut(&divergence.request, REQUEST_SHOWN_CHARS),
            cut(&divergence.redis.to_string(), REPLY_SHOWN_CHARS),
            cut(&divergence.flin.to_string(), REPLY_SHOWN_CHARS)
        );
    }
    if report.divergences.len() > options.show {
        println!("\n... and {} more", report.divergences.len() - options.show);
    }
    println!(
        "\ncompared {} replies: {} identical, {} divergent",
        report.compared,
        report.same,
        report.divergences.len()
    );
    for (rule, count) in &report.tolerated {
        println!("  tolerated by {rule}: {count}");
    }
    for (rule, (count, first)) in &report.known {
        println!(
            "  known (documented) {rule}: {count}, first at {}: {}\n      redis: {}\n      flin:  {}",
            first.label,
            cut(&first.request, SUMMARY_SHOWN_CHARS),
            cut(&first.redis.to_string(), SUMMARY_SHOWN_CHARS),
            cut(&first.flin.to_string(), SUMMARY_SHOWN_CHARS)
        );
    }
    Ok(report.divergences.is_empty())
}

/// Characters of a request, a reply, and either in the summary, that are printed: keys and
/// values of megabytes would bury the report.
const REQUEST_SHOWN_CHARS: usize = 400;
const REPLY_SHOWN_CHARS: usize = 2000;
const SUMMARY_SHOWN_CHARS: usize = 120;

/// `text` cut to `chars` characters, with an ellipsis when cut.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_string(),
    }
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("flin-difftest: {message}");
            return ExitCode::from(2);
        }
    };
    if options.mode != Mode::Curated {
        println!(
            "seed {} (replay with --seed {})",
            options.seed, options.seed
        );
    }
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("flin-difftest: {message}");
            ExitCode::from(2)
        }
    }
}
