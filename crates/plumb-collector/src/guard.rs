//! Checks every request passes before any route sees it, against browsers
//! being turned on the collector by other sites, and the headers that keep
//! the dashboard's pages from being framed or sniffed.
//!
//! - **Host** (DNS rebinding): while the collector answers without a token
//!   (loopback with no tokens, or `--insecure`), a page on
//!   `attacker.example` whose name resolves to 127.0.0.1 could read it, as
//!   the browser sees one origin. So the `Host` header must then be an IP
//!   address (a rebinding attack needs a name of its own), `localhost`, or
//!   a name allowed with `--allow-host`; anything else gets 421 naming the
//!   host. With tokens, a page elsewhere has no token to send.
//! - **Cross-site writes**: a request that changes state (any method but
//!   GET, HEAD, OPTIONS) without a bearer token, sent by a browser (it
//!   carries `Origin` or `Sec-Fetch-Site`), must come from this origin;
//!   otherwise 403 naming the origin. A browser cannot add a bearer token
//!   to a cross-site request without a CORS preflight, which the collector
//!   never grants. Clients that are not browsers (agents, SDKs, curl) send
//!   neither header and are checked by their token alone.
//! - **Headers** on every answer: `Content-Security-Policy` (scripts, styles
//!   and everything else from this origin only; inline `style` attributes
//!   allowed, as bar widths are drawn with them; no framing),
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: same-origin`.

use crate::AppState;
use crate::auth::{self, Role};
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The policy sent with every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The middleware: see the module documentation.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&state, req.method(), req.headers()).await {
        let mut resp = e.into_response();
        security_headers(resp.headers_mut());
        return resp;
    }
    let mut resp = next.run(req).await;
    security_headers(resp.headers_mut());
    resp
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// Why a request was refused before routing.
#[derive(Debug)]
enum Refused {
    /// 421: a host name this collector does not answer to.
    Host(String),
    /// 403 and the like: from `ApiError`.
    Api(ApiError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Host(host) => (
                axum::http::StatusCode::MISDIRECTED_REQUEST,
                axum::Json(serde_json::json!({
                    "error": format!(
                        "this collector does not answer to the host name `{host}`: reach it by its IP address or localhost, or start it with --allow-host {host}"
                    )
                })),
            )
                .into_response(),
            Refused::Api(e) => e.into_response(),
        }
    }
}

async fn check(state: &AppState, method: &Method, headers: &HeaderMap) -> Result<(), Refused> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Open: a request with no credentials at all would be let in.
    let open = auth::require(state, &HeaderMap::new(), Role::Viewer)
        .await
        .is_ok();
    if open && !host.is_empty() && !host_allowed(host, &state.limits.allowed_hosts) {
        return Err(Refused::Host(host.to_owned()));
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || auth::bearer(headers).is_some() {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match (origin, fetch_site) {
        // Not a browser.
        (None, None) => Ok(()),
        (Some(o), _) if same_origin(o, host) => Ok(()),
        (None, Some(site)) if site == "same-origin" || site == "none" => Ok(()),
        (o, site) => Err(Refused::Api(ApiError::Forbidden(format!(
            "a browser request from another site ({}) cannot change anything here: send it from this collector's own pages, or with `Authorization: Bearer <token>`",
            o.or(site).unwrap_or("unknown")
        )))),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host in `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    !host.is_empty() && rest.eq_ignore_ascii_case(host)
}

/// Whether a `Host` header may reach an open collector: any IP address,
/// `localhost` (and names under `.localhost`, which resolve to loopback),
/// or an allowed name (with or without its port).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let lower = name.to_ascii_lowercase();
    let lower = lower.trim_end_matches('.');
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || strip_port(a).eq_ignore_ascii_case(lower))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_cannot_be_rebound_are_allowed() {
        let none: &[String] = &[];
        for h in [
            "127.0.0.1:7700",
            "127.0.0.1",
            "[::1]:7700",
            "localhost:7700",
            "LOCALHOST",
            "app.localhost",
            "10.1.2.3:7700",
        ] {
            assert!(host_allowed(h, none), "{h}");
        }
        for h in [
            "attacker.example",
            "attacker.example:7700",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(h, none), "{h}");
        }
        let allowed = vec!["collector.internal".to_string()];
        assert!(host_allowed("collector.internal:7700", &allowed));
        assert!(!host_allowed("other.internal:7700", &allowed));
    }

    #[test]
    fn origins_match_their_host_exactly() {
        assert!(same_origin("http://127.0.0.1:7700", "127.0.0.1:7700"));
        assert!(!same_origin("http://127.0.0.1:7701", "127.0.0.1:7700"));
        assert!(!same_origin("null", "127.0.0.1:7700"));
        assert!(!same_origin("https://evil.example", "127.0.0.1:7700"));
    }
}
