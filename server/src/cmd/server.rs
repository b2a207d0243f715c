//! Server commands: DBSIZE FLUSHDB FLUSHALL TIME INFO CONFIG COMMAND CLIENT.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use flin_engine::Durability;
use flin_net::resp::RespVersion;

use super::connection::REDIS_COMPAT_VERSION;
use super::{
    commands, int_arg, is, shown, syntax_error, text, unknown_subcommand, wrong_arity, Command,
};
use crate::context::{Call, Outcome, KV};
use crate::frame::Frame;
use crate::glob;
use crate::kv::KvWrite;

/// Keys deleted per engine transaction by FLUSHDB/FLUSHALL, so one flush of a huge database
/// does not hold the writer lock (or build one record) for all of it.
const FLUSH_BATCH_KEYS: usize = 1024;

pub fn dbsize(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    Ok(Frame::Integer(call.read().len(KV) as i64))
}

/// FLUSHDB and FLUSHALL (one database). Outside EXEC it deletes in batches of
/// `FLUSH_BATCH_KEYS` (1,024), each atomic, so the flush as a whole is not: a concurrent writer's
/// key may survive. Inside EXEC it is part of the one transaction.
pub fn flushall(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    match args {
        [_] => {}
        [_, mode] if is(mode, "ASYNC") || is(mode, "SYNC") => {}
        _ => return Err(syntax_error()),
    }
    loop {
        let mut deleted_this_pass = 0;
        let mut cursor = 0;
        loop {
            let (next, page) = call.read().scan(KV, cursor, FLUSH_BATCH_KEYS)?;
            if !page.is_empty() {
                call.write(|txn| {
                    for key in &page {
                        deleted_this_pass += txn.delete(key)? as usize;
                    }
                    Ok(())
                })?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // Inside EXEC the deletes are only queued, so another pass would find the same keys.
        // Outside, deletes during a scan may move keys the scan had not reached yet: go again
        // until a pass finds nothing.
        if call.is_in_transaction() {
            let written = call.keys_written_in_transaction();
            call.write(|txn| {
                for key in &written {
                    txn.delete(key)?;
                }
                Ok(())
            })?;
            return Ok(Frame::ok());
        }
        if deleted_this_pass == 0 {
            // Keys that expired but were not reclaimed yet are invisible to the scan, yet
            // DBSIZE counts them: drop them too, so a flushed database is empty (DBSIZE 0).
            call.read().reclaim_expired();
            return Ok(Frame::ok());
        }
    }
}

pub fn time(_call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ]))
}

const INFO_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

pub fn info(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let asked: Vec<String> = args[1..]
        .iter()
        .map(|a| text(a).to_ascii_lowercase())
        .collect();
    let everything = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let mut out = String::new();
    for section in INFO_SECTIONS {
        if everything || asked.iter().any(|s| s == section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            write_info_section(call, section, &mut out);
        }
    }
    Ok(Frame::Verbatim(out))
}

