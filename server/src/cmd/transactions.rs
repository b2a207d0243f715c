//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH. EXEC runs every queued command inside ONE
//! engine transaction, so the batch commits as one atomic log record and no other client's
//! write lands in between; WATCH compares each key's engine version at EXEC time.

use crate::context::{Call, MultiState, Outcome, Watched, KV};
use crate::dispatch;
use crate::frame::Frame;

pub fn multi(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    if call.session.multi.is_some() {
        return Err(Frame::error("ERR MULTI calls can not be nested"));
    }
    call.session.multi = Some(MultiState::default());
    Ok(Frame::ok())
}

pub fn discard(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    if call.session.multi.take().is_none() {
        return Err(Frame::error("ERR DISCARD without MULTI"));
    }
    call.session.watched.clear();
    Ok(Frame::ok())
}

pub fn watch(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    if call.session.multi.is_some() {
        return Err(Frame::error("ERR WATCH inside MULTI is not allowed"));
    }
    for key in &args[1..] {
        if call
            .session
            .watched
            .iter()
            .any(|watched| watched.key == *key && watched.document.is_none())
        {
            continue;
        }
        let version = call.read().version(KV, key)?;
        let touches = call.shared.touches.get(key);
        call.session.watched.push(Watched {
            key: key.to_vec(),
            version,
            touches,
            document: None,
        });
    }
    Ok(Frame::ok())
}

pub fn unwatch(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    call.session.watched.clear();
    Ok(Frame::ok())
}

