//! From arguments to a reply: look the command up, check arity and authentication, queue it
//! inside MULTI, or run it. The same path serves RESP and the binary protocol.

use flin_net::Action;

use crate::cmd::{self, Command};
use crate::context::{Call, MultiState, Session, Shared, MULTI_QUEUED_BYTES_MAX, MULTI_QUEUED_MAX};
use crate::frame::Frame;
use crate::recorder::{Family, Outcome};

/// Bytes of the unknown-command message's argument list, as in Redis.
const UNKNOWN_ARGS_SHOWN_BYTES: usize = 128;

/// Runs one command for `session`; `args[0]` is the name. Returns the reply and whether the
/// connection should close after it (QUIT).
pub fn execute(shared: &Shared, session: &mut Session, args: &[&[u8]]) -> (Frame, Action) {
    let recorder = &shared.recorder;
    recorder.processed();
    session.family = Family::Server;
    let Some(name) = args.first() else {
        recorder.unknown();
        return (Frame::error("ERR empty command"), Action::Continue);
    };
    let command = match check(shared, session, name, args) {
        Ok(command) => command,
        Err(refusal) => {
            // A known command refused (arity, authentication) counts as its error.
            let known = cmd::lookup(name);
            match known {
                Some(command) => {
                    session.family = command.family();
                    recorder.result(command.number(), Outcome::Error);
                }
                None => recorder.unknown(),
            }
            if known.is_some_and(|c| c.name == "exec") {
                return (abort_exec(session, refusal), Action::Continue);
            }
            if let Some(multi) = session.multi.as_mut() {
                multi.aborted = true;
            }
            return (refusal, Action::Continue);
        }
    };
    session.family = command.family();
    let mut under_lease = None;
    if let Some(cluster) = shared.store.cluster() {
        match cluster_refusal(cluster, session, command) {
            Serve::Refuse(refusal) => {
                if command.name == "exec" {
                    return (abort_exec(session, refusal), Action::Continue);
                }
                if let Some(multi) = session.multi.as_mut() {
                    multi.aborted = true;
                }
                return (with_key_slot(refusal, command, args), Action::Continue);
            }
            Serve::UnderLease => under_lease = Some(cluster),
            Serve::Freely => {}
        }
    }
    if let Some(multi) = session.multi.as_mut() {
        let publish = matches!(command.name, "stream.publish" | "stream.mpublish");
        if (command.group == "queue" && !crate::queue::commands::IN_MULTI.contains(&command.name))
            || (command.group == "stream" && !publish)
            || crate::doc::commands::NOT_IN_MULTI.contains(&command.name)
        {
            // Pops, waits, subscriptions and declarations of queues (deliveries and state
            // beside the log that one transaction cannot hold, see `queue::commands::
            // IN_MULTI`), a stream's group commands (memory state beside the log), an index
            // build or a collection drop (done in many writes): refused, and the EXEC is
            // doomed. Document reads and writes, queue pushes, publishes, acks, nacks and
            // purges, and stream publishes join EXEC's transaction: the outbox.
            multi.aborted = true;
            recorder.result(command.number(), Outcome::Error);
            return (
                Frame::error(format!(
                    "ERR {} is not allowed inside MULTI",
                    command.name.to_ascii_uppercase()
                )),
                Action::Continue,
            );
        }
        if !matches!(
            command.name,
            "exec" | "discard" | "multi" | "watch" | "quit"
        ) {
            return (queue(multi, args, MULTI_QUEUED_BYTES_MAX), Action::Continue);
        }
    }
    #[cfg(test)]
    std::thread::sleep(tests::PAUSE_BEFORE_RUN.get());
    let (reply, outcome) = {
        let mut call = Call::standalone(shared, session);
        run(command, &mut call, args)
    };
    // The lease, checked once a read has read: a read whose state was taken while the lease
    // held is linearizable at that moment, however late its reply leaves; one that read after
    // (a leader paused, or slow, before or during the read) may have read a state another
    // leader has since moved past. Checked only here, not before as well: a read refused here
    // has changed nothing, and one clock read per read is the cost. A long poll that would
    // start waiting outside the lease does not; one that waits is checked again when it
    // answers (`service::under_lease`).
    let (reply, outcome) = match under_lease {
        Some(cluster) if !cluster.readable() => {
            session.stream.park = None;
            let refusal = cluster.lease_refusal();
            let refusal = match command.name {
                "exec" => abort_exec(session, refusal),
                _ => refusal,
            };
            (refusal, Outcome::Error)
        }
        _ => (reply, outcome),
    };
    shared.recorder.result(command.number(), outcome);
    if let Some((queue, deadline_ms)) = session.queue.park.take() {
        // QUEUE.BPOP waits: no reply now; the service answers from `on_wake` or
        // `on_park_timeout` (and must record how to, see `session.queue.parked`).
        session.queue.parked = Some(crate::queue::session::Parked {
            queue,
            deadline_ms,
            target: crate::queue::session::ReplyTarget::Resp,
        });
        return (reply, Action::Park { deadline_ms });
    }
    if let Some(parked) = session.stream.park.take() {
        // A long poll waits: the service answers from `on_wake` or `on_park_timeout`.
        let deadline_ms = parked.deadline_ms;
        session.stream.parked = Some(parked);
        return (reply, Action::Park { deadline_ms });
    }
    if let Some(waiting) = session.waiting.as_ref().filter(|_| command.name == "wait") {
        // WAIT parks until its count or its deadline (`service`'s `answer_wait`).
        let deadline_ms = crate::cmd::wait::next_look_ms(shared, waiting);
        return (reply, Action::Park { deadline_ms });
    }
    let action = if command.name == "quit" {
        Action::Close
    } else {
        Action::Continue
    };
    (with_key_slot(reply, command, args), action)
}