fn write_info_section(call: &Call<'_, '_>, section: &str, out: &mut String) {
    let shared = call.shared;
    let options = &shared.options;
    let stats = shared.store.reader().stats();
    let mut title = section.to_string();
    title[..1].make_ascii_uppercase();
    let _ = write!(out, "# {title}\r\n");
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "{key}:{value}\r\n");
    };
    match section {
        "server" => {
            line("redis_version", &REDIS_COMPAT_VERSION);
            line("flin_version", &env!("CARGO_PKG_VERSION"));
            let mode = match shared.store.cluster() {
                Some(_) => "cluster",
                None => "standalone",
            };
            line("redis_mode", &mode);
            line("os", &std::env::consts::OS);
            line("arch_bits", &(usize::BITS));
            line("process_id", &std::process::id());
            line("run_id", &options.node_id);
            line("node_id", &options.node_id);
            line("tcp_port", &options.port);
            let uptime = shared.started.elapsed().as_secs();
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
        }
        "clients" => {
            line(
                "connected_clients",
                &shared.counters.connected_clients.load(Ordering::Relaxed),
            );
            line("maxclients", &options.max_clients);
            line("blocked_clients", &0);
        }
        "memory" => {
            line("used_memory", &stats.index_bytes);
            line("used_memory_human", &human_bytes(stats.index_bytes));
            line("flin_index_bytes", &stats.index_bytes);
            line("flin_log_bytes", &stats.log_bytes);
            line("flin_dead_bytes", &stats.dead_bytes);
            line("maxmemory", &0);
            line("maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            line("loading", &0);
            line("aof_enabled", &(options.data.is_some() as u8));
            line("rdb_changes_since_last_save", &0);
            line("flin_fsync", &fsync_name(options.fsync));
            line("flin_segments", &stats.segments);
            line("flin_last_seq", &stats.last_seq);
            line("flin_durable_seq", &stats.durable_seq);
            line("flin_flushes", &stats.flushes);
            line("flin_compactions", &stats.compactions);
            line(
                "flin_compaction_reclaimed_bytes",
                &stats.compaction_reclaimed_bytes,
            );
            line(
                "flin_poisoned",
                &(shared.store.reader().poisoned().is_some() as u8),
            );
        }
        "stats" => {
            let counters = &shared.counters;
            line(
                "total_connections_received",
                &counters.connections_received.load(Ordering::Relaxed),
            );
            line(
                "total_commands_processed",
                &shared.recorder.processed_total(),
            );
            line("rejected_connections", &shared.io.connections_refused());
            line("expired_keys", &stats.expired_keys_reclaimed);
            line("flin_writes", &stats.writes);
        }
        "replication" => match shared.store.cluster() {
            Some(cluster) => crate::cmd::cluster::replication_info(cluster, &mut line),
            None => {
                line("role", &"master");
                line("connected_slaves", &0);
                line("master_repl_offset", &stats.last_seq);
            }
        },
        "cluster" => line(
            "cluster_enabled",
            &u8::from(shared.store.cluster().is_some()),
        ),
        "keyspace" => {
            let keys = shared.store.reader().len(KV);
            if keys > 0 {
                // The engine does not count keys with a TTL: expires is reported as 0.
                line("db0", &format_args!("keys={keys},expires=0,avg_ttl=0"));
            }
        }
        _ => {}
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

fn fsync_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Always => "always",
        Durability::EverySec => "everysec",
        Durability::No => "no",
    }
}

/// CONFIG parameters Flin reports (what redis-cli, redis-benchmark and client libraries ask).
fn config_parameters(call: &Call<'_, '_>) -> Vec<(&'static str, String)> {
    let options = &call.shared.options;
    vec![
        ("save", String::new()),
        (
            "appendonly",
            if options.data.is_some() { "yes" } else { "no" }.into(),
        ),
        ("appendfsync", fsync_name(options.fsync).into()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", options.max_clients.to_string()),
        ("port", options.port.to_string()),
        ("bind", options.bind.to_string()),
        ("databases", "1".into()),
        (
            "dir",
            options
                .data
                .as_ref()
                .map_or(String::new(), |d| d.display().to_string()),
        ),
        (
            "requirepass",
            options.requirepass.as_deref().map_or(String::new(), text),
        ),
        ("timeout", "0".into()),
        (
            "proto-max-bulk-len",
            crate::kv::STRING_BYTES_MAX.to_string(),
        ),
        ("io-threads", options.threads.max(1).to_string()),
    ]
}

pub fn config(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let sub = text(args[1]).to_ascii_lowercase();
    match sub.as_str() {
        "get" => {
            if args.len() < 3 {
                return Err(wrong_arity("config|get"));
            }
            let parameters = config_parameters(call);
            let pairs = parameters
                .into_iter()
                .filter(|(name, _)| {
                    args[2..]
                        .iter()
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(name, value)| (Frame::bulk(name), Frame::Bulk(value.into_bytes())))
                .collect();
            Ok(Frame::Map(pairs))
        }
        "set" => {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Err(wrong_arity("config|set"));
            }
            let parameters = config_parameters(call);
            for pair in args[2..].chunks(2) {
                let name = text(pair[0]).to_ascii_lowercase();
                let Some((_, current)) = parameters.iter().find(|(known, _)| *known == name) else {
                    return Err(Frame::error(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        shown(pair[0])
                    )));
                };
                // Settings are fixed at startup: setting the current value is fine, changing
                // it is refused rather than silently ignored.
                if current.as_bytes() != pair[1] {
                    return Err(Frame::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - Flin does not change this setting at runtime"
                    )));
                }
            }
            Ok(Frame::ok())
        }
        "resetstat" if args.len() == 2 => Ok(Frame::ok()),
        "resetstat" => Err(wrong_arity("config|resetstat")),
        _ => Err(unknown_subcommand(args[1], "CONFIG")),
    }
}

