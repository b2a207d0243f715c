//! The real binary over raw RESP bytes: exact replies in RESP2 and RESP3, inline commands,
//! errors, AUTH, MULTI/EXEC and a 10,000-command pipeline.

mod common;

use common::{resp, ServerGuard};

#[test]
fn resp2_exact_replies() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = server.connect();
    c.roundtrip(b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n");
    c.roundtrip(&resp(&[b"SET", b"k", b"hello"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"GET", b"k"]), b"$5\r\nhello\r\n");
    c.roundtrip(&resp(&[b"GET", b"missing"]), b"$-1\r\n");
    c.roundtrip(&resp(&[b"INCR", b"n"]), b":1\r\n");
    c.roundtrip(
        &resp(&[b"INCR", b"k"]),
        b"-ERR value is not an integer or out of range\r\n",
    );
    c.roundtrip(
        &resp(&[b"FOO", b"a", b"b"]),
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
    );
    c.roundtrip(
        &resp(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    c.roundtrip(
        &resp(&[b"SET", b"k", b"v", b"EX", b"0"]),
        b"-ERR invalid expire time in 'set' command\r\n",
    );
    c.roundtrip(
        &resp(&[b"SET", b"k", b"v", b"NX", b"XX"]),
        b"-ERR syntax error\r\n",
    );
    // Redis 8.4's compare-and-set: +OK when it set, null when the value differs or the key
    // is missing (not created); IFEQ/IFNE exclude NX, XX and each other.
    c.roundtrip(&resp(&[b"SET", b"cas", b"1", b"IFEQ", b"0"]), b"$-1\r\n");
    c.roundtrip(&resp(&[b"GET", b"cas"]), b"$-1\r\n");
    c.roundtrip(&resp(&[b"SET", b"cas", b"1", b"IFNE", b"0"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"SET", b"cas", b"2", b"IFEQ", b"0"]), b"$-1\r\n");
    c.roundtrip(&resp(&[b"SET", b"cas", b"2", b"IFEQ", b"1"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"SET", b"cas", b"3", b"IFNE", b"2"]), b"$-1\r\n");
    c.roundtrip(
        &resp(&[b"SET", b"cas", b"3", b"ifeq", b"2", b"GET"]),
        b"$1\r\n2\r\n",
    );
    c.roundtrip(&resp(&[b"GET", b"cas"]), b"$1\r\n3\r\n");
    for refused in [
        &[b"SET" as &[u8], b"cas", b"4", b"IFEQ"][..],
        &[b"SET", b"cas", b"4", b"IFEQ", b"3", b"NX"],
        &[b"SET", b"cas", b"4", b"XX", b"IFEQ", b"3"],
        &[b"SET", b"cas", b"4", b"IFEQ", b"3", b"IFNE", b"5"],
        &[b"SET", b"cas", b"4", b"IFEQ", b"3", b"IFEQ", b"3"],
    ] {
        c.roundtrip(&resp(refused), b"-ERR syntax error\r\n");
    }
    c.roundtrip(&resp(&[b"GET", b"cas"]), b"$1\r\n3\r\n");
    c.roundtrip(
        &resp(&[b"SELECT", b"1"]),
        b"-ERR DB index is out of range\r\n",
    );
    c.roundtrip(
        &resp(&[b"MGET", b"k", b"missing"]),
        b"*2\r\n$5\r\nhello\r\n$-1\r\n",
    );
    c.roundtrip(&resp(&[b"TTL", b"k"]), b":-1\r\n");
    c.roundtrip(&resp(&[b"TTL", b"missing"]), b":-2\r\n");
    c.roundtrip(&resp(&[b"SET", b"empty", b""]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"GET", b"empty"]), b"$0\r\n\r\n");
    c.roundtrip(
        &resp(&[b"HELLO", b"4"]),
        b"-NOPROTO unsupported protocol version\r\n",
    );
    c.roundtrip(&resp(&[b"QUIT"]), b"+OK\r\n");
    assert!(c.is_closed());
}

#[test]
fn inline_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = server.connect();
    c.roundtrip(b"PING\r\n", b"+PONG\r\n");
    c.roundtrip(b"SET greeting \"hello world\"\r\n", b"+OK\r\n");
    c.roundtrip(b"GET greeting\r\n", b"$11\r\nhello world\r\n");
    c.roundtrip(b"EXISTS greeting nope\n", b":1\r\n");
}

