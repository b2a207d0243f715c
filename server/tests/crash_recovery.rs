//! The crash-recovery harness (flin-benches' `crashtest`) against the real binary: a short run
//! per fsync policy. `FLIN_CRASHTEST_SEED` and `FLIN_CRASHTEST_CYCLES` make it long or
//! repeat a failure; `flin-crashtest --cycles 1000` is the long run (docs/reliability.md).

use std::path::PathBuf;

use flin_benches::crashtest::{self, model::Fsync, Options};

/// Cycles per test by default: tens, so both tests together stay well under a minute.
const CYCLES_DEFAULT: u64 = 40;

fn options(fsync: Fsync) -> Options {
    let seed = std::env::var("FLIN_CRASHTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(crashtest::now_ms);
    let cycles = std::env::var("FLIN_CRASHTEST_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CYCLES_DEFAULT);
    let mut options = Options::new(
        PathBuf::from(env!("CARGO_BIN_EXE_flin-server")),
        seed,
        cycles,
    );
    options.fsync = fsync;
    // Short cycles: rotation and compaction still happen several times in each.
    options.run_ms_min = 10;
    options.run_ms_max = 300;
    options.aim_ms_max = 800;
    options
}

fn run(options: Options) {
    eprintln!(
        "crash harness: seed {} ({} cycles, fsync {}); FLIN_CRASHTEST_SEED={} repeats its choices",
        options.seed,
        options.cycles,
        options.fsync.as_str(),
        options.seed
    );
    match crashtest::run(&options) {
        Ok(report) => {
            eprintln!("{report}");
            assert_eq!(report.cycles, options.cycles);
            assert!(
                report.tally.acknowledged > 0,
                "the writers got nothing acknowledged: the run tested nothing"
            );
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// Under `always`, every acknowledged write survives every kill, whole, and nothing deleted or
/// expired comes back.
#[test]
fn acknowledged_writes_survive_kill_9_under_fsync_always() {
    let options = options(Fsync::Always);
    run(options);
}

/// Under `everysec`, what a kill loses is at most a suffix of each writer's operations.
#[test]
fn only_a_recent_suffix_is_lost_under_fsync_everysec() {
    let options = options(Fsync::EverySec);
    run(options);
}