fn command_info(command: &Command) -> Frame {
    let category = match command.group {
        "generic" => "@keyspace",
        "string" => "@string",
        "bitmap" => "@bitmap",
        "connection" => "@connection",
        "transactions" => "@transaction",
        _ => "@admin",
    };
    Frame::Array(vec![
        Frame::bulk(command.name),
        Frame::Integer(command.arity),
        Frame::Set(
            command
                .flags
                .iter()
                .map(|f| Frame::Simple((*f).into()))
                .collect(),
        ),
        Frame::Integer(command.keys.0),
        Frame::Integer(command.keys.1),
        Frame::Integer(command.keys.2),
        Frame::Set(vec![Frame::Simple(category.into())]),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

fn command_docs(command: &Command) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(command.summary)),
        (Frame::bulk("since"), Frame::bulk("1.0.0")),
        (Frame::bulk("group"), Frame::bulk(command.group)),
    ])
}

pub fn command(_call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let Some(sub) = args.get(1) else {
        return Ok(Frame::Array(commands().map(command_info).collect()));
    };
    let named = || args[2..].iter().map(|name| super::lookup(name));
    match text(sub).to_ascii_lowercase().as_str() {
        "count" if args.len() == 2 => Ok(Frame::Integer(commands().count() as i64)),
        "list" => Ok(Frame::Array(
            commands().map(|c| Frame::bulk(c.name)).collect(),
        )),
        "info" => Ok(Frame::Array(if args.len() == 2 {
            commands().map(command_info).collect()
        } else {
            named()
                .map(|c| c.map_or(Frame::Null, command_info))
                .collect()
        })),
        "docs" => {
            let commands: Vec<&Command> = if args.len() == 2 {
                commands().collect()
            } else {
                named().flatten().collect()
            };
            Ok(Frame::Map(
                commands
                    .into_iter()
                    .map(|c| (Frame::bulk(c.name), command_docs(c)))
                    .collect(),
            ))
        }
        _ => Err(unknown_subcommand(sub, "COMMAND")),
    }
}

/// Whether a client name or library field is acceptable: no spaces, newlines or
/// non-printable bytes (Redis's rule).
fn printable_without_spaces(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// CLIENT SETNAME (and HELLO SETNAME): an empty name clears it.
pub fn set_client_name(call: &mut Call<'_, '_>, name: &[u8]) -> Result<(), Frame> {
    if !printable_without_spaces(name) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    let name = text(name);
    call.session.name = (!name.is_empty()).then(|| name.clone());
    let id = call.session.id;
    call.shared.update_client(id, |info| info.name = name);
    Ok(())
}

pub fn client(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let sub = text(args[1]).to_ascii_lowercase();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(wrong_arity(&format!("client|{sub}")))
        }
    };
    match sub.as_str() {
        "id" => {
            arity(2)?;
            Ok(Frame::Integer(call.session.id as i64))
        }
        "getname" => {
            arity(2)?;
            Ok(call.session.name.as_ref().map_or(Frame::Null, Frame::bulk))
        }
        "setname" => {
            arity(3)?;
            set_client_name(call, args[2])?;
            Ok(Frame::ok())
        }
        "setinfo" => {
            arity(4)?;
            let field = text(args[2]).to_ascii_lowercase();
            if field != "lib-name" && field != "lib-ver" {
                return Err(Frame::error(format!(
                    "ERR Unrecognized option '{}'",
                    shown(args[2])
                )));
            }
            if !printable_without_spaces(args[3]) {
                return Err(Frame::error(format!(
                    "ERR {field} cannot contain spaces, newlines or special characters."
                )));
            }
            let value = text(args[3]);
            let id = call.session.id;
            call.shared.update_client(id, |info| {
                if field == "lib-name" {
                    info.lib_name = value;
                } else {
                    info.lib_version = value;
                }
            });
            Ok(Frame::ok())
        }
        "list" => client_list(call, &args[2..]),
        "info" => {
            arity(2)?;
            let id = call.session.id;
            Ok(Frame::Verbatim(client_lines(call, |client_id| {
                client_id == id
            })))
        }
        _ => Err(unknown_subcommand(args[1], "CLIENT")),
    }
}

