//! CLUSTER INFO / NODES / MYID / SLOTS / SHARDS / KEYSLOT, ROLE, CLUSTER.TRANSFER, CLUSTER.ADD / CLUSTER.REMOVE, READONLY and
//! READWRITE: a cluster node's state in Redis Cluster's shapes where they fit (one slot range,
//! 0-16383, served by the leader; followers shown as replicas of it), leadership transfer for
//! rolling restarts, and membership changes, one server at a time, to replace a dead node.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flin_replication::{ConfChange, ConfChangeKind, NodeId, Role};

use crate::cluster::driver::Input;
use crate::cluster::{Cluster, Contact, View};
use crate::cmd::{is, shown};
use crate::context::{Call, Outcome};
use crate::frame::Frame;

/// How long CLUSTER.TRANSFER waits for the raft thread to take the request.
const TRANSFER_WAIT: Duration = Duration::from_secs(2);
/// How long CLUSTER.ADD / CLUSTER.REMOVE wait for the change to be applied.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

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
    if is(sub, "slots") {
        return Ok(slots(cluster_of(call)?));
    }
    if is(sub, "shards") {
        return Ok(shards(cluster_of(call)?));
    }
    if is(sub, "keyslot") {
        cluster_of(call)?;
        return Ok(Frame::Integer(i64::from(crate::cluster::slot::key_slot(
            args[2],
        ))));
    }
    Err(Frame::error(format!(
        "ERR unknown subcommand '{}'. Try CLUSTER INFO, NODES, MYID, SLOTS, SHARDS or KEYSLOT.",
        shown(sub)
    )))
}

/// The one shard as Redis Cluster clients read it: the leader, then the other voters whose
/// client address this node knows, each as its address and id. Empty while no leader is
/// known (a client then has no slot covered and asks again, as during a Redis failover).
fn shard_nodes(cluster: &Cluster) -> Vec<(u64, SocketAddr)> {
    let view = cluster.view();
    let Some(leader) = view.leader else {
        return Vec::new();
    };
    let others = view.voters.iter().copied().filter(|&id| id != leader);
    std::iter::once(leader)
        .chain(others)
        .filter_map(|id| Some((id, cluster.address(id)?)))
        .collect()
}

/// The one slot range, 0-16383, as a start and an end.
fn every_slot() -> Vec<Frame> {
    vec![
        Frame::Integer(0),
        Frame::Integer(i64::from(crate::cluster::slot::SLOTS - 1)),
    ]
}

/// `CLUSTER SLOTS`: one range, 0-16383, served by the leader, the other voters as its
/// replicas: `[[0, 16383, [ip, port, id], [ip, port, id]...]]` (Redis's shape; a client
/// that reads from replicas sends them READONLY, which a follower honours).
fn slots(cluster: &Cluster) -> Frame {
    let nodes = shard_nodes(cluster);
    if nodes.is_empty() {
        return Frame::Array(Vec::new());
    }
    let mut range = every_slot();
    range.extend(nodes.into_iter().map(|(id, addr)| {
        Frame::Array(vec![
            Frame::bulk(addr.ip().to_string()),
            Frame::Integer(i64::from(addr.port())),
            Frame::bulk(id.to_string()),
        ])
    }));
    Frame::Array(vec![Frame::Array(range)])
}

