//! The admin HTTP port (issue 15) through the real binary: every endpoint's status and content
//! type, the password (bearer and Basic), the dashboard page and the JSON fields it reads,
//! metrics that move when their event happens, the exposition checked by our own validator
//! and by `promtool check metrics` (when it is installed; required when
//! `FLIN_REQUIRE_PROMTOOL=1`, as `.ci/run` sets), and hostile HTTP (oversized heads, slow
//! clients, bad methods, ambiguous framing) that gets an error without touching the data port.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{resp, ServerGuard};

/// A port free a moment ago (the admin port cannot be 0: 0 turns it off).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Admin {
    server: ServerGuard,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Admin {
    let data = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let mut args = vec!["--admin-port", &port];
    args.extend_from_slice(extra);
    let server = ServerGuard::start(data.path(), &args);
    Admin {
        server,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        _data: data,
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads the response until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    Reply {
        status: status.parse().unwrap(),
        headers: lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_string(), v.to_string())
            })
            .collect(),
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Reply {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: flin\r\n{auth}\r\n").as_bytes(),
    )
}

/// Runs a command over RESP and returns the raw reply's first line.
fn command(server: &ServerGuard, args: &[&[u8]]) -> String {
    let mut client = server.connect();
    client.send(&resp(args));
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n") {
        reply.extend(client.read_exact(1));
    }
    String::from_utf8(reply).unwrap()
}

/// The value of the sample `name{labels}` (`labels` as written, e.g. `queue="jobs"`).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Our own check of the text format 0.0.4: each family's HELP and TYPE come before its
/// samples, counters end in `_total`, a histogram's samples are its `_bucket`, `_sum` and
/// `_count` (a summary's, `_sum` and `_count`), every sample line is
/// `name[{label="value",...}] number` with valid names and escapes, and no series appears
/// twice.
fn check_exposition(text: &str) {
    use std::collections::{HashMap, HashSet};
    let mut help = HashSet::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "{line}");
            assert!(help.insert(name.to_string()), "HELP twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                matches!(kind, "counter" | "gauge" | "histogram" | "summary"),
                "{line}"
            );
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            assert!(types.insert(name.into(), kind.into()).is_none(), "{line}");
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line {line:?}"
            );
            let name_end = line.find(['{', ' ']).expect(line);
            let name = &line[..name_end];
            assert!(valid_name(name), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let family = name.strip_suffix(suffix)?;
                    let kind = types.get(family)?;
                    let allowed =
                        kind == "histogram" || (kind == "summary" && *suffix != "_bucket");
                    allowed.then_some(family)
                })
                .unwrap_or(name);
            assert!(
                help.contains(family) && types.contains_key(family),
                "no HELP/TYPE: {line}"
            );
            let mut rest = &line[name_end..];
            if let Some(labels) = rest.strip_prefix('{') {
                rest = parse_labels(labels, line);
            }
            let value = rest.strip_prefix(' ').expect(line);
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            assert!(
                series.insert(line[..line.len() - value.len()].to_string()),
                "twice: {line}"
            );
        }
    }
    assert_eq!(help.len(), types.len());
}

/// Checks `label="value",...}` and returns what follows the `}`.
fn parse_labels<'a>(mut text: &'a str, line: &str) -> &'a str {
    loop {
        let eq = text.find('=').expect(line);
        assert!(
            valid_name(&text[..eq]) && !text[..eq].contains(':'),
            "{line}"
        );
        let mut chars = text[eq + 1..].char_indices();
        assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
        let end = loop {
            match chars.next().expect(line) {
                (_, '\\') => assert!(matches!(chars.next().expect(line).1, '\\' | '"' | 'n')),
                (_, '\n') => panic!("raw newline in {line}"),
                (i, '"') => break eq + 1 + i + 1,
                _ => {}
            }
        };
        text = &text[end..];
        match text.as_bytes().first() {
            Some(b',') => text = &text[1..],
            Some(b'}') => return &text[1..],
            _ => panic!("{line}"),
        }
    }
}

