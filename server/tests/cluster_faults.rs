//! The real-process fault test of a 3-node cluster (flin-benches' `clustertest`) against the
//! real binary: a short run of 10 faults (followers flushing off their raft thread) whose
//! history must be linearizable with every acknowledged write present and the nodes agreeing, and the same harness with reads served
//! from any node's copy (READONLY, a deposed leader's or a lagging follower's reads), which the
//! checker must refuse. `FLIN_CLUSTERTEST_SEED` and `FLIN_CLUSTERTEST_FAULTS` make the first
//! long or repeat a failure; `flin-clustertest --faults 1000` is the long run
//! (docs/reliability.md).
//!
//! The ports are fixed (client ports 7911-7913 and 7921-7923, their cluster ports + 10000,
//! proxies 7950-7955 and 7960-7965): peers must know each other's ports before they start.

use std::path::PathBuf;

use flin_benches::clustertest::{self, Options};

fn options(port_base: u16, proxy_base: u16, faults: u64) -> Options {
    let seed = std::env::var("FLIN_CLUSTERTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        // A fixed seed by default: the faults' choices repeat (their timing does not), and a
        // CI run must not fail on a bug a new seed finds first; see docs/reliability.md for
        // the open one (a node stops answering after ~60 faults, seed 20261206).
        .unwrap_or(20261205);
    let mut options = Options::new(
        PathBuf::from(env!("CARGO_BIN_EXE_flin-server")),
        seed,
        faults,
    );
    options.port_base = port_base;
    options.proxy_base = proxy_base;
    options.check_time_max = std::time::Duration::from_secs(60);
    // The test profile's servers are slow and lose more operations to timeouts (unknown
    // outcomes, which the checker's search pays for): keep each key's history short.
    options.workload.key_epoch_ms = 1_500;
    options
}

/// Every acknowledged write is present at the end, the history is linearizable and the three
/// nodes hold the same log and copies, across kill -9, SIGSTOP, partitions, one-way drops,
/// delays and flapping links.
#[test]
fn a_cluster_under_faults_stays_linearizable_and_agrees() {
    let faults = std::env::var("FLIN_CLUSTERTEST_FAULTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut options = options(7910, 7950, faults);
    // Followers hand every flush to their flush threads and hold their acknowledgements until
    // it lands (decision 108; by default only batches of 64 entries or more, which this
    // workload's few clients seldom make): the faults then hit that path.
    options.server_args = vec!["--raft-flush-offload".into(), "1".into()];
    eprintln!(
        "cluster faults: seed {} ({} faults); FLIN_CLUSTERTEST_SEED={} repeats its choices",
        options.seed, options.faults, options.seed
    );
    match clustertest::run(&options) {
        Ok(report) => {
            eprintln!("{report}");
            assert_eq!(report.faults, options.faults);
            assert!(
                report.acknowledged_writes > 0,
                "no write was acknowledged: the run tested nothing"
            );
            assert!(
                report.model_writes.0 > 0,
                "no document, queue or stream write was acknowledged"
            );
        }
        Err(failure) => panic!("{failure}"),
    }
}

/// The checker catches a broken read path: the same clients, but GETs answered by any node's
/// own copy (READONLY), as a deposed leader or a lagging follower would answer them.
#[test]
fn reads_from_any_nodes_copy_are_caught() {
    let mut options = options(7920, 7960, 6);
    options.workload.stale_reads = true;
    eprintln!("stale reads: seed {}", options.seed);
    match clustertest::run(&options) {
        Ok(report) => panic!("stale reads passed the check:\n{report}"),
        Err(failure) => {
            let text = failure.to_string();
            assert!(text.contains("not linearizable"), "{text}");
            let _ = std::fs::remove_dir_all(&failure.dir);
        }
    }
}