/// `CLUSTER SHARDS` (Redis 7): the one shard, its slots `[0, 16383]` and its nodes, each a
/// map of id, port, ip, endpoint, role (`master` for the leader, `replica`), replication
/// offset (on the leader: each follower's match index and its own last index; elsewhere 0
/// for the others) and health (`health`).
fn shards(cluster: &Cluster) -> Frame {
    let nodes = shard_nodes(cluster);
    if nodes.is_empty() {
        return Frame::Array(Vec::new());
    }
    let view = cluster.view();
    let key = |name: &str| Frame::bulk(name);
    let nodes = nodes
        .into_iter()
        .map(|(id, addr)| {
            let leads = view.leader == Some(id);
            let offset = match view.matches.get(&id) {
                Some(matched) => *matched,
                None if id == cluster.id() => view.last_index,
                None => 0,
            };
            Frame::Map(vec![
                (key("id"), Frame::bulk(id.to_string())),
                (key("port"), Frame::Integer(i64::from(addr.port()))),
                (key("ip"), Frame::bulk(addr.ip().to_string())),
                (key("endpoint"), Frame::bulk(addr.ip().to_string())),
                (key("role"), key(if leads { "master" } else { "replica" })),
                (key("replication-offset"), Frame::Integer(offset as i64)),
                (key("health"), key(health(cluster, &view, id))),
            ])
        })
        .collect();
    Frame::Array(vec![Frame::Map(vec![
        (key("slots"), Frame::Array(every_slot())),
        (key("nodes"), Frame::Array(nodes)),
    ])])
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
        (view.voters.len() + view.learners.len()).to_string(),
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
            .and_then(|id| cluster.address(id))
            .map_or("none".into(), |addr| addr.to_string()),
    );
    let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    line("voters", ids(&view.voters));
    line("learners", ids(&view.learners));
    line("accepting_writes", u8::from(cluster.writable()).to_string());
    line("serving_reads", u8::from(cluster.readable()).to_string());
    line("commit_index", view.commit.to_string());
    line("applied_index", view.applied.to_string());
    line("last_index", view.last_index.to_string());
    line("first_held_index", view.first_index.to_string());
    line("elections_won", view.elections_won.to_string());
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    line(
        "snapshots_sent",
        counter(&cluster.snapshots_sent).to_string(),
    );
    line(
        "snapshot_bytes_sent",
        counter(&cluster.snapshot_bytes_sent).to_string(),
    );
    line(
        "snapshot_installed_index",
        counter(&cluster.snapshot_installed_index).to_string(),
    );
    for (peer, matched) in &view.matches {
        line(&format!("follower_{peer}_match_index"), matched.to_string());
        line(
            &format!("follower_{peer}_lag"),
            view.last_index.saturating_sub(*matched).to_string(),
        );
        if let Some(at) = view.heard.get(peer) {
            line(
                &format!("follower_{peer}_heard_ms_ago"),
                at.elapsed().as_millis().to_string(),
            );
        }
    }
    out
}

/// On the leader: the other voters it heard from lately (`Contact::Live`) whose client
/// address it knows, each with its match index (0 before the first answer) and how long ago
/// it last answered, as INFO and ROLE list connected replicas.
fn replicas(cluster: &Cluster, view: &crate::cluster::View) -> Vec<(SocketAddr, u64, Duration)> {
    view.voters
        .iter()
        .filter_map(|&id| {
            let Contact::Live(ago) = cluster.contact(view, id) else {
                return None;
            };
            let offset = view.matches.get(&id).copied().unwrap_or(0);
            Some((cluster.address(id)?, offset, ago))
        })
        .collect()
}

/// INFO's `# Replication` section on a cluster node, in Redis's fields: the leader is
/// `role:master` with a `slaveN:ip=...,port=...,state=online,offset=<match index>,lag=<s>`
/// line per other voter heard from within `SILENT_TICKS_MAX` ticks (`lag`: whole seconds
/// since its last answer, as Redis counts since a replica's last ACK), and
/// `master_repl_offset` its last index; a follower is `role:slave` with the leader's address
/// (`master_link_status:down` while no leader is known or it has gone silent) and its applied
/// index as `slave_repl_offset`, with `master_last_io_seconds_ago`. Offsets are raft indexes,
/// not bytes as in Redis.
pub fn replication_info(cluster: &Cluster, line: &mut dyn FnMut(&str, &dyn std::fmt::Display)) {
    let view = cluster.view();
    if view.leader == Some(cluster.id()) {
        line("role", &"master");
        let replicas = replicas(cluster, &view);
        line("connected_slaves", &replicas.len());
        for (n, (addr, offset, ago)) in replicas.iter().enumerate() {
            line(
                &format!("slave{n}"),
                &format_args!(
                    "ip={},port={},state=online,offset={offset},lag={}",
                    addr.ip(),
                    addr.port(),
                    ago.as_secs()
                ),
            );
        }
        line("master_repl_offset", &view.last_index);
        return;
    }
    line("role", &"slave");
    match view.leader.and_then(|id| Some((id, cluster.address(id)?))) {
        Some((id, addr)) => {
            line("master_host", &addr.ip());
            line("master_port", &addr.port());
            let contact = cluster.contact(&view, id);
            let up = matches!(contact, Contact::Live(_));
            line("master_link_status", &if up { "up" } else { "down" });
            if let Contact::Live(ago) | Contact::Silent(Some(ago)) = contact {
                line("master_last_io_seconds_ago", &ago.as_secs());
            }
        }
        None => {
            line("master_host", &"?");
            line("master_port", &0);
            line("master_link_status", &"down");
        }
    }
    line("slave_repl_offset", &view.applied);
    line("slave_read_only", &1);
    line("connected_slaves", &0);
    line("master_repl_offset", &view.last_index);
}

