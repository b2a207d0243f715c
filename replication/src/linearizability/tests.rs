//! The checker's own tests: hand-written histories whose verdict is known, then generated ones.

use super::*;

type KvOperation = Operation<KvInput, KvOutput>;

fn check_kv(history: &[KvOperation]) -> Outcome<KvModel> {
    check(&KvModel, history, Limits::default())
}

fn get(client: u64, call_ns: u64, return_ns: u64, key: &str, value: Option<&str>) -> KvOperation {
    let output = KvOutput::value(value.map(str::as_bytes));
    Operation::completed(client, call_ns, KvInput::get(key), return_ns, output)
}

fn set(client: u64, call_ns: u64, return_ns: u64, key: &str, value: &str) -> KvOperation {
    let input = KvInput::set(key, value);
    Operation::completed(client, call_ns, input, return_ns, KvOutput::Done)
}

fn incr(client: u64, call_ns: u64, return_ns: u64, key: &str, new: i64) -> KvOperation {
    let output = KvOutput::Incremented(new);
    Operation::completed(client, call_ns, KvInput::incr(key), return_ns, output)
}

fn cas(
    client: u64,
    call_ns: u64,
    return_ns: u64,
    key: &str,
    (expected, new): (Option<&str>, &str),
    swapped: bool,
) -> KvOperation {
    let input = KvInput::compare_and_set(key, expected.map(str::as_bytes), new);
    Operation::completed(
        client,
        call_ns,
        input,
        return_ns,
        KvOutput::Swapped(swapped),
    )
}

fn expect_illegal(history: &[KvOperation]) -> Box<Illegal<KvModel>> {
    match check_kv(history) {
        Outcome::Illegal(illegal) => illegal,
        other => panic!("expected Illegal, got {other:?}"),
    }
}

fn expect_ok(history: &[KvOperation]) {
    match check_kv(history) {
        Outcome::Ok => {}
        Outcome::Illegal(illegal) => panic!("expected Ok, got\n{illegal}"),
        other => panic!("expected Ok, got {other:?}"),
    }
}

#[test]
fn an_empty_history_is_linearizable() {
    expect_ok(&[]);
}

#[test]
fn a_read_after_a_completed_write_sees_it() {
    expect_ok(&[set(1, 0, 10, "k", "a"), get(2, 20, 30, "k", Some("a"))]);
}

