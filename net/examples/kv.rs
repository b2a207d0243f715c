//! The key-value calls of the Rust client against a running server.
//!
//!     cargo run --release -p flin-server -- --memory &
//!     cargo run -p flin-net --example kv [-- 127.0.0.1:7380]

use std::time::Duration;

use flin_net::client::{Client, ClientOptions, Error, SetOptions, Ttl};

fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7380".into());
    // A password, if the server runs with --requirepass: FLIN_PASSWORD=... cargo run ...
    let mut options = ClientOptions::new().pool_size(4);
    if let Ok(password) = std::env::var("FLIN_PASSWORD") {
        options = options.password(password);
    }
    let client = Client::connect_with(addr.as_str(), options)?;
    let kv = client.kv();

    kv.set("greeting", "hello")?;
    let greeting = kv.get("greeting")?.unwrap_or_default();
    println!("greeting = {}", String::from_utf8_lossy(&greeting));

    // SET with a TTL, and only if the key is new (SET ... PX ... NX).
    let fresh = SetOptions::new().ttl(Duration::from_secs(60)).if_absent();
    let stored = kv.set_with("session:42", "alice", fresh)?;
    println!("session:42 stored: {stored}");
    match kv.ttl("session:42")? {
        Ttl::Expires(left) => println!("session:42 expires in {} ms", left.as_millis()),
        Ttl::Persistent => println!("session:42 never expires"),
        Ttl::Missing => println!("session:42 is gone"),
    }

    println!("visits = {}", kv.incr("visits")?);
    println!("visits = {}", kv.incr_by("visits", 10)?);

    kv.mset(&[("user:1", "ada"), ("user:2", "grace"), ("user:3", "edsger")])?;
    let names = kv.mget(&["user:1", "user:2", "user:9"])?;
    println!("mget: {names:?}");

    let mut users: Vec<String> = kv
        .scan()
        .pattern("user:*")
        .map(|key| key.map(|k| String::from_utf8_lossy(&k).into_owned()))
        .collect::<Result<_, _>>()?;
    users.sort();
    println!("scan user:* -> {users:?}");

    // A server error names its status and message; the connection stays usable.
    match kv.incr("greeting") {
        Err(Error::Server(error)) => {
            println!("incr greeting: {:?} {}", error.status, error.message)
        }
        other => println!("incr greeting: {other:?}"),
    }

    println!(
        "deleted {} user keys",
        kv.mdel(&["user:1", "user:2", "user:3"])?
    );
    println!("greeting existed: {}", kv.del("greeting")?);
    Ok(())
}
