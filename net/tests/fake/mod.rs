//! A scripted fake server for the client's tests (client.rs, queue_client.rs): each
//! connection is served on its own thread by a responder that sees every request's header
//! and body and says what bytes to send back, so a test controls exactly what the client
//! receives, malformed or late.

#![allow(dead_code)] // Each test file uses part of it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use flin_net::binary::{self, Header, HEADER_LEN, MAGIC, VERSION};

/// What the fake server does with one request.
pub enum Answer {
    /// Write these bytes (none: stay silent) and wait for the next request.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
}

/// Answers each request given its header and body.
pub type Responder = dyn Fn(&Header, &[u8]) -> Option<Answer> + Send + Sync;

/// A listener on 127.0.0.1 serving every connection with `respond`, each on
/// its own thread. The threads end when their client goes away; the
/// accepting one when the test process does.
pub fn fake_server(respond: Arc<Responder>) -> SocketAddr {
    fake_server_per_connection(move || {
        let respond = Arc::clone(&respond);
        move |header: &Header, body: &[u8]| respond(header, body)
    })
}

/// [`fake_server`] with state per connection: `new_connection` makes the responder of each
/// accepted connection (a server-side session: what it subscribed to, what is in flight).
pub fn fake_server_per_connection<F>(new_connection: impl Fn() -> F + Send + 'static) -> SocketAddr
where
    F: FnMut(&Header, &[u8]) -> Option<Answer> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let respond = new_connection();
            std::thread::spawn(move || serve(stream, respond));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, mut respond: impl FnMut(&Header, &[u8]) -> Option<Answer>) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        if stream.read_exact(&mut header).is_err() {
            return;
        }
        let header = binary::peek_header(&header).unwrap();
        let mut body = vec![0u8; header.body_len];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        match respond(&header, &body) {
            Some(Answer::Send(reply)) => {
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
            Some(Answer::SendAndClose(reply)) => {
                let _ = stream.write_all(&reply);
                return;
            }
            None => return,
        }
    }
}

/// A response frame with the given fields.
pub fn frame(opcode: u8, status: u8, request_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![MAGIC, VERSION, opcode, status];
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A push frame with a typed-value body.
pub fn push_frame(opcode: u8, write: impl FnOnce(&mut binary::ValueWriter<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    binary::encode_push(&mut out, opcode, write).unwrap();
    out
}
