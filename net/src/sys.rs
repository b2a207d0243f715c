//! The crate's only `unsafe` code: the socket calls std does not offer.
//! Linux-only, like the rest of the daemon.
//!
//! - A listening socket with `SO_REUSEPORT`: each event loop gets its own
//!   listener on the same port, and the kernel spreads incoming connections
//!   across them: no acceptor thread, no hand-off channel, and a busy loop
//!   does not delay accepts on the others.
//! - A one-syscall, non-blocking peek at an idle client socket
//!   ([`peek_idle`]), so the client's pool finds connections the server
//!   closed (a restart) before it sends a request on them (and the cluster
//!   transport, a restarted peer).
//! - A `send(2)` that never blocks on a blocking socket ([`send_nonblocking`]).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd};

/// Pending connections the kernel queues per listener before refusing more.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// A non-blocking listener bound to `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`, so several of them can share one port.
pub(crate) fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes no pointers; a negative result is handled below.
    let fd = unsafe { libc::socket(domain, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we just created and nothing else owns; the
    // listener takes ownership and closes it on drop, also on every error
    // path below.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    set_flag(&listener, libc::SO_REUSEADDR)?;
    set_flag(&listener, libc::SO_REUSEPORT)?;
    bind(&listener, addr)?;
    // SAFETY: listen() takes no pointers; `fd` is a valid bound socket.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

fn set_flag(listener: &TcpListener, option: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the pointer and length describe `on`, a live c_int on the
    // stack for the duration of the call; the fd is owned by `listener`.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind(listener: &TcpListener, addr: SocketAddr) -> io::Result<()> {
    let result = match addr {
        SocketAddr::V4(v4) => {
            let raw = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the pointer and length describe `raw`, a fully
            // initialised sockaddr_in that outlives the call.
            unsafe {
                libc::bind(
                    listener.as_raw_fd(),
                    (&raw as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(v6) => {
            let raw = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: as above, for a fully initialised sockaddr_in6.
            unsafe {
                libc::bind(
                    listener.as_raw_fd(),
                    (&raw as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a non-blocking peek at an idle client connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleSocket {
    /// Nothing to read: the connection is still open as far as we know.
    Quiet,
    /// The peer closed or reset it (end of stream, or an error is pending).
    Closed,
    /// Bytes arrived that no request asked for: the stream is out of step.
    UnexpectedBytes,
}

/// Peeks at `stream` without blocking and without consuming anything:
/// `recv(MSG_PEEK | MSG_DONTWAIT)` is one syscall, where std's `peek` on a
/// blocking socket would need two more to switch it to non-blocking and back.
pub fn peek_idle(stream: &std::net::TcpStream) -> IdleSocket {
    let mut byte = 0u8;
    // SAFETY: the pointer and length describe `byte`, a live u8 on the stack
    // for the duration of the call; the fd is owned by `stream`, which the
    // borrow keeps open. MSG_PEEK leaves the data in the socket.
    let received = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match received {
        0 => IdleSocket::Closed,
        n if n > 0 => IdleSocket::UnexpectedBytes,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => IdleSocket::Quiet,
            _ => IdleSocket::Closed,
        },
    }
}

/// `send(2)` without blocking on a socket that may be in blocking mode
/// (`MSG_DONTWAIT`), and without SIGPIPE: the bytes the socket took, 0 when it
/// would block, or the error that ends the connection. The cluster transport's
/// raft thread writes a peer's small messages this way, never waiting on a
/// slow peer.
pub fn send_nonblocking(stream: &std::net::TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `bytes`, a live slice for the
    // duration of the call; the fd is owned by `stream`, which the borrow keeps
    // open.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent >= 0 {
        return Ok(sent as usize);
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_tells_quiet_from_closed_and_unexpected() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(peek_idle(&client), IdleSocket::Quiet);
        server.write_all(b"x").unwrap();
        // Loopback delivers at once, but do not rely on timing: wait for it.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.peek(&mut [0u8; 1]).unwrap();
        assert_eq!(peek_idle(&client), IdleSocket::UnexpectedBytes);
        let mut other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        drop(peer);
        other
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut other, &mut [0u8; 1]).unwrap(), 0);
        assert_eq!(peek_idle(&other), IdleSocket::Closed);
    }

    #[test]
    fn two_listeners_share_an_ephemeral_port() {
        let first = reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let second = reuseport_listener(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
    }
}