#[test]
fn a_stale_read_after_a_completed_write_is_illegal() {
    let history = [
        set(1, 0, 10, "k", "a"),
        set(1, 20, 30, "k", "b"),
        get(2, 40, 50, "k", Some("a")),
    ];
    let illegal = expect_illegal(&history);
    assert_eq!(illegal.part.0, b"k");
    assert_eq!(
        illegal.stuck.index, 2,
        "the read is the one that cannot be placed:\n{illegal}"
    );
    assert_eq!(illegal.linearized, 2);
    assert_eq!(illegal.state, KvState(Some(b"b".to_vec())));
    let text = illegal.to_string();
    assert!(text.contains(r#"GET "k" -> "a""#), "{text}");
    assert!(text.contains(r#"SET "k" "b""#), "{text}");
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in [None, Some("a")] {
        expect_ok(&[set(1, 0, 10, "k", "a"), get(2, 5, 15, "k", seen)]);
    }
}

#[test]
fn touching_intervals_are_concurrent() {
    // The read is called at the instant the write returns: it may still come first.
    expect_ok(&[set(1, 0, 10, "k", "a"), get(2, 10, 20, "k", None)]);
    expect_illegal(&[set(1, 0, 10, "k", "a"), get(2, 11, 20, "k", None)]);
}

#[test]
fn a_value_never_written_is_illegal() {
    let illegal = expect_illegal(&[set(1, 0, 10, "k", "a"), get(2, 5, 15, "k", Some("z"))]);
    assert_eq!(illegal.stuck.index, 1);
}

#[test]
fn concurrent_writes_may_be_seen_in_either_order() {
    let writes = [set(1, 0, 100, "k", "a"), set(2, 0, 100, "k", "b")];
    for (first, second) in [("a", "b"), ("b", "a")] {
        let mut history = writes.to_vec();
        history.push(get(3, 10, 20, "k", Some(first)));
        history.push(get(3, 30, 40, "k", Some(second)));
        history.push(get(4, 150, 160, "k", Some(second)));
        expect_ok(&history);
    }
}

#[test]
fn concurrent_writes_are_not_seen_to_flip_back() {
    let illegal = expect_illegal(&[
        set(1, 0, 100, "k", "a"),
        set(2, 0, 100, "k", "b"),
        get(3, 10, 20, "k", Some("a")),
        get(3, 30, 40, "k", Some("b")),
        get(3, 50, 60, "k", Some("a")),
    ]);
    assert_eq!(illegal.stuck.index, 4, "{illegal}");
}

#[test]
fn concurrent_incrs_return_distinct_values() {
    for (first, second) in [(1, 2), (2, 1)] {
        expect_ok(&[incr(1, 0, 10, "n", first), incr(2, 0, 10, "n", second)]);
    }
}

#[test]
fn a_lost_incr_update_is_illegal() {
    // Both read 0 and wrote 1: one increment was lost.
    expect_illegal(&[incr(1, 0, 10, "n", 1), incr(2, 0, 10, "n", 1)]);
    expect_illegal(&[
        incr(1, 0, 10, "n", 1),
        incr(2, 20, 30, "n", 2),
        get(3, 40, 50, "n", Some("1")),
    ]);
}

#[test]
fn incr_continues_from_a_set_value() {
    expect_ok(&[set(1, 0, 10, "n", "41"), incr(1, 20, 30, "n", 42)]);
    let refused = Operation::completed(1, 20, KvInput::incr("n"), 30, KvOutput::Refused);
    expect_ok(&[set(1, 0, 10, "n", "x"), refused.clone()]);
    expect_illegal(&[set(1, 0, 10, "n", "41"), refused]);
}

#[test]
fn one_of_two_concurrent_compare_and_sets_succeeds() {
    expect_ok(&[
        cas(1, 0, 10, "k", (None, "a"), true),
        cas(2, 0, 10, "k", (None, "b"), false),
        get(3, 20, 30, "k", Some("a")),
    ]);
}

#[test]
fn a_double_compare_and_set_success_is_illegal() {
    expect_illegal(&[
        cas(1, 0, 10, "k", (None, "a"), true),
        cas(2, 0, 10, "k", (None, "b"), true),
    ]);
}

/// The histories the real-process workload makes (`SET k v IFEQ old`, `SET k v NX`): a chain
/// of swaps each from the value the previous one left, mixed with blind writes.
#[test]
fn compare_and_set_chains_follow_the_value() {
    let chain = [
        set(1, 0, 10, "k", "a"),
        cas(2, 20, 30, "k", (Some("a"), "b"), true),
        cas(3, 25, 35, "k", (Some("a"), "c"), false),
        cas(1, 40, 50, "k", (Some("b"), "c"), true),
        get(2, 60, 70, "k", Some("c")),
    ];
    expect_ok(&chain);
    // A swap from a value overwritten before it was called (the deposed leader's view).
    expect_illegal(&[
        set(1, 0, 10, "k", "a"),
        set(2, 20, 30, "k", "b"),
        cas(3, 40, 50, "k", (Some("a"), "c"), true),
    ]);
    // A refusal although the value matched and nothing else ran (a lost write, or a stale
    // copy that still shows the key missing).
    expect_illegal(&[
        set(1, 0, 10, "k", "a"),
        cas(2, 20, 30, "k", (Some("a"), "b"), false),
    ]);
    expect_illegal(&[
        set(1, 0, 10, "k", "a"),
        cas(2, 20, 30, "k", (None, "b"), true),
    ]);
    // A swap of unknown outcome may have happened: a later read may see it or not.
    let lost = Operation::unknown(3, 20, KvInput::compare_and_set("k", Some(b"a"), "b"));
    expect_ok(&[
        set(1, 0, 10, "k", "a"),
        lost.clone(),
        get(2, 40, 50, "k", Some("b")),
    ]);
    expect_ok(&[
        set(1, 0, 10, "k", "a"),
        lost.clone(),
        get(2, 40, 50, "k", Some("a")),
    ]);
    expect_illegal(&[
        set(1, 0, 10, "k", "x"),
        lost,
        get(2, 40, 50, "k", Some("b")),
    ]);
}

#[test]
fn an_unknown_write_may_apply_late_or_never() {
    let write = Operation::unknown(1, 0, KvInput::set("k", "a"));
    // Never, so far.
    expect_ok(&[write.clone(), get(2, 100, 110, "k", None)]);
    // At once.
    expect_ok(&[write.clone(), get(2, 100, 110, "k", Some("a"))]);
    // Late: after a read that did not see it.
    expect_ok(&[
        write.clone(),
        get(2, 100, 110, "k", None),
        get(2, 200, 210, "k", Some("a")),
    ]);
    // But once seen it stays.
    expect_illegal(&[
        write.clone(),
        get(2, 100, 110, "k", Some("a")),
        get(2, 200, 210, "k", None),
    ]);
    // And it cannot apply before its call.
    let later = Operation::unknown(1, 20, KvInput::set("k", "a"));
    expect_illegal(&[get(2, 0, 10, "k", Some("a")), later]);
}

/// An unknown write that only it could have made visible, seen by a read, took effect before
/// that read returned: its return is placed there (exact), and a read that saw it before its
/// call is still illegal.
#[test]
fn an_unknown_write_seen_by_a_read_is_placed_before_that_read_returned() {
    let write = Operation::unknown(1, 0, KvInput::set("k", "v"));
    expect_ok(&[
        write.clone(),
        get(2, 10, 20, "k", Some("v")),
        set(3, 30, 40, "k", "w"),
        get(2, 50, 60, "k", Some("w")),
    ]);
    // Seen, then gone without another write: illegal, bounded or not.
    expect_illegal(&[
        write.clone(),
        get(2, 10, 20, "k", Some("v")),
        get(2, 30, 40, "k", None),
    ]);
    let later = Operation::unknown(1, 25, KvInput::set("k", "v"));
    expect_illegal(&[get(2, 10, 20, "k", Some("v")), later]);
    // Two writers of "v": no bound, and the later read may see the second.
    expect_ok(&[
        write,
        get(2, 10, 20, "k", Some("v")),
        set(3, 30, 40, "k", "w"),
        Operation::unknown(4, 45, KvInput::set("k", "v")),
        get(2, 50, 60, "k", Some("v")),
    ]);
    // A known write of "v" explains the first read, so the unknown one may take effect
    // after "w" (bounded by that read, it could not).
    expect_ok(&[
        set(1, 0, 10, "k", "v"),
        Operation::unknown(4, 5, KvInput::set("k", "v")),
        get(2, 20, 30, "k", Some("v")),
        set(3, 40, 50, "k", "w"),
        get(2, 60, 70, "k", Some("v")),
    ]);
}

/// An unknown write no read saw is left out first; when no order exists without it (here it
/// alone explains a compare-and-set that failed), the part is searched again with it.
#[test]
fn an_unseen_unknown_write_that_explains_a_failed_swap_is_searched_again() {
    let unseen = Operation::unknown(2, 20, KvInput::set("k", "z"));
    expect_ok(&[
        set(1, 0, 10, "k", "a"),
        unseen.clone(),
        cas(3, 30, 40, "k", (Some("a"), "b"), false),
    ]);
    // Without it the same swap must have succeeded.
    expect_illegal(&[
        set(1, 0, 10, "k", "a"),
        cas(3, 30, 40, "k", (Some("a"), "b"), false),
    ]);
    // Called after the swap returned, it cannot explain it.
    let late = Operation::unknown(2, 45, KvInput::set("k", "z"));
    expect_illegal(&[
        set(1, 0, 10, "k", "a"),
        cas(3, 30, 40, "k", (Some("a"), "b"), false),
        late,
    ]);
}

/// What a failover leaves on a key: tens of writes of unknown outcome in flight at once (one
/// seen by a later read, the others never), then a swap that succeeded and so saw none of
/// them take effect before it, and a tail of ordinary operations. Searched plainly, every
/// unknown write stays a candidate to the end of the history: the search tries every subset of
/// them before the swap (2^24 configurations) and runs out of its budget. With the rules the
/// unseen ones are left out, the seen one is placed before the read that saw it, and the
/// history is decided within the same budget.
#[test]
fn unknown_writes_left_by_a_failover_do_not_exhaust_the_budget() {
    let mut history = vec![set(0, 0, 10, "k", "a")];
    for client in 0..24u64 {
        let value = format!("lost{client}");
        history.push(Operation::unknown(
            client,
            20 + client,
            KvInput::set("k", value),
        ));
    }
    let seen = Operation::unknown(30, 25, KvInput::set("k", "late"));
    history.push(seen);
    history.push(cas(40, 100, 110, "k", (Some("a"), "b"), true));
    history.push(get(41, 200, 210, "k", Some("late")));
    let mut now = 300;
    for round in 0..200u64 {
        let value = format!("after{round}");
        history.push(set(round % 8, now, now + 15, "k", &value));
        history.push(get(round % 8 + 8, now + 10, now + 20, "k", Some(&value)));
        now += 30;
    }
    let limits = Limits {
        steps_max: 2_000_000,
        ..Limits::default()
    };
    match check(&KvModel, &history, limits) {
        Outcome::Ok => {}
        other => panic!("expected Ok within the budget, got {other:?}"),
    }
    let plain = Limits {
        unknown_write_rules: false,
        ..limits
    };
    match check(&KvModel, &history, plain) {
        Outcome::Timeout { .. } => {}
        other => panic!("expected the plain search to run out, got {other:?}"),
    }
    // A swap that saw a value nothing wrote: illegal, found by the full search after the
    // first one (without the unseen writes) found no order. (With the 24 lost writes that
    // full search is the plain one, and runs out: the rules decide legal histories sooner,
    // not illegal ones.)
    let mut broken = vec![set(0, 0, 10, "k", "a")];
    for client in 0..4u64 {
        let value = format!("lost{client}");
        broken.push(Operation::unknown(
            client,
            20 + client,
            KvInput::set("k", value),
        ));
    }
    broken.push(cas(40, 100, 110, "k", (Some("zz"), "b"), true));
    assert!(check(&KvModel, &broken, limits).is_illegal());
}

#[test]
fn an_unknown_incr_may_or_may_not_have_counted() {
    let lost = Operation::unknown(1, 0, KvInput::incr("n"));
    expect_ok(&[lost.clone(), incr(2, 100, 110, "n", 1)]);
    expect_ok(&[lost.clone(), incr(2, 100, 110, "n", 2)]);
    expect_illegal(&[lost, incr(2, 100, 110, "n", 3)]);
}

#[test]
fn lost_incrs_count_zero_to_all_times() {
    let lost = |client, call_ns| Operation::unknown(client, call_ns, KvInput::incr("n"));
    for seen in 1..=4 {
        let history = [
            lost(1, 0),
            lost(2, 5),
            lost(3, 50),
            incr(4, 40, 45, "n", seen),
        ];
        // The INCR returned before the third lost one was called: at most two came first.
        assert_eq!(check_kv(&history).is_ok(), seen <= 3, "{seen}");
    }
    // Many lost INCRs on one key are as cheap as one (they are interchangeable).
    let mut history: Vec<KvOperation> = (0..200).map(|client| lost(client, client)).collect();
    history.push(incr(999, 1000, 1010, "n", 101));
    let limits = Limits {
        steps_max: 100_000,
        ..Limits::default()
    };
    assert!(check(&KvModel, &history, limits).is_ok());
}

#[test]
fn unknown_reads_are_dropped() {
    // A GET with no reply constrains nothing, even one that overlaps everything.
    expect_ok(&[
        Operation::unknown(9, 0, KvInput::get("k")),
        set(1, 10, 20, "k", "a"),
        get(2, 30, 40, "k", Some("a")),
    ]);
}

#[test]
fn keys_are_checked_apart_and_the_illegal_one_is_named() {
    let history = [
        set(1, 0, 10, "a", "1"),
        set(2, 0, 10, "b", "1"),
        get(1, 20, 30, "a", Some("1")),
        get(2, 20, 30, "b", Some("2")),
    ];
    let illegal = expect_illegal(&history);
    assert_eq!(illegal.part.0, b"b");
    assert_eq!(illegal.stuck.index, 3);
    // What would be illegal for one register is fine for two keys.
    expect_ok(&[
        set(1, 0, 10, "a", "1"),
        set(1, 20, 30, "b", "2"),
        get(2, 40, 50, "a", Some("1")),
    ]);
}

#[test]
fn history_order_does_not_matter() {
    let mut history = vec![
        set(1, 0, 10, "k", "a"),
        set(1, 20, 30, "k", "b"),
        get(2, 40, 50, "k", Some("a")),
    ];
    history.reverse();
    expect_illegal(&history);
}

#[test]
fn a_step_budget_ends_the_search() {
    // Many concurrent INCRs whose answers are all wrong: every order is tried before giving up.
    let history: Vec<KvOperation> = (0..20)
        .map(|client| incr(client, 0, 10, "n", 100))
        .collect();
    let limits = Limits {
        steps_max: 10,
        ..Limits::default()
    };
    match check(&KvModel, &history, limits) {
        Outcome::Timeout { part, exhausted } => {
            assert_eq!(part.0, b"n");
            assert_eq!(exhausted, Exhausted::Steps);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[test]
fn a_hard_key_does_not_hide_an_illegal_one() {
    // Key "n" (legal, but 40 operations need more than 30 steps) runs out of steps; key "z",
    // after it, is still checked and found illegal.
    let mut history: Vec<KvOperation> = (1..=40)
        .map(|new| incr(1, new as u64 * 10, new as u64 * 10 + 5, "n", new))
        .collect();
    history.push(set(1, 0, 10, "z", "a"));
    history.push(get(2, 20, 30, "z", None));
    let limits = Limits {
        steps_max: 30,
        ..Limits::default()
    };
    match check(&KvModel, &history, limits) {
        Outcome::Illegal(illegal) => assert_eq!(illegal.part.0, b"z"),
        other => panic!("expected Illegal, got {other:?}"),
    }
    history.truncate(40);
    assert!(check_kv(&history).is_ok());
    assert!(matches!(
        check(&KvModel, &history, limits),
        Outcome::Timeout { .. }
    ));
}

#[test]
fn a_memory_budget_ends_the_search() {
    let history: Vec<KvOperation> = (0..20)
        .map(|client| incr(client, 0, 10, "n", client as i64 + 1))
        .collect();
    let limits = Limits {
        memo_bytes_max: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        check(&KvModel, &history, limits),
        Outcome::Timeout {
            exhausted: Exhausted::Memory,
            ..
        }
    ));
}

#[test]
#[should_panic(expected = "before its call")]
fn a_return_before_its_call_is_a_harness_bug() {
    check_kv(&[set(1, 10, 5, "k", "a")]);
}

mod brute_force;
mod generated;