/// `ROLE`, in Redis's shapes: a lone node or a cluster leader is `["master", <last index>,
/// [[ip, port, offset]...]]` (each other voter heard from lately whose address it knows, with its match index;
/// port and offset as bulk strings, as Redis sends them); a follower is `["slave", <leader's
/// ip>, <port>, "connected", <applied index>]`, or `"connecting"` with ip `?` and port 0
/// while no leader is known. Offsets are raft indexes (a lone node's: the log's last seq).
pub fn role(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let Some(cluster) = call.shared.store.cluster() else {
        let last = call.shared.store.reader().stats().last_seq;
        return Ok(Frame::Array(vec![
            Frame::bulk("master"),
            Frame::Integer(last as i64),
            Frame::Array(Vec::new()),
        ]));
    };
    let view = cluster.view();
    if view.leader == Some(cluster.id()) {
        let replicas = replicas(cluster, &view)
            .into_iter()
            .map(|(addr, offset, _)| {
                Frame::Array(vec![
                    Frame::bulk(addr.ip().to_string()),
                    Frame::bulk(addr.port().to_string()),
                    Frame::bulk(offset.to_string()),
                ])
            })
            .collect();
        return Ok(Frame::Array(vec![
            Frame::bulk("master"),
            Frame::Integer(view.last_index as i64),
            Frame::Array(replicas),
        ]));
    }
    let (ip, port, state) = match view.leader.and_then(|id| cluster.address(id)) {
        Some(addr) => (addr.ip().to_string(), addr.port(), "connected"),
        None => ("?".to_string(), 0, "connecting"),
    };
    Ok(Frame::Array(vec![
        Frame::bulk("slave"),
        Frame::bulk(ip),
        Frame::Integer(i64::from(port)),
        Frame::bulk(state),
        Frame::Integer(view.applied as i64),
    ]))
}

/// Whether this node expects to hear from `id`: a leader from every member, a follower from
/// its leader (followers do not talk to each other).
fn expects(cluster: &Cluster, view: &View, id: NodeId) -> bool {
    view.leader == Some(cluster.id()) || view.leader == Some(id)
}

/// A node's health in CLUSTER SHARDS: `failed` if this node expects to hear from it
/// (`expects`) and has not within `SILENT_TICKS_MAX` ticks, else `online` (a follower
/// reports the other followers, which it does not hear from, as `online`).
pub(crate) fn health(cluster: &Cluster, view: &View, id: NodeId) -> &'static str {
    match cluster.contact(view, id) {
        Contact::Silent(_) if expects(cluster, view, id) => "failed",
        _ => "online",
    }
}

