//! WAIT numreplicas timeout: Redis's wait for replicas. On a cluster's leader it answers how
//! many followers hold every entry in the leader's log when WAIT ran (a superset of this
//! connection's writes: a write is only answered once a majority holds it, so one follower
//! always does by then), waiting until `numreplicas` do or `timeout` milliseconds pass (0:
//! no limit). A lone node has no replicas: 0, at once when 0 were asked for, else after the
//! timeout, as a Redis master without replicas. A follower refuses it as a Redis replica does.
//! The wait parks the connection (the event loop's `Action::Park`); the raft thread rings its
//! mailbox when a follower's match index moves (`Cluster::wake_on_ack`, asked before each
//! look, so a move between the look and the park still rings), and it looks again then, or
//! every `POLL_MS` at the latest.

use crate::cluster::Cluster;
use crate::context::{Call, Outcome, Session, Shared};
use crate::frame::Frame;
use crate::queue::session::ReplyTarget;

/// How often a parked WAIT on a cluster's leader looks at its followers' match indexes if
/// nothing rang it (the raft thread rings it when one moves: this is the safety net).
const POLL_MS: u64 = 100;

/// A WAIT that has not reached its count yet.
#[derive(Debug)]
pub struct Waiting {
    /// The leader's last index when WAIT ran (0 on a lone node: nothing to count).
    index: u64,
    replicas: u64,
    /// Wall-clock milliseconds; `None`: no timeout.
    deadline_ms: Option<u64>,
    pub target: ReplyTarget,
}

pub fn wait(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let number = |arg: &[u8]| -> Result<i64, Frame> {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Frame::error("ERR value is not an integer or out of range"))
    };
    let replicas = number(args[1])?.max(0) as u64;
    let timeout_ms = number(args[2])
        .map_err(|_| Frame::error("ERR timeout is not an integer or out of range"))?;
    if timeout_ms < 0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    let cluster = call.shared.store.cluster();
    let index = match cluster {
        Some(cluster) if !cluster.writable() => {
            return Err(Frame::error(
                "ERR WAIT cannot be used with replica instances (this node is not the leader)",
            ));
        }
        Some(cluster) => {
            // Before the first look: a follower that answers after it still rings.
            cluster.wake_on_ack(call.session.queue.mailbox.clone());
            cluster.view().last_index
        }
        None => 0,
    };
    let acked = acknowledged(cluster.map(|c| &**c), index);
    if acked >= replicas || call.is_in_transaction() {
        return Ok(Frame::Integer(acked as i64));
    }
    call.session.waiting = Some(Waiting {
        index,
        replicas,
        deadline_ms: (timeout_ms > 0).then(|| now_ms().saturating_add(timeout_ms as u64)),
        target: ReplyTarget::Resp,
    });
    // Not sent: the connection parks, and `look_again` answers.
    Ok(Frame::Null)
}

/// The followers whose match index is at `index` or past it (none on a lone node).
fn acknowledged(cluster: Option<&Cluster>, index: u64) -> u64 {
    let Some(cluster) = cluster else {
        return 0;
    };
    let view = cluster.view();
    view.matches
        .iter()
        .filter(|(id, matched)| **id != cluster.id() && **matched >= index)
        .count() as u64
}

/// When a parked WAIT should be looked at next: its deadline, or sooner on a cluster, where
/// the count can grow.
pub fn next_look_ms(shared: &Shared, waiting: &Waiting) -> Option<u64> {
    match shared.store.cluster() {
        Some(_) => {
            let poll = now_ms().saturating_add(POLL_MS);
            Some(
                waiting
                    .deadline_ms
                    .map_or(poll, |deadline| deadline.min(poll)),
            )
        }
        None => waiting.deadline_ms,
    }
}

/// A parked WAIT's answer if it has one now (its count reached, its deadline passed, or the
/// node no longer leads: then the count it has), `None` to keep waiting.
pub fn look_again(shared: &Shared, session: &Session) -> Option<Frame> {
    let waiting = session.waiting.as_ref()?;
    let cluster = shared.store.cluster().map(|c| &**c);
    if let Some(cluster) = cluster {
        // Before the look, as in `wait`; a spare ring after the answer only wakes the loop.
        cluster.wake_on_ack(session.queue.mailbox.clone());
    }
    let acked = acknowledged(cluster, waiting.index);
    let done = acked >= waiting.replicas
        || waiting
            .deadline_ms
            .is_some_and(|deadline| now_ms() >= deadline)
        || cluster.is_some_and(|cluster| !cluster.writable());
    done.then_some(Frame::Integer(acked as i64))
}

/// The event loop's parked deadlines run on the system clock.
fn now_ms() -> u64 {
    use flin_net::Clock;
    flin_net::SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;

    /// A lone node has no replicas: WAIT 0 answers 0 at once; WAIT 1 parks until its timeout
    /// and then answers 0; bad arguments are refused as Redis refuses them.
    #[test]
    fn a_lone_node_waits_out_the_timeout_and_counts_no_replica() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET k v"), ok());
        assert_eq!(h.run("WAIT 0 0"), int(0));
        assert!(h.session.waiting.is_none());
        h.run("WAIT 1 150");
        assert!(h.session.waiting.is_some(), "parked");
        assert_eq!(super::look_again(&h.shared, &h.session), None);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(super::look_again(&h.shared, &h.session), Some(int(0)));
        h.session.waiting = None;
        assert_eq!(
            h.run("WAIT x 0"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("WAIT 1 -1"), err("ERR timeout is negative"));
        // Inside a transaction it answers at once, as in Redis.
        h.run("MULTI");
        h.run("WAIT 1 0");
        assert_eq!(h.run("EXEC"), crate::frame::Frame::Array(vec![int(0)]));
        assert!(h.session.waiting.is_none());
    }
}