/// A redirect (`-MOVED 0 <addr>`, from the refusal above or from the write path of a node
/// that is not the leader) names the slot of the command's first key, as Redis Cluster's
/// does: a cluster client moves that slot to the leader. A command without keys keeps slot 0.
fn with_key_slot(reply: Frame, command: &Command, args: &[&[u8]]) -> Frame {
    match reply {
        Frame::Error(message) if message.starts_with("MOVED 0 ") => {
            let key = usize::try_from(command.keys.0)
                .ok()
                .filter(|&first| first > 0)
                .and_then(|first| args.get(first));
            match key {
                Some(key) => Frame::Error(format!(
                    "MOVED {} {}",
                    crate::cluster::slot::key_slot(key),
                    &message["MOVED 0 ".len()..]
                )),
                None => Frame::Error(message),
            }
        }
        other => other,
    }
}

/// What a cluster node does with a command, before it runs.
enum Serve {
    /// Runs it: a write (answered once a majority has it), a command that touches no data,
    /// or a stale read a connection asked for.
    Freely,
    /// Runs it on the leader's own state, and answers only if the lease still holds once it
    /// has read (or, queued in MULTI, once EXEC has run it).
    UnderLease,
    /// Answers this refusal instead: a redirect, or the lease's TRYAGAIN.
    Refuse(Frame),
}

/// On a cluster node: the refusal of a command this node does not serve. A follower
/// redirects every command that reads or writes data to the leader (`-MOVED`), except reads
/// on a connection that asked for stale reads (READONLY; its writes are still redirected, by
/// the write path). The leader runs reads, and EXECs whose queued commands only read, under
/// its lease: `execute` answers `-TRYAGAIN` instead if the lease ran out before the read had
/// read. A write needs no lease, since it is answered only once a majority has it.
fn cluster_refusal(
    cluster: &crate::cluster::Cluster,
    session: &Session,
    command: &Command,
) -> Serve {
    let reads_only_exec = command.name == "exec"
        && session.multi.as_ref().is_some_and(|multi| {
            multi.queued.iter().all(|args| {
                args.first()
                    .and_then(|name| cmd::lookup(name))
                    .is_none_or(|queued| !queued.has_flag("write"))
            })
        });
    let anywhere = matches!(command.group, "connection" | "cluster")
        || matches!(
            command.name,
            "info" | "command" | "config" | "time" | "multi" | "discard" | "unwatch" | "wait"
        )
        || (command.name == "exec" && !reads_only_exec);
    if anywhere {
        return Serve::Freely;
    }
    if cluster.writable() {
        return match command.has_flag("write") {
            true => Serve::Freely,
            false => Serve::UnderLease,
        };
    }
    if command.name == "exec" {
        // On a follower an EXEC of reads runs as its queued commands did (READONLY or not).
        return Serve::Freely;
    }
    if session.readonly && !command.has_flag("write") {
        return Serve::Freely;
    }
    Serve::Refuse(cluster.redirect())
}