#[test]
fn resp3_after_hello() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = server.connect();
    c.send(&resp(&[b"HELLO", b"3"]));
    let expected_start = b"%7\r\n$6\r\nserver\r\n$4\r\nflin\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:";
    assert_eq!(c.read_exact(expected_start.len()), expected_start);
    // The id's digits, then mode, role and modules.
    let rest = b"\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    let mut tail = Vec::new();
    while !tail.ends_with(rest) {
        tail.extend(c.read_exact(1));
        assert!(tail.len() < 200, "unexpected HELLO tail {tail:?}");
    }
    c.roundtrip(&resp(&[b"GET", b"missing"]), b"_\r\n");
    c.roundtrip(
        &resp(&[b"CONFIG", b"GET", b"save"]),
        b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    c.roundtrip(&resp(&[b"INCRBYFLOAT", b"f", b"1.5"]), b"$3\r\n1.5\r\n");
    c.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"GET", b"nope"]), b"+QUEUED\r\n");
    c.roundtrip(&resp(&[b"EXEC"]), b"*1\r\n_\r\n");
}

#[test]
fn auth_and_transactions_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--requirepass", "s3cret"]);
    let mut c = server.connect();
    c.roundtrip(
        &resp(&[b"GET", b"a"]),
        b"-NOAUTH Authentication required.\r\n",
    );
    c.roundtrip(
        &resp(&[b"AUTH", b"nope"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    c.roundtrip(&resp(&[b"AUTH", b"s3cret"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"SET", b"a", b"1"]), b"+QUEUED\r\n");
    c.roundtrip(&resp(&[b"INCRBY", b"a", b"41"]), b"+QUEUED\r\n");
    c.roundtrip(&resp(&[b"EXEC"]), b"*2\r\n+OK\r\n:42\r\n");
    c.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    c.roundtrip(
        &resp(&[b"NOPE"]),
        b"-ERR unknown command 'NOPE', with args beginning with: \r\n",
    );
    c.roundtrip(
        &resp(&[b"EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    // WATCH conflict from a second connection.
    let mut other = server.connect();
    other.roundtrip(&resp(&[b"AUTH", b"default", b"s3cret"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"WATCH", b"a"]), b"+OK\r\n");
    other.roundtrip(&resp(&[b"SET", b"a", b"0"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"MULTI"]), b"+OK\r\n");
    c.roundtrip(&resp(&[b"INCR", b"a"]), b"+QUEUED\r\n");
    c.roundtrip(&resp(&[b"EXEC"]), b"*-1\r\n");
}

/// Before AUTH, with a password set, a request is held to Redis's limits for unauthenticated
/// clients (10 elements, 16 KiB a bulk string; 16 KiB a binary body): a client without the
/// password cannot make the server buffer a large request. After AUTH the normal limits apply.
#[test]
fn unauthenticated_requests_are_held_to_small_limits() {
    use flin_net::binary::{self, parse_response, SetCondition, Status};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--requirepass", "s3cret"]);

    // Eleven elements: refused on the `*` line, before any element arrives; then closed.
    let mut c = server.connect();
    c.roundtrip(
        b"*11\r\n",
        b"-ERR Protocol error: unauthenticated multibulk length at byte 1\r\n",
    );
    assert!(c.is_closed());

    // A bulk length over 16 KiB: refused on its `$` line (byte 15 of this frame).
    let mut c = server.connect();
    c.roundtrip(
        b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
        b"-ERR Protocol error: unauthenticated bulk length at byte 15\r\n",
    );
    assert!(c.is_closed());

    // At the limits exactly: answered (NOAUTH), the connection stays.
    let mut c = server.connect();
    let big = vec![b'v'; 16 * 1024];
    let ten: Vec<&[u8]> = [
        &b"MSET"[..],
        b"a",
        b"1",
        b"b",
        b"2",
        b"c",
        b"3",
        b"d",
        b"4",
        b"e",
    ]
    .to_vec();
    c.roundtrip(&resp(&ten), b"-NOAUTH Authentication required.\r\n");
    c.roundtrip(
        &resp(&[b"SET", b"k", &big]),
        b"-NOAUTH Authentication required.\r\n",
    );
    // Authenticated, the same connection may send more and larger.
    c.roundtrip(&resp(&[b"AUTH", b"s3cret"]), b"+OK\r\n");
    let bigger = vec![b'w'; 1024 * 1024];
    c.roundtrip(&resp(&[b"SET", b"k", &bigger]), b"+OK\r\n");
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for key in &keys {
        mset.push(key.as_bytes());
        mset.push(b"x");
    }
    c.roundtrip(&resp(&mset), b"+OK\r\n");
    c.roundtrip(&resp(&[b"STRLEN", b"k"]), b":1048576\r\n");

    // Binary: a body over 16 KiB before AUTH is a protocol error; after AUTH it is not.
    let mut c = server.connect();
    let mut request = Vec::new();
    binary::encode_set(&mut request, 1, b"bk", &bigger, None, SetCondition::Always).unwrap();
    c.send(&request[..binary::HEADER_LEN]);
    let refused = c.read_binary_frame();
    let refused = parse_response(&refused).unwrap();
    assert_eq!(
        (refused.request_id, refused.status),
        (1, Status::ProtocolError)
    );
    assert!(c.is_closed());

    let mut c = server.connect();
    let mut request = Vec::new();
    binary::encode_auth(&mut request, 1, b"", b"s3cret").unwrap();
    binary::encode_set(&mut request, 2, b"bk", &bigger, None, SetCondition::Always).unwrap();
    c.send(&request);
    for id in [1, 2] {
        let reply = c.read_binary_frame();
        let reply = parse_response(&reply).unwrap();
        assert_eq!((reply.request_id, reply.status), (id, Status::Ok));
    }
}

#[test]
fn pipeline_of_ten_thousand_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = server.connect();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..5_000 {
        request.extend(resp(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        expected.extend_from_slice(b"+OK\r\n");
    }
    for i in 0..5_000 {
        request.extend(resp(&[b"INCR", format!("key:{i}").as_bytes()]));
        expected.extend(format!(":{}\r\n", i + 1).into_bytes());
    }
    c.send(&request);
    assert_eq!(c.read_exact(expected.len()), expected);
    c.roundtrip(&resp(&[b"DBSIZE"]), b":5000\r\n");
}

#[test]
fn binary_protocol_on_the_same_port() {
    use flin_net::binary::{self, parse_response, SetCondition, Status};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = server.connect();
    let mut request = Vec::new();
    binary::encode_set(
        &mut request,
        1,
        b"bk",
        b"bv",
        Some(60_000),
        SetCondition::Always,
    )
    .unwrap();
    binary::encode_get(&mut request, 2, b"bk").unwrap();
    binary::encode_ttl(&mut request, 3, b"bk").unwrap();
    c.send(&request);
    let set = c.read_binary_frame();
    assert_eq!(parse_response(&set).unwrap().status, Status::Ok);
    let get = c.read_binary_frame();
    let get = parse_response(&get).unwrap();
    assert_eq!(
        (get.request_id, get.status, get.value()),
        (2, Status::Ok, &b"bv"[..])
    );
    let ttl = c.read_binary_frame();
    let ttl = parse_response(&ttl).unwrap().integer().unwrap();
    assert!((59_000..=60_000).contains(&ttl), "{ttl}");
}
