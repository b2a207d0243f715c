//! Seed sweeps of the simulator, and proof that its checker catches broken builds.
//!
//! `FLIN_RAFT_SEEDS=10000` widens the sweep; `FLIN_RAFT_SEED=n` runs one seed (a failure
//! prints its seed; rerunning that seed replays the failure exactly). `FLIN_BROKEN_SEEDS=n`
//! gives each broken build n seeds to be caught in (default 1,000).

use super::{Options, Property, Report, Sim, Violation};
use crate::core::Faults;

const DEFAULT_SEEDS: u64 = 200;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("FLIN_RAFT_SEED") {
        return vec![seed.parse().expect("FLIN_RAFT_SEED is a number")];
    }
    let count = std::env::var("FLIN_RAFT_SEEDS")
        .map(|count| count.parse().expect("FLIN_RAFT_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    (0..count).collect()
}

fn run(seed: u64, options: &Options) -> Result<Report, Violation> {
    Sim::new(seed, options.clone()).run()
}

/// Pre-vote and check-quorum off, one entry per append, long delays and many proposals:
/// elections churn and leaders hand over half-replicated logs (where §5.4.2 matters).
fn churning() -> Options {
    Options {
        append_entries_max: 1,
        pre_vote: false,
        check_quorum: false,
        delay_steps_max: 40,
        reorder_per_mille: 1000,
        propose_per_mille: 200,
        tick_per_mille: 300,
        ..Options::default()
    }
}

#[test]
fn every_seed_is_safe_and_live() {
    sweep(&Options::default());
}

#[test]
fn every_seed_is_safe_and_live_while_elections_churn() {
    sweep(&churning());
}

#[test]
fn every_seed_is_safe_and_live_with_few_faults() {
    // Long stretches under one leader: full pipelines, long logs, batches at their limit.
    sweep(&Options {
        drop_per_mille: 5,
        duplicate_per_mille: 5,
        crash_per_mille: 1,
        crash_in_ready_per_mille: 2,
        partition_per_mille: 1,
        heal_per_mille: 20,
        propose_per_mille: 300,
        ..Options::default()
    });
}

/// Membership changes among the faults: learners added (spares started from an empty log),
/// promoted once caught up, members (leaders included) removed. Nodes forget entries from
/// memory and from disk, so followers also catch up by snapshots that skip changes and carry
/// the membership as of their index (etcd's `ConfState` in the snapshot's metadata).
fn changing_membership(options: Options) -> Options {
    Options {
        spare_nodes: 3,
        conf_change_per_mille: 20,
        ..options
    }
}

#[test]
fn every_seed_is_safe_and_live_while_membership_changes() {
    let total = sweep(&changing_membership(Options::default()));
    assert!(
        seeds().len() < 10 || total.conf_changes > 0,
        "no membership change was ever applied"
    );
    assert!(
        seeds().len() < 10 || total.snapshots_across_changes > 0,
        "no snapshot ever skipped a membership change"
    );
}

#[test]
fn every_seed_is_safe_and_live_while_membership_changes_and_elections_churn() {
    sweep(&changing_membership(churning()));
}

#[test]
fn every_seed_is_safe_and_live_with_five_nodes() {
    // Membership is fixed at three for now, but nothing in the core assumes it.
    sweep(&Options {
        nodes: 5,
        ..Options::default()
    });
}

/// One clock for every node (each ticks once every 10 steps), under which leases are
/// checked: no node leads a term while another's lease of an older term runs.
fn one_clock(options: Options) -> Options {
    Options {
        lease_tick_steps: 10,
        ..options
    }
}

#[test]
fn every_seed_keeps_leases_safe_under_one_clock() {
    sweep(&one_clock(Options::default()));
}

#[test]
fn every_seed_keeps_leases_safe_under_one_clock_while_membership_changes() {
    sweep(&one_clock(changing_membership(Options::default())));
}

fn sweep(options: &Options) -> Report {
    let mut total = Report::default();
    let seeds = seeds();
    for &seed in &seeds {
        match run(seed, options) {
            Ok(report) => {
                total.proposals += report.proposals;
                total.acknowledged += report.acknowledged;
                total.crashes += report.crashes;
                total.terms += report.terms;
                total.unchecked_histories += report.unchecked_histories;
                total.conf_changes += report.conf_changes;
                total.stored_appends += report.stored_appends;
                total.snapshots_installed += report.snapshots_installed;
                total.snapshots_across_changes += report.snapshots_across_changes;
                total.unsynced_readys += report.unsynced_readys;
                total.unsynced_lost += report.unsynced_lost;
            }
            Err(violation) => panic!("seed {seed}: {violation} (replay: FLIN_RAFT_SEED={seed})"),
        }
    }
    eprintln!(
        "{} seeds: {} proposals, {} acknowledged, {} crashes, {} terms, {} membership changes, {} appends from disk, {} snapshots installed ({} across a membership change), {} leader Readys unsynced ({} entries lost with a crash), {} client histories too large to check for linearizability",
        seeds.len(),
        total.proposals,
        total.acknowledged,
        total.crashes,
        total.terms,
        total.conf_changes,
        total.stored_appends,
        total.snapshots_installed,
        total.snapshots_across_changes,
        total.unsynced_readys,
        total.unsynced_lost,
        total.unchecked_histories
    );
    // Leaders write without waiting for flushes, and crashes take such writes.
    assert!(
        seeds.len() < 10 || options.unsynced_per_mille == 0 || total.unsynced_lost > 0,
        "no crash took a leader's unsynced entries"
    );
    // Most seeds' histories are checked for linearizability, not given up on (a sweep's
    // share: one seed replayed alone may be the one too large).
    assert!(
        seeds.len() < 10 || total.unchecked_histories * 10 <= seeds.len() as u64,
        "{} of {} histories too large to check",
        total.unchecked_histories,
        seeds.len()
    );
    // Compaction makes leaders feed followers from disk and, past the disk, by snapshot.
    assert!(
        seeds.len() < 10
            || (total.stored_appends > 0
                && (total.snapshots_installed > 0 || options.disk_compact_per_mille == 0)),
        "no catch-up from disk or by snapshot was exercised"
    );
    // One seed may churn through elections without a proposal surviving; a sweep may not.
    assert!(
        seeds.len() < 10 || total.acknowledged > 0,
        "nothing was ever committed"
    );
    total
}

#[test]
fn a_seed_replays_exactly() {
    let options = Options::default();
    for seed in [1, 42, 31337] {
        let first = run(seed, &options).expect("safe");
        let second = run(seed, &options).expect("safe");
        assert_eq!(first, second, "seed {seed} ran differently twice");
    }
}

#[test]
fn a_quiet_cluster_commits_every_proposal() {
    let options = Options {
        drop_per_mille: 0,
        duplicate_per_mille: 0,
        crash_per_mille: 0,
        crash_in_ready_per_mille: 0,
        partition_per_mille: 0,
        transfer_per_mille: 0,
        ..Options::default()
    };
    let report = run(7, &options).expect("safe");
    assert!(
        report.acknowledged * 10 >= report.proposals * 7,
        "{report:?}"
    );
}

/// Seeds a broken build gets before its test fails; a sweep stops at its first violation.
/// (`FLIN_BROKEN_SEEDS=n` runs n.)
const BROKEN_SEEDS_MAX: u64 = 1000;

/// Runs a sweep against a broken build and returns the first safety violation found.
fn first_violation(faults: Faults, options: Options) -> Option<(u64, Violation)> {
    let options = Options { faults, ..options };
    let max = std::env::var("FLIN_BROKEN_SEEDS").map_or(BROKEN_SEEDS_MAX, |n| n.parse().unwrap());
    (0..max).find_map(|seed| match run(seed, &options) {
        Err(violation) if violation.property != Property::Liveness => Some((seed, violation)),
        _ => None,
    })
}

#[test]
fn the_checker_catches_votes_that_ignore_the_log() {
    let faults = Faults {
        vote_ignores_log: true,
        ..Faults::default()
    };
    let (seed, violation) = first_violation(faults, Options::default())
        .expect("a vote without the log check goes unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
}

#[test]
fn the_checker_catches_commits_of_old_terms_by_counting() {
    let faults = Faults {
        commit_counts_old_terms: true,
        ..Faults::default()
    };
    let (seed, violation) =
        first_violation(faults, churning()).expect("counting old terms' replicas goes unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
}

#[test]
fn the_checker_catches_followers_committing_what_they_did_not_check() {
    let faults = Faults {
        follower_commit_unchecked: true,
        ..Faults::default()
    };
    let (seed, violation) =
        first_violation(faults, Options::default()).expect("an unchecked commit goes unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
}

#[test]
fn the_checker_catches_snapshots_installed_without_their_membership() {
    let faults = Faults {
        snapshot_keeps_old_membership: true,
        ..Faults::default()
    };
    let (seed, violation) = first_violation(faults, changing_membership(Options::default()))
        .expect("a follower that ignores a snapshot's membership goes unnoticed");
    assert_eq!(
        violation.property,
        Property::MembershipAgreement,
        "{violation}"
    );
    eprintln!("caught at seed {seed}: {violation}");
}

#[test]
fn the_linearizability_check_catches_answers_given_before_the_entry_is_applied() {
    let options = Options {
        answer_on_propose: true,
        ..Options::default()
    };
    let (seed, violation) = (0..BROKEN_SEEDS_MAX)
        .find_map(|seed| match run(seed, &options) {
            Err(violation) if violation.property == Property::Linearizability => {
                Some((seed, violation))
            }
            _ => None,
        })
        .expect("answers from the leader's unapplied state go unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
}

#[test]
fn the_lease_check_catches_a_lease_longer_than_the_followers_promise() {
    // Followers refuse votes for `election_ticks` ticks after a round; a lease of
    // `election_ticks + 2` ticks outlives that promise.
    let options = Options {
        lease_ticks: 16,
        ..one_clock(Options::default())
    };
    let (seed, violation) =
        first_violation(Faults::default(), options).expect("a lease too long goes unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
    assert_eq!(violation.property, Property::LeaseSafety);
}

#[test]
fn the_lease_check_catches_a_leader_that_keeps_its_lease_after_handing_over() {
    let faults = Faults {
        lease_ignores_handover: true,
        ..Faults::default()
    };
    let (seed, violation) = first_violation(faults, one_clock(Options::default()))
        .expect("a lease kept after TimeoutNow goes unnoticed");
    eprintln!("caught at seed {seed}: {violation}");
    assert_eq!(violation.property, Property::LeaseSafety);
}
