//! The admin port's HTTP/1.1, as pure functions: a request head in (bytes), a [`Request`] or
//! the error status to answer out; a [`Response`] in, bytes out; and the password check. No
//! sockets here (`admin::serve_connection` is the shell).
//!
//! Only what an operator's tools send is accepted: GET or HEAD of a path, a head of at most
//! [`HEAD_BYTES_MAX`] bytes with at most [`HEADERS_MAX`] headers, and no ambiguous body framing
//! ([`check_framing`]). Bodies are ignored (a GET has none) and every response closes the
//! connection, so there is no keep-alive state to get wrong.

/// Largest request head (request line and headers) read: past it, 431.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// Most headers in a request: past it, 431 (curl sends 3, Prometheus 5).
pub const HEADERS_MAX: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    /// GET's headers without the body.
    Head,
}

/// A request the admin port answers.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
    /// The `Authorization` header's value, if sent.
    pub authorization: Option<Vec<u8>>,
}

/// What the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A head not yet ended by an empty line, within the limits: read more.
    Incomplete,
    Request(Request),
    /// A request refused before routing, with the status to answer.
    Refused(Status),
}

/// The statuses the admin port answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 200,
    BadRequest = 400,
    Unauthorized = 401,
    NotFound = 404,
    MethodNotAllowed = 405,
    RequestTimeout = 408,
    HeadersTooLarge = 431,
    ServiceUnavailable = 503,
}

impl Status {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// Parses the head of a request from the bytes read so far (`buffer` may hold more than the
/// head; the rest is ignored).
pub fn parse(buffer: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Partial) if buffer.len() > HEAD_BYTES_MAX => {
            Parsed::Refused(Status::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Ok(httparse::Status::Complete(head_bytes)) if head_bytes > HEAD_BYTES_MAX => {
            Parsed::Refused(Status::HeadersTooLarge)
        }
        Ok(httparse::Status::Complete(_)) => {
            let method = match request.method {
                Some("GET") => Method::Get,
                Some("HEAD") => Method::Head,
                _ => return Parsed::Refused(Status::MethodNotAllowed),
            };
            if let Err(status) = check_framing(request.headers) {
                return Parsed::Refused(status);
            }
            let target = request.path.unwrap_or("/");
            // Origin form only (`/path?query`): no absolute URLs (this is no proxy) and no `*`.
            if !target.starts_with('/') {
                return Parsed::Refused(Status::BadRequest);
            }
            let path = target.split_once('?').map_or(target, |(path, _)| path);
            let authorization = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| h.value.to_vec());
            Parsed::Request(Request {
                method,
                path: path.to_string(),
                authorization,
            })
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(Status::HeadersTooLarge),
        Err(_) => Parsed::Refused(Status::BadRequest),
    }
}

/// Refuses what could frame a body differently here and in a proxy in front (request
/// smuggling, RFC 9112 section 6.3): more than one `Content-Length`, one that is not a
/// number, or any `Transfer-Encoding` (the port never reads a body, so it has no use for
/// chunked). Every connection closes after one response anyway; this keeps a proxy that
/// reuses its upstream connections from being told two stories.
fn check_framing(headers: &[httparse::Header]) -> Result<(), Status> {
    let mut content_lengths = 0;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Status::BadRequest);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            content_lengths += 1;
            let digits = !header.value.is_empty() && header.value.iter().all(u8::is_ascii_digit);
            if content_lengths > 1 || !digits {
                return Err(Status::BadRequest);
            }
        }
    }
    Ok(())
}

/// A response; always `Connection: close`.
#[derive(Debug)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Headers beyond the ones every response has (`WWW-Authenticate`, `Allow`).
    pub headers: Vec<(&'static str, &'static str)>,
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
/// Prometheus's text exposition format, version 0.0.4.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A short text response naming the status (errors).
    pub fn status(status: Status) -> Response {
        Response::new(
            status,
            TEXT,
            format!("{}\n", status.reason().to_lowercase()),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }

    /// The bytes on the wire; a HEAD's response has GET's headers (its Content-Length too)
    /// and no body.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Whether an `Authorization` header carries `password`: `Bearer <password>`, or `Basic` with
/// base64 of `<any user>:<password>` (Redis's `requirepass` has no user names). The password
/// is compared in constant time.
pub fn authorized(authorization: Option<&[u8]>, password: &[u8]) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, credentials) = (&value[..space], trim(&value[space + 1..]));
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return constant_time_eq(credentials, password);
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let Some(decoded) = base64_decode(credentials) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        return constant_time_eq(&decoded[colon + 1..], password);
    }
    false
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = (given.len() != expected.len()) as u8;
    for (i, &byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(i).copied().unwrap_or(!byte);
    }
    difference == 0
}