/// `promtool check metrics` reads the exposition on stdin; skipped when it is not installed,
/// unless `FLIN_REQUIRE_PROMTOOL=1` (CI installs it, and must not pass without it).
fn promtool_check(text: &str) {
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if std::env::var("FLIN_REQUIRE_PROMTOOL").as_deref() == Ok("1") => {
            panic!("FLIN_REQUIRE_PROMTOOL=1 but promtool cannot run: {e}")
        }
        Err(_) => {
            eprintln!("promtool is not on PATH: `promtool check metrics` skipped");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_endpoint_answers_with_its_type() {
    let admin = start(&[]);
    let health = get(admin.addr, "/health", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(
        health.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.header("Connection"), Some("close"));
    let ready = get(admin.addr, "/ready", None);
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let stats = get(admin.addr, "/api/stats?pretty", None);
    assert_eq!(stats.status, 200);
    assert_eq!(stats.header("Content-Type"), Some("application/json"));
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    assert!(stats["uptime_seconds"].is_u64() && stats["engine"]["log_bytes"].is_u64());
    let metrics = get(admin.addr, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    check_exposition(&metrics.body);
    let cluster = get(admin.addr, "/api/cluster", None);
    assert_eq!(cluster.status, 200);
    assert_eq!(cluster.header("Content-Type"), Some("application/json"));
    assert_eq!(cluster.body, "{\"mode\":\"standalone\"}\n");
    assert_eq!(get(admin.addr, "/nope", None).status, 404);
    assert_eq!(get(admin.addr, "/index.html", None).status, 404);
    let head = exchange(admin.addr, b"HEAD /health HTTP/1.1\r\n\r\n");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("Content-Length"), Some("3"));
}

#[test]
fn metrics_move_with_their_events() {
    let admin = start(&[]);
    let before = get(admin.addr, "/metrics", None).body;
    let commands_before = sample(&before, "flin_commands_processed_total");
    let kv_before = sample(
        &before,
        "flin_command_duration_seconds_count{family=\"kv\"}",
    );
    assert_eq!(command(&admin.server, &[b"SET", b"k", b"v"]), "+OK\r\n");
    assert!(command(&admin.server, &[b"INCR", b"k"]).starts_with("-ERR"));
    command(&admin.server, &[b"QUEUE.DECLARE", b"jobs"]);
    command(&admin.server, &[b"QUEUE.PUSH", b"jobs", b"a"]);
    command(
        &admin.server,
        &[b"STREAM.CREATE", b"clicks", b"PARTITIONS", b"3"],
    );
    command(&admin.server, &[b"STREAM.PUBLISH", b"clicks", b"hello"]);
    command(
        &admin.server,
        &[
            b"DOC.INSERT",
            b"orders",
            br#"{"_id":1,"state":"new"}"#,
            br#"{"_id":2,"state":"paid"}"#,
        ],
    );
    command(&admin.server, &[b"DOC.INDEX", b"orders", b"state"]);
    // A name that needs escaping in a label.
    command(&admin.server, &[b"QUEUE.DECLARE", b"we\"ird\\q"]);

    let after = get(admin.addr, "/metrics", None).body;
    check_exposition(&after);
    promtool_check(&after);
    assert!(sample(&after, "flin_commands_processed_total") >= commands_before + 8.0);
    for (series, value) in [
        ("flin_commands_total{command=\"set\",result=\"ok\"}", 1.0),
        ("flin_commands_total{command=\"set\",result=\"error\"}", 0.0),
        (
            "flin_commands_total{command=\"incr\",result=\"error\"}",
            1.0,
        ),
        (
            "flin_commands_total{command=\"doc.insert\",result=\"ok\"}",
            1.0,
        ),
        ("flin_cluster_role{role=\"standalone\"}", 1.0),
    ] {
        assert_eq!(sample(&after, series), value, "{series}");
    }
    // SET and INCR, each from parse to reply, in the kv family's histogram.
    let kv = "flin_command_duration_seconds_count{family=\"kv\"}";
    assert_eq!(sample(&after, kv), kv_before + 2.0);
    assert_eq!(
        sample(
            &after,
            "flin_command_duration_seconds_bucket{family=\"kv\",le=\"+Inf\"}"
        ),
        kv_before + 2.0
    );
    // Every command's request and reply went through the loops' byte counters.
    for series in [
        "flin_network_received_bytes_total",
        "flin_network_sent_bytes_total",
    ] {
        assert!(sample(&after, series) > sample(&before, series), "{series}");
    }
    assert!(
        sample(&after, "flin_connections_received_total")
            > sample(&before, "flin_connections_received_total")
    );
    assert_eq!(
        sample(&after, "flin_engine_namespace_keys{namespace=\"kv\"}"),
        1.0
    );
    assert_eq!(sample(&after, "flin_kv_keys"), 1.0);
    assert_eq!(sample(&after, "flin_queue_ready{queue=\"jobs\"}"), 1.0);
    assert_eq!(
        sample(&after, "flin_queue_pushed_total{queue=\"jobs\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "flin_queue_ready{queue=\"we\\\"ird\\\\q\"}"),
        0.0
    );
    assert_eq!(
        sample(&after, "flin_stream_partitions{topic=\"clicks\"}"),
        3.0
    );
    assert_eq!(sample(&after, "flin_stream_records{topic=\"clicks\"}"), 1.0);
    assert_eq!(
        sample(&after, "flin_doc_documents{collection=\"orders\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "flin_doc_index_entries{collection=\"orders\",index=\"state_1\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(&after, "flin_metrics_series_dropped{model=\"queue\"}"),
        0.0
    );
    assert!(
        sample(&after, "flin_engine_writes_total") > sample(&before, "flin_engine_writes_total")
    );

    command(&admin.server, &[b"DOC.INSERT", b"orders", br#"{"_id":3}"#]);
    let stats: serde_json::Value =
        serde_json::from_str(&get(admin.addr, "/api/stats", None).body).unwrap();
    let orders = &stats["documents"]["shown"][0];
    assert_eq!(
        (orders["name"].as_str(), orders["documents"].as_u64()),
        (Some("orders"), Some(3))
    );
    assert_eq!(stats["queues"]["total"], 2);
    assert_eq!(stats["commands"]["calls"]["doc.insert"], 2);
    assert_eq!(stats["commands"]["errors"]["incr"], 1);
    assert!(stats["latency"]["kv"]["p99_seconds"].as_f64().unwrap() > 0.0);
    assert!(stats["network"]["bytes_read"].as_u64().unwrap() > 0);
    assert_eq!(stats["cluster"]["role"], "standalone");
    assert_eq!(stats["streams"]["shown"][0]["records"], 1);
}

#[test]
fn refused_connections_are_counted() {
    let admin = start(&["--maxclients", "1"]);
    let metrics = |admin: &Admin| get(admin.addr, "/metrics", None).body;
    assert_eq!(
        sample(&metrics(&admin), "flin_connections_rejected_total"),
        0.0
    );
    let mut first = admin.server.connect();
    first.send(&resp(&[b"PING"]));
    assert_eq!(first.read_exact(7), b"+PONG\r\n");
    let mut second = admin.server.connect();
    let refusal = b"-ERR max number of clients reached\r\n";
    assert_eq!(second.read_exact(refusal.len()), refusal);
    let after = metrics(&admin);
    assert_eq!(sample(&after, "flin_connections_rejected_total"), 1.0);
    assert_eq!(sample(&after, "flin_connected_clients"), 1.0);
}

#[test]
fn the_password_guards_all_but_health() {
    let admin = start(&["--requirepass", "s3cret"]);
    assert_eq!(get(admin.addr, "/health", None).status, 200);
    for path in ["/", "/ready", "/api/stats", "/metrics", "/api/cluster"] {
        let refused = get(admin.addr, path, None);
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused
            .header("WWW-Authenticate")
            .unwrap()
            .starts_with("Basic realm="));
        assert_eq!(get(admin.addr, path, Some("Bearer wrong")).status, 401);
        assert_eq!(
            get(admin.addr, path, Some("Bearer s3cret")).status,
            200,
            "{path}"
        );
        // "prometheus:s3cret"
        let basic = Some("Basic cHJvbWV0aGV1czpzM2NyZXQ=");
        assert_eq!(get(admin.addr, path, basic).status, 200, "{path}");
    }
    // An unknown path is 404 with or without the password.
    assert_eq!(get(admin.addr, "/secret", None).status, 404);
}

#[test]
fn hostile_http_gets_an_error_and_the_data_port_keeps_serving() {
    let admin = start(&[]);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(exchange(admin.addr, huge.as_bytes()).status, 431);
    let post = exchange(
        admin.addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    assert_eq!(
        exchange(admin.addr, b"DELETE / HTTP/1.1\r\n\r\n").status,
        405
    );
    assert_eq!(
        exchange(admin.addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").status,
        400
    );
    assert_eq!(exchange(admin.addr, b"GET\r\n\r\n").status, 400);

    // A client that connects and sends nothing holds its own thread for its request timeout
    // (2 s) and no other request (slow_clients_hold_neither... below has seven).
    let mut slow = TcpStream::connect(admin.addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let next = std::thread::spawn({
        let addr = admin.addr;
        move || get(addr, "/health", None)
    });
    // Meanwhile the data port answers at once.
    let mut client = admin.server.connect();
    let ping_started = Instant::now();
    client.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
    assert!(ping_started.elapsed() < Duration::from_secs(1));
    assert_eq!(next.join().unwrap().status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    // The slow client was answered 408 and closed.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply:?}");
    client.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
}

/// Sends `request` and reads whatever comes back until the server closes or resets the
/// connection: a server that refuses before reading everything may reset, and the response
/// it wrote first is still read (Linux hands queued bytes over before the error). `None` if
/// nothing came back.
fn exchange_lenient(addr: SocketAddr, request: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may stop reading (and reset) before a large request is all written.
    let _ = stream.write_all(request);
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        headers: lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
    })
}

/// The `/api/stats` fields the dashboard reads, as dotted paths (`[]` steps into the first
/// element of an array); each must be in the JSON with a value of its kind, and its last
/// step must be named in the page, so a field renamed on one side fails here.
const DASHBOARD_FIELDS: &[(&str, &str)] = &[
    ("version", "string"),
    ("node_id", "string"),
    ("uptime_seconds", "number"),
    ("process.uptime_ms", "number"),
    ("process.rss_bytes", "number"),
    ("disk.data_dir_bytes", "number"),
    ("commands.processed", "number"),
    ("commands.calls", "object"),
    ("connections.connected", "number"),
    ("connections.received", "number"),
    ("connections.rejected", "number"),
    ("engine.keys", "number"),
    ("engine.kv_keys", "number"),
    ("engine.segments", "number"),
    ("engine.index_bytes", "number"),
    ("engine.log_bytes", "number"),
    ("engine.dead_bytes", "number"),
    ("engine.compactions", "number"),
    ("engine.flushes", "number"),
    ("engine.poisoned", "bool"),
    ("queues.total", "number"),
    ("queues.shown[].name", "string"),
    ("queues.shown[].ready", "number"),
    ("queues.shown[].in_flight", "number"),
    ("queues.shown[].dead_lettered", "number"),
    ("queues.shown[].consumers", "number"),
    ("queues.shown[].pushed", "number"),
    ("queues.shown[].acked", "number"),
    ("streams.total", "number"),
    ("streams.shown[].name", "string"),
    ("streams.shown[].partitions", "number"),
    ("streams.shown[].records", "number"),
    ("streams.shown[].bytes", "number"),
    ("streams.shown[].groups[].name", "string"),
    ("streams.shown[].groups[].members", "number"),
    ("streams.shown[].groups[].lag", "number"),
    ("documents.total", "number"),
    ("documents.shown[].name", "string"),
    ("documents.shown[].documents", "number"),
    ("documents.shown[].indexes[].name", "string"),
    ("documents.shown[].indexes[].entries", "number"),
    ("documents.shown[].indexes[].ready", "bool"),
    ("dropped.queues", "number"),
    ("dropped.topics", "number"),
    ("dropped.collections", "number"),
];

fn field<'a>(value: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.')
        .fold(value, |value, step| match step.strip_suffix("[]") {
            Some(name) => &value[name][0],
            None => &value[step],
        })
}

#[test]
fn the_dashboard_is_one_page_that_reads_its_own_origin() {
    let admin = start(&[]);
    let page = get(admin.addr, "/", None);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("Content-Security-Policy").expect("a CSP");
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
    assert!(page.body.starts_with("<!doctype html>"));
    assert!(page.body.contains("<canvas") && page.body.contains("<script>"));
    // Self-contained: no URL with a scheme or a host, no external script, style or image.
    for outside in [
        "http:", "https:", "ws:", "wss:", "src=", "href=", "<link", "@import", "url(",
    ] {
        assert!(!page.body.contains(outside), "the page has {outside:?}");
    }
    // What it fetches is relative to the page, and answers.
    let targets: Vec<&str> = page
        .body
        .split("getJson(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(targets, ["api/cluster", "api/stats"]);
    for target in targets {
        let reply = get(admin.addr, &format!("/{target}"), None);
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
    }
    let head = exchange(admin.addr, b"HEAD / HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        head.header("Content-Length"),
        Some(page.body.len().to_string().as_str())
    );
}

#[test]
fn stats_carry_every_field_the_dashboard_reads() {
    let admin = start(&[]);
    for args in [
        &[&b"QUEUE.DECLARE"[..], b"jobs"][..],
        &[b"QUEUE.PUSH", b"jobs", b"a"],
        &[b"STREAM.CREATE", b"clicks", b"PARTITIONS", b"2"],
        &[b"STREAM.PUBLISH", b"clicks", b"hello"],
        &[
            b"STREAM.JOIN",
            b"clicks",
            b"analytics",
            b"w1",
            b"RESET",
            b"EARLIEST",
        ],
        &[b"DOC.INSERT", b"users", br#"{"_id":1,"city":"Oslo"}"#],
        &[b"DOC.INDEX", b"users", b"city"],
    ] {
        let reply = command(&admin.server, args);
        assert!(!reply.starts_with('-'), "{args:?}: {reply}");
    }
    let stats: serde_json::Value =
        serde_json::from_str(&get(admin.addr, "/api/stats", None).body).unwrap();
    let page = get(admin.addr, "/", None).body;
    for (path, kind) in DASHBOARD_FIELDS {
        let value = field(&stats, path);
        let matches = match *kind {
            "string" => value.is_string(),
            "number" => value.is_u64(),
            "bool" => value.is_boolean(),
            "object" => value.is_object(),
            other => unreachable!("kind {other}"),
        };
        assert!(matches, "/api/stats {path}: want a {kind}, got {value}");
        let last = path.rsplit('.').next().unwrap();
        assert!(
            page.contains(last),
            "the page does not read {last} ({path})"
        );
    }
    assert_eq!(field(&stats, "streams.shown[].groups[].lag"), 1);
    assert!(field(&stats, "process.rss_bytes").as_u64().unwrap() > 0);
    assert!(field(&stats, "disk.data_dir_bytes").as_u64().unwrap() > 0);
    let metrics = get(admin.addr, "/metrics", None).body;
    assert!(sample(&metrics, "flin_process_resident_memory_bytes") > 0.0);
    assert!(sample(&metrics, "flin_data_dir_bytes") > 0.0);
}

#[test]
fn oversized_heads_are_refused_and_closed() {
    let admin = start(&[]);
    // 64 KiB of header: refused once past 8 KiB, the rest drained, then closed.
    let huge = format!(
        "GET /api/stats HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let refused = exchange_lenient(admin.addr, huge.as_bytes()).expect("a response");
    assert!(matches!(refused.status, 431 | 400), "{refused:?}");
    assert_eq!(refused.header("Connection"), Some("close"));
    // Many small headers: refused the same way.
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let refused = exchange_lenient(
        admin.addr,
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
    )
    .expect("a response");
    assert_eq!(refused.status, 431);
    // A head that never ends (4 MiB without an empty line): answered or reset, never held.
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(4 << 20));
    if let Some(reply) = exchange_lenient(admin.addr, endless.as_bytes()) {
        assert_eq!(reply.status, 431);
    }
    assert_eq!(get(admin.addr, "/health", None).status, 200);
    admin
        .server
        .connect()
        .roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn bad_methods_and_ambiguous_framing_are_refused() {
    let admin = start(&[]);
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get",
    ] {
        let reply = exchange(
            admin.addr,
            format!("{method} / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
    }
    for garbage in [
        &b"\x00\x01\x02\x03\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"*1\r\n$4\r\nPING\r\n\r\n",
    ] {
        let reply = exchange_lenient(admin.addr, garbage).expect("a response");
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(garbage));
    }
    // Request smuggling's basics: two lengths, or a length and chunked, are refused.
    for framing in [
        "Content-Length: 0\r\nContent-Length: 10",
        "Content-Length: 5\r\nContent-Length: 5",
        "Content-Length: 3\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked",
        "Content-Length: +5",
    ] {
        let request = format!("GET /health HTTP/1.1\r\nHost: flin\r\n{framing}\r\n\r\n");
        assert_eq!(
            exchange(admin.addr, request.as_bytes()).status,
            400,
            "{framing:?}"
        );
    }
    // A second request hidden in the first one's body is never answered: one request per
    // connection, then it closes.
    let reply = exchange(
        admin.addr,
        b"GET /health HTTP/1.1\r\nContent-Length: 36\r\n\r\nGET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
}

#[test]
fn slow_clients_hold_neither_other_requests_nor_the_data_port() {
    let admin = start(&[]);
    // Seven clients send half a request and stall, leaving one place of eight.
    let mut slow: Vec<TcpStream> = (0..7)
        .map(|_| {
            let mut stream = TcpStream::connect(admin.addr).unwrap();
            stream.write_all(b"GET /api/stats HTTP/1.1\r\nHo").unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    for path in ["/health", "/api/stats", "/", "/metrics"] {
        assert_eq!(get(admin.addr, path, None).status, 200, "{path}");
    }
    // Served one at a time, these would have waited for the seven to time out (7 x 2 s).
    // The bound is for liveness only, far above what they take.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let mut client = admin.server.connect();
    client.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
    // Each stalled client is answered 408 and closed.
    for stream in &mut slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 408 "), "{reply:?}");
    }
    client.roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
}

#[test]
fn past_eight_connections_the_admin_port_says_busy() {
    let admin = start(&[]);
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(admin.addr).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    let busy = exchange_lenient(admin.addr, b"GET /health HTTP/1.1\r\n\r\n").expect("a reply");
    assert_eq!((busy.status, busy.body.as_str()), (503, "busy\n"));
    assert_eq!(busy.header("Retry-After"), Some("1"));
    admin
        .server
        .connect()
        .roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
    drop(stalled);
    // The places come back as their connections end (at once here: the clients left).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = exchange_lenient(admin.addr, b"GET /health HTTP/1.1\r\n\r\n")
            .expect("a reply")
            .status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "still busy after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_admin_port_is_off_when_the_client_port_is_free_and_unnamed() {
    let data = tempfile::tempdir().unwrap();
    // ServerGuard passes --port 0: no admin port unless named; the server still serves.
    let server = ServerGuard::start(data.path(), &[]);
    server.connect().roundtrip(&resp(&[b"PING"]), b"+PONG\r\n");
}