fn client_list(call: &Call<'_, '_>, options: &[&[u8]]) -> Outcome {
    let mut ids: Option<Vec<u64>> = None;
    match options {
        [] => {}
        [kind, name] if is(kind, "TYPE") => {
            let name = text(name).to_ascii_lowercase();
            match name.as_str() {
                "normal" => {}
                "master" | "replica" | "slave" | "pubsub" => ids = Some(Vec::new()),
                _ => return Err(Frame::error(format!("ERR Unknown client type '{name}'"))),
            }
        }
        [kind, list @ ..] if is(kind, "ID") && !list.is_empty() => {
            let mut wanted = Vec::new();
            for id in list {
                let id = int_arg(id)
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Frame::error("ERR Invalid client ID"))?;
                wanted.push(id as u64);
            }
            ids = Some(wanted);
        }
        _ => return Err(syntax_error()),
    }
    Ok(Frame::Verbatim(client_lines(call, |id| {
        ids.as_ref().is_none_or(|ids| ids.contains(&id))
    })))
}

fn client_lines(call: &Call<'_, '_>, wanted: impl Fn(u64) -> bool) -> String {
    let clients = call.shared.clients.lock().expect("client registry lock");
    let mut out = String::new();
    for (id, info) in clients.iter().filter(|(id, _)| wanted(**id)) {
        let _ = writeln!(
            out,
            "id={id} addr={} name={} age={} idle=0 flags=N db=0 multi=-1 user=default resp={} lib-name={} lib-ver={}",
            info.peer,
            info.name,
            info.connected_at.elapsed().as_secs(),
            info.resp,
            info.lib_name,
            info.lib_version
        );
    }
    out
}

