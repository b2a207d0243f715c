//! Pipelining: many requests in one write, replies read in order, and the
//! pool shared by threads.
//!
//!     cargo run --release -p flin-server -- --memory &
//!     cargo run -p flin-net --example pipeline [-- 127.0.0.1:7380]

use std::time::Instant;

use flin_net::client::{Client, ClientOptions, Error, Reply};

const KEYS: usize = 10_000;
const PIPELINE_DEPTH: usize = 100;

fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7380".into());
    let client = Client::connect_with(addr.as_str(), ClientOptions::new().pool_size(4))?;

    // 10,000 SETs, 100 per write.
    let started = Instant::now();
    let mut pipeline = client.pipeline();
    for chunk_start in (0..KEYS).step_by(PIPELINE_DEPTH) {
        for i in chunk_start..chunk_start + PIPELINE_DEPTH {
            pipeline.kv().set(format!("item:{i}"), format!("value {i}"));
        }
        for reply in pipeline.execute()? {
            // Each request has its own outcome: a server error for one does not fail the rest.
            if let Err(error) = reply {
                eprintln!("a SET was refused: {}", error.message);
            }
        }
    }
    println!("{KEYS} pipelined SETs in {:?}", started.elapsed());

    // Mixed requests: each reply is the variant its method's doc names.
    pipeline
        .kv()
        .get("item:7")
        .incr("pipelined-counter")
        .exists("item:99999")
        .mget(&["item:1", "item:2"]);
    let replies = pipeline.execute()?;
    if let Ok(Reply::Value(Some(value))) = &replies[0] {
        println!("item:7 = {}", String::from_utf8_lossy(value));
    }
    println!("replies: {:?}", &replies[1..]);

    // Four threads share one client (its pool has 4 connections).
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || -> Result<(), Error> {
                for i in (t..KEYS).step_by(4) {
                    client.kv().get(format!("item:{i}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("reader thread")?;
    }
    println!(
        "{KEYS} GETs from 4 threads in {:?} over {} connections",
        started.elapsed(),
        client.open_connections()
    );
    Ok(())
}