pub fn exec(call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    let Some(multi) = call.session.multi.take() else {
        return Err(Frame::error("ERR EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut call.session.watched);
    if multi.aborted {
        return Err(Frame::error(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    let shared = call.shared;
    let session = &mut *call.session;
    // Every queued command, of whatever data model, decides in one transaction: its writes
    // commit as one log entry, all or nothing. The queue model's part holds the model's lock
    // from the first queue command (after the writer lock: decision 70) until the entry is
    // committed, then hands out what the EXEC pushed.
    let mut txn = shared.store.begin();
    let mut queue_part = shared.queues.transaction();
    let replies = {
        let view = crate::doc::collection::View::in_transaction(shared.store.reader(), Some(&txn));
        let changed = watched.iter().any(|watched| match &watched.document {
            Some(collection) => {
                shared.docs.version(&view, collection, &watched.key).ok() != Some(watched.version)
            }
            None => {
                txn.version(KV, &watched.key) != watched.version
                    || shared.touches.get(&watched.key) != watched.touches
            }
        });
        if changed {
            None
        } else {
            let mut replies = Vec::with_capacity(multi.queued.len());
            let mut written = Vec::new();
            for queued in &multi.queued {
                let args: Vec<&[u8]> = queued.iter().map(Vec::as_slice).collect();
                let mut inner =
                    Call::in_transaction(shared, session, &mut txn, &mut written, &mut queue_part);
                replies.push(dispatch::run_queued(&mut inner, &args));
            }
            Some(replies)
        }
    };
    let seq = queue_part.commit(&shared.store, &mut txn, shared.now_ms())?;
    drop(txn);
    let written = crate::store::Written {
        reply: replies,
        seq,
    };
    session.note_write(written.seq);
    let flushed = multi.queued.iter().any(|args| {
        args[0].eq_ignore_ascii_case(b"flushall") || args[0].eq_ignore_ascii_case(b"flushdb")
    });
    if flushed && written.reply.is_some() {
        // As FLUSHALL outside MULTI does: expired keys nobody reclaimed yet go too.
        shared.store.reader().reclaim_expired();
    }
    Ok(written.reply.map_or(Frame::NullArray, Frame::Array))
}

#[cfg(test)]
mod tests {
    use crate::cmd::test_support::*;
    use crate::context::Session;
    use crate::frame::Frame;

    #[test]
    fn multi_exec_runs_queued_commands() {
        let mut h = Harness::new();
        assert_eq!(h.run("exec"), err("ERR EXEC without MULTI"));
        assert_eq!(h.run("discard"), err("ERR DISCARD without MULTI"));
        assert_eq!(h.run("multi"), ok());
        assert_eq!(h.run("multi"), err("ERR MULTI calls can not be nested"));
        assert_eq!(h.run("set a 1"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("incr a"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("get a"), Frame::Simple("QUEUED".into()));
        assert_eq!(h.run("incr nonint"), Frame::Simple("QUEUED".into()));
        assert_eq!(
            h.run("watch x"),
            err("ERR WATCH inside MULTI is not allowed")
        );
        assert_eq!(
            h.run("exec"),
            Frame::Array(vec![ok(), int(2), bulk("2"), int(1)])
        );
        h.run("multi");
        h.run("set a 1");
        h.run("incr a");
        h.run("get a");
        h.run("set s x");
        h.run("incr s");
        h.run("flushdb");
        h.run("get a");
        assert_eq!(
            h.run("exec"),
            Frame::Array(vec![
                ok(),
                int(2),
                bulk("2"),
                ok(),
                err("ERR value is not an integer or out of range"),
                ok(),
                Frame::Null,
            ])
        );
        assert_eq!(h.run("dbsize"), int(0));
    }

    #[test]
    fn queuing_errors_abort() {
        let mut h = Harness::new();
        h.run("multi");
        h.run("set a 1");
        assert_eq!(
            h.run("get"),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert!(h.run("nosuch").is_error());
        assert_eq!(
            h.run("exec"),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
        assert_eq!(h.run("get a"), Frame::Null);
        h.run("multi");
        h.run("set a 1");
        assert_eq!(h.run("discard"), ok());
        assert_eq!(h.run("get a"), Frame::Null);
    }

    #[test]
    fn watch_sees_a_set_that_expired_at_once() {
        // Redis counts `SET k v PXAT <past>` on a missing key as a modification (the key is
        // set, then gone): an EXEC watching it aborts, though nothing was stored.
        let mut h = Harness::new();
        h.run("watch missing");
        let mut other = Session::new(2, "127.0.0.1:2".parse().unwrap(), true);
        let past = (START_MS - 1000).to_string();
        let set = [&b"set"[..], b"missing", b"v", b"pxat", past.as_bytes()];
        let (reply, _) = crate::dispatch::execute(&h.shared, &mut other, &set);
        assert_eq!(reply, ok());
        assert_eq!(h.run("exists missing"), int(0));
        h.run("multi");
        h.run("ping");
        assert_eq!(h.run("exec"), Frame::NullArray);
        // Watching again starts from the new stamp.
        h.run("watch missing");
        h.run("multi");
        h.run("ping");
        assert_eq!(
            h.run("exec"),
            Frame::Array(vec![Frame::Simple("PONG".into())])
        );
    }

    #[test]
    fn watch_detects_other_writers() {
        let mut h = Harness::new();
        h.run("set w 1");
        assert_eq!(h.run("watch w missing"), ok());
        // Another connection writes the watched key.
        let mut other = Session::new(2, "127.0.0.1:2".parse().unwrap(), true);
        crate::dispatch::execute(&h.shared, &mut other, &[b"set", b"w", b"2"]);
        h.run("multi");
        h.run("set w 3");
        assert_eq!(h.run("exec"), Frame::NullArray);
        assert_eq!(h.run("get w"), bulk("2"));
        // Unchanged watched keys (including a still-missing one) let EXEC run.
        h.run("watch w missing");
        h.run("multi");
        h.run("set w 3");
        assert_eq!(h.run("exec"), Frame::Array(vec![ok()]));
        // A watched key created by someone else aborts.
        h.run("watch missing");
        crate::dispatch::execute(&h.shared, &mut other, &[b"set", b"missing", b"x"]);
        h.run("multi");
        h.run("get w");
        assert_eq!(h.run("exec"), Frame::NullArray);
        // UNWATCH forgets.
        h.run("watch w");
        crate::dispatch::execute(&h.shared, &mut other, &[b"set", b"w", b"9"]);
        h.run("unwatch");
        h.run("multi");
        h.run("get w");
        assert_eq!(h.run("exec"), Frame::Array(vec![bulk("9")]));
    }
}
