//! CLUSTER INFO / NODES / MYID, CLUSTER.TRANSFER, READONLY and READWRITE: a cluster node's
//! state in Redis Cluster's shapes where they fit (one slot range, 0-16383, served by the
//! leader; followers shown as replicas of it), and leadership transfer for rolling restarts.

use std::sync::mpsc;
use std::time::Duration;

use flin_replication::Role;

use crate::cluster::driver::Input;
use crate::cluster::Cluster;
use crate::cmd::{is, shown};
use crate::context::{Call, Outcome};
use crate::frame::Frame;

/// How long CLUSTER.TRANSFER waits for the raft thread to take the request.
const TRANSFER_WAIT: Duration = Duration::from_secs(2);

fn cluster_of<'a>(call: &'a Call<'_, '_>) -> Result<&'a std::sync::Arc<Cluster>, Frame> {
    call.shared
        .store
        .cluster()
        .ok_or_else(|| Frame::error("ERR This instance has cluster support disabled"))
}

pub fn cluster(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let sub = args[1];
    if is(sub, "info") {
        return Ok(Frame::Bulk(info(cluster_of(call)?).into_bytes()));
    }
    if is(sub, "nodes") {
        return Ok(Frame::Bulk(nodes(cluster_of(call)?).into_bytes()));
    }
    if is(sub, "myid") {
        return Ok(Frame::bulk(cluster_of(call)?.id().to_string()));
    }
    Err(Frame::error(format!(
        "ERR unknown subcommand '{}'. Try CLUSTER INFO, CLUSTER NODES or CLUSTER MYID.",
        shown(sub)
    )))
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
    }
}

/// `CLUSTER INFO`: Redis's `key:value` lines (cluster_state, cluster_known_nodes,
/// cluster_size, cluster_current_epoch = the term), then raft's own: role, leader, commit,
/// applied and last index, and on the leader each follower's match index and lag.
pub fn info(cluster: &Cluster) -> String {
    let view = cluster.view();
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        out.push_str(key);
        out.push(':');
        out.push_str(&value);
        out.push_str("\r\n");
    };
    let state = if view.leader.is_some() { "ok" } else { "fail" };
    line("cluster_enabled", "1".into());
    line("cluster_state", state.into());
    line("cluster_slots_assigned", "16384".into());
    line(
        "cluster_known_nodes",
        cluster.options.members.len().to_string(),
    );
    line("cluster_size", "1".into());
    line("cluster_current_epoch", view.term.to_string());
    line("cluster_my_epoch", view.term.to_string());
    line("node_id", cluster.id().to_string());
    line("role", role_name(view.role).into());
    line("term", view.term.to_string());
    line(
        "leader_id",
        view.leader.map_or("none".into(), |id| id.to_string()),
    );
    line(
        "leader_addr",
        view.leader
            .and_then(|id| cluster.options.members.get(&id))
            .map_or("none".into(), |addr| addr.to_string()),
    );
    line("accepting_writes", u8::from(cluster.writable()).to_string());
    line("commit_index", view.commit.to_string());
    line("applied_index", view.applied.to_string());
    line("last_index", view.last_index.to_string());
    line("first_held_index", view.first_index.to_string());
    line("elections_won", view.elections_won.to_string());
    for (peer, matched) in &view.matches {
        line(&format!("follower_{peer}_match_index"), matched.to_string());
        line(
            &format!("follower_{peer}_lag"),
            view.last_index.saturating_sub(*matched).to_string(),
        );
    }
    out
}

/// `CLUSTER NODES`: one line per member in Redis's format: id, `ip:port@cport`, flags
/// (`myself`, `master` for the leader, `slave` otherwise), the leader's id for a follower or
/// `-`, ping and pong times (0), the term as config epoch, the link state, and the slots
/// (`0-16383`) on the leader's line.
pub fn nodes(cluster: &Cluster) -> String {
    let view = cluster.view();
    let mut out = String::new();
    for (&id, addr) in &cluster.options.members {
        let leads = view.leader == Some(id);
        let mut flags = Vec::new();
        if id == cluster.id() {
            flags.push("myself");
        }
        flags.push(if leads { "master" } else { "slave" });
        let master = match (leads, view.leader) {
            (false, Some(leader)) => leader.to_string(),
            _ => "-".into(),
        };
        let cluster_addr = cluster.options.cluster_addr(id);
        out.push_str(&format!(
            "{id} {addr}@{} {} {master} 0 0 {} connected{}\n",
            cluster_addr.port(),
            flags.join(","),
            view.term,
            if leads { " 0-16383" } else { "" }
        ));
    }
    out
}

/// `CLUSTER.TRANSFER <id>`: the leader hands leadership to `id` once its log has caught up
/// (raft's leadership transfer); writes are refused meanwhile. Answers once the raft thread
/// took the request, not when the transfer finished (CLUSTER INFO shows that).
pub fn transfer(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let cluster = cluster_of(call)?;
    let to: u64 = std::str::from_utf8(args[1])
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|id| cluster.options.members.contains_key(id))
        .ok_or_else(|| {
            Frame::error(format!(
                "ERR CLUSTER.TRANSFER: '{}' is not a member's node id",
                shown(args[1])
            ))
        })?;
    let (answer, answered) = mpsc::channel();
    let sent = cluster
        .wake
        .lock()
        .expect("cluster wake lock")
        .as_ref()
        .is_some_and(|wake| wake.send(Input::Transfer(to, answer)).is_ok());
    if !sent {
        return Err(Frame::error(
            "ERR CLUSTER.TRANSFER: the raft thread is not running",
        ));
    }
    match answered.recv_timeout(TRANSFER_WAIT) {
        Ok(Ok(())) => Ok(Frame::ok()),
        Ok(Err(reason)) => Err(Frame::error(format!("ERR CLUSTER.TRANSFER: {reason}"))),
        Err(_) => Err(Frame::error(
            "ERR CLUSTER.TRANSFER: the raft thread did not answer",
        )),
    }
}

/// READONLY: this connection may read a follower's own state (possibly stale).
pub fn readonly(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    cluster_of(call)?;
    call.session.readonly = true;
    Ok(Frame::ok())
}

/// READWRITE: back to redirected reads.
pub fn readwrite(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    cluster_of(call)?;
    call.session.readonly = false;
    Ok(Frame::ok())
}