/// The checks Redis makes before running or queuing a command.
fn check(
    shared: &Shared,
    session: &Session,
    name: &[u8],
    args: &[&[u8]],
) -> Result<&'static Command, Frame> {
    let command = cmd::lookup(name).ok_or_else(|| unknown_command(args))?;
    if !command.arity_ok(args.len()) {
        return Err(cmd::wrong_arity(command.name));
    }
    command.check_subcommand(args)?;
    if shared.options.requirepass.is_some()
        && !session.authenticated
        && !command.has_flag("no_auth")
    {
        return Err(Frame::error("NOAUTH Authentication required."));
    }
    Ok(command)
}

/// An EXEC refused before it ran (wrong arity, not authenticated) discards the transaction and
/// its watches, and says why, as Redis's `execCommandAbort` does.
fn abort_exec(session: &mut Session, refusal: Frame) -> Frame {
    session.multi = None;
    session.watched.clear();
    let Frame::Error(reason) = refusal else {
        unreachable!("a refusal is an error frame");
    };
    let reason = reason.strip_prefix("ERR ").unwrap_or(&reason);
    Frame::error(format!(
        "EXECABORT Transaction discarded because of: {reason}"
    ))
}

/// Queues a command for EXEC, or refuses it (and dooms the EXEC) when the queue would pass
/// `MULTI_QUEUED_MAX` commands or `max_bytes` of memory.
fn queue(multi: &mut MultiState, args: &[&[u8]], max_bytes: usize) -> Frame {
    if multi.queued.len() >= MULTI_QUEUED_MAX {
        multi.aborted = true;
        return Frame::error(format!(
            "ERR MULTI holds at most {MULTI_QUEUED_MAX} commands"
        ));
    }
    let header = std::mem::size_of::<Vec<u8>>();
    let bytes = header + args.iter().map(|arg| arg.len() + header).sum::<usize>();
    if multi.queued_bytes + bytes > max_bytes {
        multi.aborted = true;
        return Frame::error(format!(
            "ERR MULTI holds at most {max_bytes} bytes of queued commands"
        ));
    }
    multi.queued_bytes += bytes;
    multi
        .queued
        .push(args.iter().map(|arg| arg.to_vec()).collect());
    Frame::Simple("QUEUED".into())
}

