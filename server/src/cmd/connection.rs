//! Connection commands: PING ECHO QUIT HELLO AUTH SELECT.

use flin_net::resp::RespVersion;

use super::{int_arg, is, shown, syntax_error, wrong_arity};
use crate::context::{Call, Outcome};
use crate::frame::Frame;

/// The Redis version whose command semantics Flin follows; HELLO and INFO report it so clients
/// that gate features on the version see a server they understand.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub fn ping(_call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    match args {
        [_] => Ok(Frame::Simple("PONG".into())),
        [_, message] => Ok(Frame::bulk(message)),
        _ => Err(wrong_arity("ping")),
    }
}

pub fn echo(_call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    Ok(Frame::bulk(args[1]))
}

/// The dispatcher closes the connection after this reply.
pub fn quit(_call: &mut Call<'_, '_>, _args: &[&[u8]]) -> Outcome {
    Ok(Frame::ok())
}

pub fn select(_call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    select_database(args[1])?;
    Ok(Frame::ok())
}

/// A database index (SELECT, COPY's DB): Flin has one database, 0. Read as Redis's
/// `getIntFromObjectOrReply` reads it (a 32-bit integer), so the errors are Redis's; any other
/// index is out of range, as in a Redis configured with one database.
pub fn select_database(arg: &[u8]) -> Result<(), Frame> {
    let index = int_arg(arg)?;
    if i32::try_from(index).is_err() {
        return Err(Frame::error(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    match index {
        0 => Ok(()),
        _ => Err(Frame::error("ERR DB index is out of range")),
    }
}

pub fn auth(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let (username, password) = match args {
        [_, password] => (None, *password),
        [_, username, password] => (Some(*username), *password),
        _ => return Err(syntax_error()),
    };
    if call.shared.options.requirepass.is_none() && username.is_none() {
        return Err(Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    }
    authenticate(call, username, password)?;
    Ok(Frame::ok())
}

/// Checks a username/password pair against `--requirepass` (the one user is `default`).
fn authenticate(
    call: &mut Call<'_, '_>,
    username: Option<&[u8]>,
    password: &[u8],
) -> Result<(), Frame> {
    let user_ok = username.is_none_or(|name| name == b"default");
    let password_ok = match &call.shared.options.requirepass {
        Some(expected) => constant_time_eq(expected, password),
        // Without a password the default user is `nopass`: any password is accepted.
        None => true,
    };
    if user_ok && password_ok {
        call.session.authenticated = true;
        Ok(())
    } else {
        Err(Frame::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

/// Compares without an early exit, so the time taken says nothing about where the first
/// difference is (only the lengths leak).
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = (expected.len() != given.len()) as u8;
    for index in 0..expected.len().max(given.len()) {
        let a = expected.get(index).copied().unwrap_or(0);
        let b = given.get(index).copied().unwrap_or(0xff);
        difference |= a ^ b;
    }
    difference == 0
}

pub fn hello(call: &mut Call<'_, '_>, args: &[&[u8]]) -> Outcome {
    let mut version = None;
    let mut next = 1;
    if let Some(arg) = args.get(1) {
        let asked = crate::number::parse_i64(arg).ok_or_else(|| {
            Frame::error("ERR Protocol version is not an integer or out of range")
        })?;
        version = Some(match asked {
            2 => RespVersion::Resp2,
            3 => RespVersion::Resp3,
            _ => return Err(Frame::error("NOPROTO unsupported protocol version")),
        });
        next = 2;
    }
    let mut credentials = None;
    let mut client_name = None;
    while next < args.len() {
        let more = args.len() - 1 - next;
        if is(args[next], "AUTH") && more >= 2 {
            credentials = Some((args[next + 1], args[next + 2]));
            next += 3;
        } else if is(args[next], "SETNAME") && more >= 1 {
            client_name = Some(args[next + 1]);
            next += 2;
        } else {
            return Err(Frame::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                shown(args[next])
            )));
        }
    }
    if let Some((username, password)) = credentials {
        authenticate(call, Some(username), password)?;
    }
    if !call.session.authenticated {
        return Err(Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        ));
    }
    if let Some(name) = client_name {
        super::server::set_client_name(call, name)?;
    }
    if let Some(version) = version {
        call.session.resp = version;
        let resp = super::server::resp_number(version);
        let id = call.session.id;
        call.shared.update_client(id, |info| info.resp = resp);
    }
    let proto = super::server::resp_number(call.session.resp) as i64;
    Ok(Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("flin")),
        (Frame::bulk("version"), Frame::bulk(REDIS_COMPAT_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(proto)),
        (Frame::bulk("id"), Frame::Integer(call.session.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ]))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;
    use crate::cmd::test_support::*;
    use crate::config::Options;
    use crate::frame::Frame;
    use flin_net::resp::RespVersion;

    #[test]
    fn ping_echo_select() {
        let mut h = Harness::new();
        assert_eq!(h.run("ping"), Frame::Simple("PONG".into()));
        assert_eq!(h.run("ping hi"), bulk("hi"));
        assert_eq!(
            h.run("ping a b"),
            err("ERR wrong number of arguments for 'ping' command")
        );
        assert_eq!(h.run("echo x"), bulk("x"));
        assert_eq!(h.run("select 0"), ok());
        assert_eq!(h.run("select 1"), err("ERR DB index is out of range"));
        // Read as a 32-bit integer, as Redis reads a database index.
        assert_eq!(
            h.run("select 4294967296"),
            err("ERR value is out of range, value must between -2147483648 and 2147483647")
        );
        assert_eq!(
            h.run("select x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            h.run("auth x"),
            err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
        );
    }

    #[test]
    fn hello_switches_protocol() {
        let mut h = Harness::new();
        let Frame::Map(pairs) = h.run("hello 3") else {
            panic!("map expected")
        };
        assert_eq!(pairs[2], (bulk("proto"), int(3)));
        assert_eq!(h.session.resp, RespVersion::Resp3);
        assert_eq!(
            h.run("hello 4"),
            err("NOPROTO unsupported protocol version")
        );
        assert_eq!(
            h.run("hello x"),
            err("ERR Protocol version is not an integer or out of range")
        );
        assert_eq!(
            h.run("hello 2 foo"),
            err("ERR Syntax error in HELLO option 'foo'")
        );
        assert!(matches!(h.run("hello 2"), Frame::Map(_)));
        assert_eq!(h.session.resp, RespVersion::Resp2);
    }

    #[test]
    fn hello_auth() {
        let mut h = Harness::with_options(Options {
            requirepass: Some(b"pw".to_vec()),
            ..Options::default()
        });
        assert!(h.run("hello 3").is_error());
        assert_eq!(
            h.run("hello 3 auth default nope"),
            err("WRONGPASS invalid username-password pair or user is disabled.")
        );
        assert!(matches!(
            h.run("hello 3 auth default pw setname me"),
            Frame::Map(_)
        ));
        assert_eq!(h.run("client getname"), bulk("me"));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
