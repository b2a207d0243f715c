//! flin-server, engine-only stub: opens (recovering) the data directory and reports what it
//! found. The network server arrives with issue 3.

use std::process::ExitCode;

use flin_engine::{Config, Durability, Engine};

const USAGE: &str = "usage: flin-server [--data DIR] [--memory] [--fsync always|everysec|no]

  --data DIR     data directory (default ./data)
  --memory       keep everything in memory, no files
  --fsync POLICY always | everysec (default) | no
  --help         this text";

fn main() -> ExitCode {
    let mut data = String::from("./data");
    let mut memory = false;
    let mut durability = Durability::EverySec;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next().ok_or(format!("{flag} needs a value"))
        };
        let parsed = match flag.as_str() {
            "--data" => value(&mut args).map(|v| data = v),
            "--memory" => {
                memory = true;
                Ok(())
            }
            "--fsync" => value(&mut args).and_then(|v| v.parse().map(|d| durability = d)),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown flag '{other}'")),
        };
        if let Err(message) = parsed {
            eprintln!("flin-server: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let config = if memory {
        Config::memory()
    } else {
        Config::directory(&data)
    }
    .durability(durability);
    let engine = match Engine::open(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("flin-server: cannot open the engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = engine.recovery_report();
    println!(
        "flin-server {} (engine only): data {}, {} keys recovered in {} ms from {} segments; Ctrl-C to stop",
        env!("CARGO_PKG_VERSION"),
        if memory { "in memory".to_string() } else { data },
        report.keys,
        report.duration.as_millis(),
        report.segments
    );
    loop {
        std::thread::park();
    }
}