/// Standard base64 (RFC 4648, with or without padding), as HTTP Basic sends it; `None` if
/// malformed. Twenty lines do not justify a crate.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = match text.iter().position(|&b| b == b'=') {
        Some(pad) if text[pad..].iter().all(|&b| b == b'=') && text.len().is_multiple_of(4) => {
            &text[..pad]
        }
        Some(_) => return None,
        None => text,
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= sextet(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Parsed {
        parse(text.as_bytes())
    }

    #[test]
    fn requests_and_refusals() {
        assert_eq!(
            request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer pw\r\n\r\n"),
            Parsed::Request(Request {
                method: Method::Get,
                path: "/metrics".into(),
                authorization: Some(b"Bearer pw".to_vec()),
            })
        );
        assert!(matches!(
            request("HEAD /health HTTP/1.0\r\n\r\n"),
            Parsed::Request(Request {
                method: Method::Head,
                ..
            })
        ));
        assert_eq!(request("GET /health HTTP/1.1\r\nHost"), Parsed::Incomplete);
        assert_eq!(
            request("POST /health HTTP/1.1\r\n\r\n"),
            Parsed::Refused(Status::MethodNotAllowed)
        );
        assert_eq!(
            request("\x16\x03\x01garbage\r\n\r\n"),
            Parsed::Refused(Status::BadRequest)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(HEAD_BYTES_MAX));
        assert_eq!(request(&big), Parsed::Refused(Status::HeadersTooLarge));
        for smuggled in [
            "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://elsewhere/ HTTP/1.1\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                request(smuggled),
                Parsed::Refused(Status::BadRequest),
                "{smuggled:?}"
            );
        }
        assert!(matches!(
            request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Parsed::Request(_)
        ));
        let many: String = (0..=HEADERS_MAX).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            request(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Parsed::Refused(Status::HeadersTooLarge)
        );
    }

    #[test]
    fn responses_close_and_head_has_no_body() {
        let response = Response::new(Status::Ok, TEXT, "ok\n");
        let get = String::from_utf8(response.encode(false)).unwrap();
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get.contains("Content-Length: 3\r\n") && get.contains("Connection: close\r\n"));
        assert!(get.ends_with("\r\n\r\nok\n"));
        let head = String::from_utf8(response.encode(true)).unwrap();
        assert!(head.ends_with(
            "Content-Length: 3\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        ));
    }

    #[test]
    fn bearer_and_basic_carry_the_password() {
        let pw = b"s3cret";
        assert!(authorized(Some(b"Bearer s3cret"), pw));
        assert!(authorized(Some(b"bearer  s3cret "), pw));
        assert!(!authorized(Some(b"Bearer s3cre"), pw));
        assert!(!authorized(Some(b"Bearer s3cret!"), pw));
        assert!(!authorized(None, pw));
        // "prom:s3cret", "default:s3cret" (padded), ":s3cret".
        assert!(authorized(Some(b"Basic cHJvbTpzM2NyZXQ="), pw));
        assert!(authorized(Some(b"Basic ZGVmYXVsdDpzM2NyZXQ="), pw));
        assert!(authorized(Some(b"Basic OnMzY3JldA=="), pw));
        assert!(!authorized(Some(b"Basic cHJvbTp3cm9uZw=="), pw)); // prom:wrong
        assert!(!authorized(Some(b"Basic !!!"), pw));
        assert!(!authorized(Some(b"Digest s3cret"), pw));
    }

    #[test]
    fn base64_round_trips_what_clients_send() {
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert_eq!(base64_decode(b"Zg==").unwrap(), b"f");
        assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode(b"Zm9v").unwrap(), b"foo");
        assert_eq!(base64_decode(b"Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode(b"Zm=9v"), None);
        assert_eq!(base64_decode(b"Z"), None);
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
    }
}
