//! The daemon's log through the real binary: `--log-format json` writes one JSON object per
//! line with time, level, subsystem and message; startup logs the config and the recovery
//! report; `--log-level warn` leaves the info events out.

mod common;

use std::io::Read;

use common::ServerGuard;

/// Starts a server with `flags`, stops it with SIGTERM, and returns its stderr.
fn log_of_a_run(flags: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let (server, mut stderr) = ServerGuard::start_logging(data.path(), flags);
    let mut client = server.connect();
    client.send(b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(client.read_exact(7), b"+PONG\r\n");
    assert!(server.terminate().success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    log
}

#[test]
fn json_lines_carry_time_level_subsystem_and_message() {
    let log = log_of_a_run(&["--log-format", "json"]);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line:?}"))
        })
        .collect();
    for event in &events {
        let time = event["time"].as_str().expect("time");
        // RFC 3339 in UTC with milliseconds: 2026-12-05T19:24:39.123Z.
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert!(["error", "warn", "info", "debug"].contains(&event["level"].as_str().unwrap()));
        assert!(event["subsystem"].is_string() && event["message"].is_string());
    }
    let message = |subsystem: &str, start: &str| {
        events.iter().any(|e| {
            e["subsystem"] == subsystem && e["message"].as_str().unwrap().starts_with(start)
        })
    };
    assert!(
        message("server", "flin-server "),
        "config at startup: {log}"
    );
    assert!(
        events[0]["message"].as_str().unwrap().contains("fsync=")
            && events[0]["message"]
                .as_str()
                .unwrap()
                .contains("log_format=Json"),
        "{log}"
    );
    assert!(message("engine", "recovered in "), "recovery report: {log}");
    assert!(message("server", "listening on "), "{log}");
    assert!(message("server", "stopped cleanly"), "{log}");
}

#[test]
fn text_lines_by_default_and_warn_leaves_info_out() {
    let log = log_of_a_run(&[]);
    let first = log.lines().next().expect("a startup line");
    // `2026-12-05T19:24:39.123Z info server: flin-server ... starting: ...`
    let mut fields = first.splitn(4, ' ');
    let (time, level, subsystem) = (fields.next(), fields.next(), fields.next());
    assert_eq!(time.map(str::len), Some(24), "{first}");
    assert_eq!(
        (level, subsystem),
        (Some("info"), Some("server:")),
        "{first}"
    );

    let quiet = log_of_a_run(&["--log-level", "warn"]);
    assert_eq!(quiet, "", "a clean run logs nothing at warn or above");
}
