//! `GET /`: the dashboard, one self-contained HTML page (inline CSS and JavaScript, charts
//! drawn by hand on `<canvas>`, no CDN, no build step) compiled into the binary. Once a second
//! it fetches `/api/stats` (same origin, so the browser resends the Basic credentials it was
//! asked for) and `/api/cluster`, and draws what it finds: a field the running version does
//! not report is left out, not an error, so the page works across versions of the stats.
//!
//! The Content-Security-Policy lets the page run its own inline script and style and talk to
//! its own origin only: nothing is loaded from elsewhere, and it cannot be framed.

use super::http::{self, Response, Status};

/// The page, as written in `dashboard.html`.
pub const PAGE: &str = include_str!("dashboard.html");

/// What the browser may do with the page: its inline code, requests to this origin, images
/// it draws itself (`data:`); no other host, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// The page's response.
pub fn page() -> Response {
    Response::new(Status::Ok, http::HTML, PAGE)
        .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for outside in ["http://", "https://", "//cdn", "src=\"//", "@import"] {
            assert!(!PAGE.contains(outside), "the page mentions {outside}");
        }
        assert!(PAGE.contains("getJson(\"api/stats\")"));
    }
}