/// The RESP number of a version, for CLIENT LIST.
pub fn resp_number(version: RespVersion) -> u8 {
    match version {
        RespVersion::Resp2 => 2,
        RespVersion::Resp3 => 3,
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::frame::Frame;

    #[test]
    fn dbsize_and_flush() {
        let mut h = Harness::new();
        for i in 0..3000 {
            h.run(&format!("set k{i} v"));
        }
        assert_eq!(h.run("dbsize"), int(3000));
        assert_eq!(h.run("flushall foo"), err("ERR syntax error"));
        assert_eq!(h.run("flushdb"), ok());
        assert_eq!(h.run("dbsize"), int(0));
        h.run("set a 1");
        assert_eq!(h.run("flushall async"), ok());
        assert_eq!(h.run("dbsize"), int(0));
    }

    #[test]
    fn flush_leaves_no_expired_key_counted() {
        let mut h = Harness::new();
        h.run("set gone v px 10");
        h.run("set kept v");
        h.clock.advance(20);
        assert_eq!(
            h.run("dbsize"),
            int(2),
            "an expired key counts until reclaimed"
        );
        assert_eq!(h.run("flushall"), ok());
        assert_eq!(h.run("dbsize"), int(0));
        h.run("set gone v px 10");
        h.clock.advance(20);
        h.run("multi");
        h.run("flushdb");
        assert_eq!(h.run("exec"), Frame::Array(vec![ok()]));
        assert_eq!(h.run("dbsize"), int(0));
    }

    #[test]
    fn command_info_flags_match_redis() {
        let mut h = Harness::new();
        let flags = |h: &mut Harness, name: &str| {
            let Frame::Array(entries) = h.run(&format!("command info {name}")) else {
                panic!()
            };
            let Frame::Array(entry) = &entries[0] else {
                panic!()
            };
            entry[2].clone()
        };
        let simple = |names: &[&'static str]| {
            Frame::Set(names.iter().map(|n| Frame::Simple((*n).into())).collect())
        };
        for name in ["echo", "select", "time"] {
            assert_eq!(
                flags(&mut h, name),
                simple(&["loading", "stale", "fast"]),
                "{name}"
            );
        }
        // Containers carry no flags of their own in Redis.
        assert_eq!(flags(&mut h, "config"), simple(&[]));
        assert_eq!(flags(&mut h, "client"), simple(&[]));
        assert_eq!(flags(&mut h, "get"), simple(&["readonly", "fast"]));
    }

    #[test]
    fn config_errors_match_redis() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("config resetstat x"),
            err("ERR wrong number of arguments for 'config|resetstat' command")
        );
        assert_eq!(
            h.run("config set NoSuch 1"),
            err("ERR Unknown option or number of arguments for CONFIG SET - 'NoSuch'")
        );
        let long = "x".repeat(200);
        assert_eq!(
            h.run(&format!("config {long}")),
            err(&format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                &long[..128]
            ))
        );
        assert_eq!(
            h.run_args(&[b"client", b"no\0pe"]),
            err("ERR unknown subcommand 'no'. Try CLIENT HELP.")
        );
    }

    #[test]
    fn info_config_command_time() {
        let mut h = Harness::new();
        h.run("set a 1");
        let Frame::Verbatim(info) = h.run("info") else {
            panic!()
        };
        for needle in [
            "# Server",
            "redis_version:",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:",
            "# Cluster\r\ncluster_enabled:0\r\n",
            "# Keyspace",
            "db0:keys=1,",
        ] {
            assert!(info.contains(needle), "{needle} missing from {info}");
        }
        let Frame::Verbatim(info) = h.run("info keyspace") else {
            panic!()
        };
        assert!(info.starts_with("# Keyspace\r\n") && !info.contains("# Server"));
        // A lone node is a master without replicas; its offset is the log's last seq.
        let Frame::Array(role) = h.run("role") else {
            panic!()
        };
        assert_eq!(role[0], bulk("master"));
        assert!(matches!(role[1], Frame::Integer(seq) if seq >= 1));
        assert_eq!(role[2], Frame::Array(Vec::new()));
        assert_eq!(
            h.run("config get save"),
            Frame::Map(vec![(bulk("save"), bulk(""))])
        );
        assert_eq!(
            h.run("config get appendonly"),
            Frame::Map(vec![(bulk("appendonly"), bulk("yes"))])
        );
        let Frame::Map(max) = h.run("config get max*") else {
            panic!()
        };
        assert_eq!(max.len(), 3);
        assert_eq!(
            h.run("config get"),
            err("ERR wrong number of arguments for 'config|get' command")
        );
        assert_eq!(h.run("config set maxmemory 0"), ok());
        assert!(h.run("config set maxmemory 100").is_error());
        assert_eq!(
            h.run("config set foo 1"),
            err("ERR Unknown option or number of arguments for CONFIG SET - 'foo'")
        );
        assert_eq!(
            h.run("config foo"),
            err("ERR unknown subcommand 'foo'. Try CONFIG HELP.")
        );
        assert_eq!(
            h.run("command count"),
            int(crate::cmd::commands().count() as i64)
        );
        let Frame::Array(info) = h.run("command info get nope") else {
            panic!()
        };
        assert_eq!(info[1], Frame::Null);
        let Frame::Array(get) = &info[0] else {
            panic!()
        };
        assert_eq!(get[..2], [bulk("get"), int(2)]);
        let Frame::Map(docs) = h.run("command docs get") else {
            panic!()
        };
        assert_eq!(docs[0].0, bulk("get"));
        let Frame::Array(time) = h.run("time") else {
            panic!()
        };
        assert_eq!(time.len(), 2);
    }

    #[test]
    fn client_subcommands() {
        let mut h = Harness::new();
        h.shared.clients.lock().unwrap().insert(
            1,
            crate::context::ClientInfo {
                peer: h.session.peer,
                name: String::new(),
                lib_name: String::new(),
                lib_version: String::new(),
                resp: 2,
                connected_at: std::time::Instant::now(),
            },
        );
        assert_eq!(h.run("client id"), int(1));
        assert_eq!(h.run("client getname"), Frame::Null);
        assert_eq!(h.run("client setname app"), ok());
        assert_eq!(h.run("client getname"), bulk("app"));
        assert_eq!(
            h.run_args(&[b"client", b"setname", b"a b"]),
            err("ERR Client names cannot contain spaces, newlines or special characters.")
        );
        assert_eq!(h.run("client setinfo lib-name redis-rs"), ok());
        assert_eq!(
            h.run("client setinfo foo x"),
            err("ERR Unrecognized option 'foo'")
        );
        let Frame::Verbatim(list) = h.run("client list") else {
            panic!()
        };
        assert!(
            list.starts_with("id=1 addr=127.0.0.1:1 name=app "),
            "{list}"
        );
        assert!(list.contains("lib-name=redis-rs"));
        assert_eq!(h.run("client list id 99"), Frame::Verbatim(String::new()));
        assert_eq!(
            h.run("client nope"),
            err("ERR unknown subcommand 'nope'. Try CLIENT HELP.")
        );
        assert_eq!(
            h.run("client id x"),
            err("ERR wrong number of arguments for 'client|id' command")
        );
    }
}
