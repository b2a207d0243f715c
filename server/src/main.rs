//! The `flin-server` binary: parse flags, run the daemon, exit 0 after a clean shutdown.

use flin_server::config::{parse_args, Invocation, HELP};

fn main() {
    match parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Help) => print!("{HELP}"),
        Ok(Invocation::Version) => println!("flin-server {}", env!("CARGO_PKG_VERSION")),
        Ok(Invocation::Run(options)) => {
            if let Err(message) = flin_server::daemon::run(options) {
                flin_server::log::error("server", &message);
                std::process::exit(1);
            }
        }
        // A usage error, before any log is set up: a plain line, as for --help.
        Err(message) => {
            eprintln!("flin-server: {message}");
            std::process::exit(2);
        }
    }
}