/// Runs a command queued by MULTI (already checked) inside EXEC's transaction, and counts its
/// result.
pub fn run_queued(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Frame {
    match cmd::lookup(args[0]) {
        Some(command) => {
            let (reply, outcome) = run(command, call, args);
            call.shared.recorder.result(command.number(), outcome);
            reply
        }
        None => unknown_command(args),
    }
}

/// Runs `command`: its reply and how it counts (an error reply is an error; a parked command,
/// which has not answered yet, counts as ok).
fn run(command: &Command, call: &mut Call<'_, '_>, args: &[&[u8]]) -> (Frame, Outcome) {
    match (command.run)(call, args) {
        Ok(Frame::Error(message)) => (Frame::Error(message), Outcome::Error),
        Ok(reply) => (reply, Outcome::Ok),
        Err(error) => (error, Outcome::Error),
    }
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
fn unknown_command(args: &[&[u8]]) -> Frame {
    let mut shown = String::new();
    for arg in &args[1..] {
        if shown.len() >= UNKNOWN_ARGS_SHOWN_BYTES {
            break;
        }
        let room = UNKNOWN_ARGS_SHOWN_BYTES - shown.len();
        let text = cmd::shown(&arg[..arg.len().min(room)]);
        shown.push_str(&format!("'{text}' "));
    }
    let name = cmd::shown(&args[0][..args[0].len().min(UNKNOWN_ARGS_SHOWN_BYTES)]);
    Frame::error(format!(
        "ERR unknown command '{name}', with args beginning with: {shown}"
    ))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::cluster::{Cluster, ClusterOptions};
    use crate::cmd::test_support::*;
    use crate::config::Options;

    thread_local! {
        /// A pause between the checks `execute` makes and the command's run: the moment a
        /// leader stopped by SIGSTOP, or descheduled, would lose there.
        pub(super) static PAUSE_BEFORE_RUN: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// A leader whose lease holds when a read is checked but runs out before the read reads
    /// (a pause between the two) answers TRYAGAIN, not the state it read: another leader may
    /// have taken writes since. The same for an EXEC of reads. Without the check after the
    /// run both would answer `old`.
    #[test]
    fn a_read_that_outlives_the_lease_it_began_under_is_refused() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET k old"), ok());
        assert_eq!(h.run("STREAM.CREATE t PARTITIONS 1"), ok());
        let members = "1=127.0.0.1:7900,2=127.0.0.1:7901,3=127.0.0.1:7902";
        let cluster = Arc::new(Cluster::new(
            ClusterOptions::parse("1", members, 50).unwrap(),
        ));
        h.shared.store.attach_cluster(cluster.clone());
        cluster.set_writable_term(1);
        let lease_for = |ms: u64| {
            cluster.set_lease_until(crate::os::lease_clock_ns() + ms * 1_000_000);
        };
        let pause = |ms: u64| PAUSE_BEFORE_RUN.set(Duration::from_millis(ms));
        let tryagain = cluster.lease_refusal();

        lease_for(300);
        assert_eq!(h.run("GET k"), bulk("old"), "served inside the lease");
        lease_for(300);
        pause(600);
        assert_eq!(h.run("GET k"), tryagain, "read after the lease ran out");

        pause(0);
        lease_for(60_000);
        assert_eq!(h.run("MULTI"), crate::frame::Frame::Simple("OK".into()));
        assert_eq!(h.run("GET k"), crate::frame::Frame::Simple("QUEUED".into()));
        lease_for(300);
        pause(600);
        assert_eq!(
            h.run("EXEC"),
            err(
                "EXECABORT Transaction discarded because of: TRYAGAIN the leader has not \
                 heard from a majority within its lease; retry"
            )
        );
        pause(0);
        assert!(h.session.multi.is_none());

        // A long poll inside the lease waits (checked again when it answers: service.rs)...
        lease_for(60_000);
        h.run("STREAM.FETCH t 0 0 BLOCK 1000");
        assert!(h.session.stream.parked.take().is_some(), "parked");

        // Past the lease from the start: refused (and counted as an error of GET); a long
        // poll does not start waiting.
        cluster.set_lease_until(0);
        let get = crate::cmd::lookup(b"get").unwrap().number();
        let errors = |h: &Harness| h.shared.recorder.totals().results[get][1];
        let before = errors(&h);
        assert_eq!(h.run("GET k"), tryagain);
        assert_eq!(errors(&h), before + 1);
        assert_eq!(h.run("STREAM.FETCH t 0 0 BLOCK 1000"), tryagain);
        assert!(h.session.stream.parked.is_none());
    }

    #[test]
    fn a_multi_queue_is_capped_in_bytes_and_the_refusal_dooms_exec() {
        use super::queue;
        use crate::context::MultiState;
        use crate::frame::Frame;
        let mut multi = MultiState::default();
        let value = vec![b'v'; 1000];
        let args: [&[u8]; 3] = [b"SET", b"k", &value];
        // 1,004 bytes of arguments and 4 Vec headers (the 3 arguments and the command).
        let per_command = 1004 + 4 * std::mem::size_of::<Vec<u8>>();
        let limit = 3 * per_command;
        for _ in 0..3 {
            assert_eq!(
                queue(&mut multi, &args, limit),
                Frame::Simple("QUEUED".into())
            );
        }
        assert_eq!(multi.queued_bytes, limit);
        assert!(!multi.aborted);
        assert_eq!(
            queue(&mut multi, &[b"PING"], limit),
            Frame::error(format!(
                "ERR MULTI holds at most {limit} bytes of queued commands"
            ))
        );
        assert!(multi.aborted);
        assert_eq!(multi.queued.len(), 3);
    }

    #[test]
    fn unknown_command_and_arity_errors_match_redis() {
        let mut h = Harness::new();
        assert_eq!(
            h.run("foo a b"),
            err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            h.run("foo"),
            err("ERR unknown command 'foo', with args beginning with: ")
        );
        assert_eq!(
            h.run("GET"),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            h.run("get a b"),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(h.run("PiNg"), crate::frame::Frame::Simple("PONG".into()));
        // Redis formats the arguments with %s: each stops at its first NUL byte.
        assert_eq!(
            h.run_args(&[b"fo\0o", b"a\0b", b"c"]),
            err("ERR unknown command 'fo', with args beginning with: 'a' 'c' ")
        );
    }

    /// Every command, with every one or two arguments from a pool of hostile values and a
    /// sample of three, through the real dispatcher: the server must answer (with a reply or
    /// an error), never panic. (The pool has no SETRANGE offset just under the 512 MiB limit,
    /// which would legitimately allocate that much.)
    #[test]
    fn no_command_panics_on_odd_arguments() {
        let pool: &[&[u8]] = &[
            b"",
            b"0",
            b"-1",
            b"1",
            b"9223372036854775807",
            b"-9223372036854775808",
            b"18446744073709551616",
            b"536870912",
            b"1e400",
            b"0x1p99999",
            b"-inf",
            b"\x00\xff\r\n",
            b"*",
            b"[^",
            b"EX",
            b"PXAT",
            b"GT",
            b"NX",
            b"TYPE",
            b"COUNT",
            b"ID",
            b"SETNAME",
            b"3",
        ];
        let mut h = Harness::new();
        let mut runs = 0;
        for command in crate::cmd::commands() {
            let name = command.name.as_bytes();
            let mut run = |h: &mut Harness, rest: &[&[u8]]| {
                let mut args = vec![name];
                args.extend_from_slice(rest);
                let _ = h.run_args(&args);
                runs += 1;
            };
            run(&mut h, &[]);
            for a in pool {
                run(&mut h, &[a]);
                for b in pool {
                    run(&mut h, &[a, b]);
                }
            }
            for (i, a) in pool.iter().enumerate() {
                for b in pool.iter().skip(i % 5).step_by(5) {
                    for c in pool.iter().skip(i % 3).step_by(3) {
                        run(&mut h, &[b"k", a, b, c]);
                        run(&mut h, &[a, b, c]);
                    }
                }
            }
            // Leave MULTI and reset the protocol so the next command runs for real.
            h.session.multi = None;
            h.session.watched.clear();
        }
        assert!(runs > 40_000, "{runs} runs");
    }

    #[test]
    fn exec_with_arguments_discards_the_transaction() {
        let mut h = Harness::new();
        assert_eq!(h.run("multi"), ok());
        assert_eq!(
            h.run("set a 1"),
            crate::frame::Frame::Simple("QUEUED".into())
        );
        assert_eq!(
            h.run("exec now"),
            err("EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command")
        );
        assert_eq!(h.run("exec"), err("ERR EXEC without MULTI"));
        assert_eq!(h.run("get a"), crate::frame::Frame::Null);
    }

    #[test]
    fn requirepass_refuses_until_auth() {
        let mut h = Harness::with_options(Options {
            requirepass: Some(b"secret".to_vec()),
            ..Options::default()
        });
        assert_eq!(h.run("get a"), err("NOAUTH Authentication required."));
        assert_eq!(h.run("ping"), err("NOAUTH Authentication required."));
        assert_eq!(
            h.run("auth wrong"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert_eq!(
            h.run("auth bob secret"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert_eq!(h.run("auth secret"), ok());
        assert_eq!(h.run("get a"), crate::frame::Frame::Null);
        h.session.authenticated = false;
        assert_eq!(h.run("auth default secret"), ok());
    }
}
