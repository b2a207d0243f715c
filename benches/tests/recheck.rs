//! A real history the checker once left undecided, checked again: key "k0.10" of
//! `flin-clustertest --faults 100 --seed 20261220` (2026-12-06, 683 operations, 74 of unknown
//! outcome: one client's burst of writes and INCRs whose replies were lost across a failover,
//! up to 78 operations in flight). Searched plainly it ran out of its 50 M steps; with the
//! rules for unknown writes of values only they write (the checker's module doc, "Unknown
//! outcomes") it is decided at once. Saved by the tool (`clustertest::history`).

use flin_benches::clustertest::history;
use flin_replication::linearizability::{check, KvModel, Limits, Outcome};

fn saved() -> Vec<flin_benches::clustertest::workload::KvOperation> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/undecided-k0.10-seed20261220.history"
    );
    history::decode(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_key_left_undecided_by_a_fault_run_is_decided_with_the_rules_for_unknown_writes() {
    let history = saved();
    assert_eq!(history.len(), 683);
    assert_eq!(
        history.iter().filter(|op| op.returned.is_none()).count(),
        74
    );
    let limits = Limits {
        steps_max: 1_000_000,
        ..Limits::default()
    };
    match check(&KvModel, &history, limits) {
        Outcome::Ok => {}
        other => panic!("expected linearizable, got {other:?}"),
    }
    let plain = Limits {
        unknown_write_rules: false,
        ..limits
    };
    assert!(matches!(
        check(&KvModel, &history, plain),
        Outcome::Timeout { .. }
    ));
}