/// `CLUSTER NODES`: one line per member (voters, then learners) in Redis's format: id,
/// `ip:port@cport`, flags (`myself`, `master` for the leader, `slave` otherwise, and
/// `learner` for a learner, `fail?` for a node this one expects to hear from and has not
/// within `SILENT_TICKS_MAX` ticks), the leader's id for a follower or `-`, ping-sent (0) and
/// pong-recv (the Unix time in ms of its last message to this node, 0 if none or unknown),
/// the term as config epoch, the link state (`disconnected` for a `fail?` node), and the slots
/// (`0-16383`) on the leader's line.
pub fn nodes(cluster: &Cluster) -> String {
    let view = cluster.view();
    let mut out = String::new();
    let members = view.voters.iter().chain(&view.learners).copied();
    for id in members {
        let Some(addr) = cluster.address(id) else {
            continue;
        };
        let leads = view.leader == Some(id);
        let mut flags = Vec::new();
        if id == cluster.id() {
            flags.push("myself");
        }
        flags.push(if leads { "master" } else { "slave" });
        if view.learners.contains(&id) {
            flags.push("learner");
        }
        let contact = cluster.contact(&view, id);
        let down = matches!(contact, Contact::Silent(_)) && expects(cluster, &view, id);
        if down {
            flags.push("fail?");
        }
        let master = match (leads, view.leader) {
            (false, Some(leader)) => leader.to_string(),
            _ => "-".into(),
        };
        let pong_recv = view.heard.get(&id).map_or(0, |at| {
            SystemTime::now()
                .checked_sub(at.elapsed())
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |at| at.as_millis())
        });
        out.push_str(&format!(
            "{id} {addr}@{} {} {master} 0 {pong_recv} {} {}{}\n",
            addr.port()
                .saturating_add(crate::cluster::transport::CLUSTER_PORT_OFFSET),
            flags.join(","),
            view.term,
            if down { "disconnected" } else { "connected" },
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
        .filter(|id| cluster.view().voters.contains(id))
        .ok_or_else(|| {
            Frame::error(format!(
                "ERR CLUSTER.TRANSFER: '{}' is not a voter's node id",
                shown(args[1])
            ))
        })?;
    let (answer, answered) = mpsc::channel();
    let sent = ask_raft(cluster, Input::Transfer(to, answer));
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

/// `CLUSTER.ADD <id> <ip:port>`: adds node `id`, whose clients connect to `ip:port` (its
/// cluster port is that port + 10000), as a learner; the leader promotes it to voter by
/// itself once its log has caught up. Answers once the addition is applied (committed).
pub fn add(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let node = node_id("CLUSTER.ADD", args[1])?;
    let addr: SocketAddr = std::str::from_utf8(args[2])
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|addr: &SocketAddr| {
            addr.port()
                .checked_add(crate::cluster::transport::CLUSTER_PORT_OFFSET)
                .is_some()
        })
        .ok_or_else(|| {
            Frame::error(format!(
                "ERR CLUSTER.ADD: '{}' is not <ip>:<port> with room for its cluster port (+10000)",
                shown(args[2])
            ))
        })?;
    let change = ConfChange {
        kind: ConfChangeKind::AddLearner,
        node,
    };
    change_membership(call, "CLUSTER.ADD", change, Some(addr))
}

/// `CLUSTER.REMOVE <id>`: removes node `id` (a voter or a learner). Answers once the removal
/// is applied (committed).
pub fn remove(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let node = node_id("CLUSTER.REMOVE", args[1])?;
    let change = ConfChange {
        kind: ConfChangeKind::RemoveNode,
        node,
    };
    change_membership(call, "CLUSTER.REMOVE", change, None)
}

fn node_id(command: &str, arg: &[u8]) -> Result<u64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|&id: &u64| id > 0)
        .ok_or_else(|| {
            Frame::error(format!(
                "ERR {command}: '{}' is not a node id (a positive integer)",
                shown(arg)
            ))
        })
}

/// Asks the raft thread for `change` (on the leader; elsewhere the redirect) and waits until
/// it is applied.
fn change_membership(
    call: &mut Call<'_, '_>,
    command: &str,
    change: ConfChange,
    addr: Option<SocketAddr>,
) -> Outcome {
    let cluster = cluster_of(call)?;
    if !cluster.writable() {
        return Err(cluster.redirect());
    }
    let (answer, answered) = mpsc::channel();
    let sent = ask_raft(cluster, Input::Change(change, addr, answer));
    if !sent {
        return Err(Frame::error(format!(
            "ERR {command}: the raft thread is not running"
        )));
    }
    match answered.recv_timeout(CHANGE_WAIT) {
        Ok(Ok(_)) => Ok(Frame::ok()),
        Ok(Err(reason)) => Err(Frame::error(format!("ERR {command}: {reason}"))),
        Err(_) => Err(Frame::error(format!(
            "ERR {command}: the change was not applied within {} s (no majority?); CLUSTER INFO shows whether it was",
            CHANGE_WAIT.as_secs()
        ))),
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

/// Hands `input` to the raft thread; false if it is not running.
fn ask_raft(cluster: &Cluster, input: Input) -> bool {
    cluster
        .wake
        .lock()
        .expect("cluster wake lock")
        .as_ref()
        .is_some_and(|wake| wake.send(input))
}
