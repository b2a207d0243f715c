//! From arguments to a reply: look the command up, check arity and authentication, queue it
//! inside MULTI, or run it. The same path serves RESP and the binary protocol.

use std::sync::atomic::Ordering;

use flin_net::Action;

use crate::cmd::{self, Command};
use crate::context::{Call, MultiState, Session, Shared, MULTI_QUEUED_MAX};
use crate::frame::Frame;

/// Bytes of the unknown-command message's argument list, as in Redis.
const UNKNOWN_ARGS_SHOWN_BYTES: usize = 128;

/// Runs one command for `session`; `args[0]` is the name. Returns the reply and whether the
/// connection should close after it (QUIT).
pub fn execute(shared: &Shared, session: &mut Session, args: &[&[u8]]) -> (Frame, Action) {
    shared
        .counters
        .commands_processed
        .fetch_add(1, Ordering::Relaxed);
    let Some(name) = args.first() else {
        return (Frame::error("ERR empty command"), Action::Continue);
    };
    let command = match check(shared, session, name, args) {
        Ok(command) => command,
        Err(refusal) if cmd::lookup(name).is_some_and(|c| c.name == "exec") => {
            return (abort_exec(session, refusal), Action::Continue);
        }
        Err(refusal) => {
            if let Some(multi) = session.multi.as_mut() {
                multi.aborted = true;
            }
            return (refusal, Action::Continue);
        }
    };
    if let Some(multi) = session.multi.as_mut() {
        if !matches!(
            command.name,
            "exec" | "discard" | "multi" | "watch" | "quit"
        ) {
            return (queue(multi, args), Action::Continue);
        }
    }
    let reply = {
        let mut call = Call::standalone(shared, session);
        flatten((command.run)(&mut call, args))
    };
    let action = if command.name == "quit" {
        Action::Close
    } else {
        Action::Continue
    };
    (reply, action)
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

fn queue(multi: &mut MultiState, args: &[&[u8]]) -> Frame {
    if multi.queued.len() >= MULTI_QUEUED_MAX {
        multi.aborted = true;
        return Frame::error(format!(
            "ERR MULTI holds at most {MULTI_QUEUED_MAX} commands"
        ));
    }
    multi
        .queued
        .push(args.iter().map(|arg| arg.to_vec()).collect());
    Frame::Simple("QUEUED".into())
}

/// Runs a command queued by MULTI (already checked) inside EXEC's transaction.
pub fn run_queued(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Frame {
    match cmd::lookup(args[0]) {
        Some(command) => flatten((command.run)(call, args)),
        None => unknown_command(args),
    }
}

fn flatten(outcome: Result<Frame, Frame>) -> Frame {
    outcome.unwrap_or_else(|error| error)
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
fn unknown_command(args: &[&[u8]]) -> Frame {
    let mut shown = String::new();
    for arg in &args[1..] {
        if shown.len() >= UNKNOWN_ARGS_SHOWN_BYTES {
            break;
        }
        let room = UNKNOWN_ARGS_SHOWN_BYTES - shown.len();
        let text = String::from_utf8_lossy(&arg[..arg.len().min(room)]).into_owned();
        shown.push_str(&format!("'{text}' "));
    }
    let name = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
    Frame::error(format!(
        "ERR unknown command '{name}', with args beginning with: {shown}"
    ))
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::config::Options;

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
