//! The web dashboard: server-side rendered HTML on the collector's own
//! listener, beside the API it mirrors.
//!
//! | page | JSON twin | what |
//! |---|---|---|
//! | `/` | | redirects to `/runs` |
//! | `/runs?q=` | `/api/v1/pages/runs?q=` | runs, qualifier search, keyset pages, runs per interval by state (`chart`) |
//! | `/runs/{id}` | `/api/v1/pages/runs/{id}` | one run: record, output (live tail), spans, logs |
//! | `/jobs/{name}` | `/api/v1/pages/jobs/{name}` | a job's history: durations with the p50..p95 band, failure rate per day |
//! | `/runs/{id}/diff` | `/api/v1/pages/runs/{id}/diff` | the diff against the previous run of its name |
//! | `/nodes` | `/api/v1/pages/nodes` | nodes, disks, fingerprint outliers |
//! | `/nodes/{name}` | `/api/v1/nodes/{name}` | one node and its state history |
//! | `/search?q=` | `/api/v1/pages/search?q=` | output lines, log records and spans, linked to their run and trace |
//! | `/traces/{id}` | `/api/v1/traces/{id}` | one trace: spans as a waterfall, each with its log records |
//! | `/errors` | `/api/v1/errors` | error groups with new / regressed markers |
//! | `/errors/{fp}` | `/api/v1/errors/{fp}` | one group: occurrences over time (first seen, regressed, resolved marked), hosts, sample, occurrences |
//! | `/alerts` | `/api/v1/alerts` | firing and resolved alerts, rules |
//! | `/timeline` | `/api/v1/timeline` | the clock-corrected timeline, one lane per host |
//! | `/login` | | a form that stores a viewer token in a cookie |
//!
//! Each page's data comes from one `*_data` function that both the HTML
//! handler and its JSON twin call, so the two never disagree. Every value
//! that reaches HTML passes through [`esc`]. Assets are embedded in the
//! binary and served under a content hash with year-long caching; there is
//! no CDN, font or framework, and every page works without JavaScript except
//! the live parts (running durations, the output tail).

mod alerts;
mod errors;
mod jobs;
mod nodes;
mod preflight;
mod runs;
mod search;
pub mod status;
mod timeline;
mod traces;

pub(crate) use errors::add_chart as add_error_chart;

use crate::AppState;
use crate::auth::{self, Role};
use crate::error::ApiError;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use plumb_model::Timestamp;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::LazyLock;

/// The routes of the dashboard and of its JSON twins.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runs") }))
        .route("/assets/{tag}/{file}", get(asset))
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent(&asset_url("favicon.svg")) }),
        )
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .merge(runs::routes())
        .merge(jobs::routes())
        .merge(nodes::routes())
        .merge(preflight::routes())
        .merge(search::routes())
        .merge(traces::routes())
        .merge(errors::routes())
        .merge(alerts::routes())
        .merge(timeline::routes())
        .merge(status::routes())
}

/// Escapes text for HTML element content and quoted attribute values. The
/// one place user data becomes HTML: every page calls it for every value.
pub fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Percent-encodes a value for a URL query or path segment.
pub fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        body: include_bytes!("assets/style.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        name: "live.js",
        body: include_bytes!("assets/live.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        name: "favicon.svg",
        body: include_bytes!("assets/favicon.svg"),
        content_type: "image/svg+xml",
    },
];

/// A hash of every asset: part of their URLs, so a new binary's assets are
/// never mixed with cached old ones.
static ASSET_TAG: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in ASSETS {
        h.update(a.name.as_bytes());
        h.update(a.body);
    }
    plumb_model::hex(&h.finalize()[..6])
});

/// The URL of an embedded asset.
pub fn asset_url(name: &str) -> String {
    format!("/assets/{}/{name}", *ASSET_TAG)
}

async fn asset(Path((tag, file)): Path<(String, String)>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    // An old tag still gets the current file, but not for long: only the
    // current tag is immutable.
    let cache = if tag == *ASSET_TAG {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        a.body,
    )
        .into_response()
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Runs.
    Runs,
    /// Nodes.
    Nodes,
    /// Search.
    Search,
    /// Error groups.
    Errors,
    /// Alerts.
    Alerts,
    /// The merged timeline.
    Timeline,
    /// Anything else.
    None,
}

/// Wraps a page body in the common layout: skip link, navigation, the
/// search box (`/` focuses it), the stylesheet and the script.
pub fn layout(title: &str, nav: Nav, search: &str, body: &str) -> Html<String> {
    let item = |n: Nav, href: &str, label: &str| {
        let current = if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    let mut s = String::with_capacity(body.len() + 2048);
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · plumb</title>\
<link rel=\"icon\" href=\"{icon}\" type=\"image/svg+xml\">\
<link rel=\"stylesheet\" href=\"{css}\">\
<script src=\"{js}\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header class=\"top\"><a class=\"brand\" href=\"/runs\">plumb</a><nav aria-label=\"Sections\">{runs} {nodes} {errors} {alerts} {timeline} {search_link} <a href=\"/status\">Status</a></nav>\
<form role=\"search\" action=\"/search\" method=\"get\"><label for=\"q\" class=\"skip\">Search output and logs</label>\
<input id=\"q\" name=\"q\" type=\"search\" placeholder=\"Search output and logs (press /)\" value=\"{sv}\"><button type=\"submit\">Search</button></form>\
</header><main id=\"main\" tabindex=\"-1\">{body}</main></body></html>\n",
        title = esc(title),
        icon = asset_url("favicon.svg"),
        css = asset_url("style.css"),
        js = asset_url("live.js"),
        runs = item(Nav::Runs, "/runs", "Runs"),
        nodes = item(Nav::Nodes, "/nodes", "Nodes"),
        errors = item(Nav::Errors, "/errors", "Errors"),
        alerts = item(Nav::Alerts, "/alerts", "Alerts"),
        timeline = item(Nav::Timeline, "/timeline", "Timeline"),
        search_link = item(Nav::Search, "/search", "Search"),
        sv = esc(search),
    );
    Html(s)
}

/// A failed page: the API error rendered as HTML with its status.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self.0, "page failed");
        }
        let body = format!(
            "<h1>{} {}</h1><p class=\"error-box\">{}</p><p><a href=\"/runs\">Back to runs</a></p>",
            status.as_u16(),
            esc(status.canonical_reason().unwrap_or("")),
            esc(&self.0.to_string())
        );
        let mut resp = (status, layout("Error", Nav::None, "", &body)).into_response();
        if let Some(secs) = self.0.retry_after() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

/// Extractor for pages: like [`auth::Viewer`], but a browser without a
/// token is sent to the login form instead of getting a JSON 401.
#[derive(Debug, Clone, Copy)]
pub struct PageViewer;

/// Why a page request was refused.
#[derive(Debug)]
pub enum PageAuthRejection {
    /// Not logged in: go to the login form, then come back.
    Login(String),
    /// Anything else (wrong role, store down).
    Error(PageError),
}

impl IntoResponse for PageAuthRejection {
    fn into_response(self) -> Response {
        match self {
            PageAuthRejection::Login(next) => {
                Redirect::to(&format!("/login?next={}", url_enc(&next))).into_response()
            }
            PageAuthRejection::Error(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for PageViewer {
    type Rejection = PageAuthRejection;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, PageAuthRejection> {
        match auth::require(state, &parts.headers, Role::Viewer).await {
            Ok(()) => Ok(PageViewer),
            Err(ApiError::Unauthorized(_)) => Err(PageAuthRejection::Login(
                parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
            )),
            Err(e) => Err(PageAuthRejection::Error(PageError(e))),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path on this collector may follow a login, never another site:
/// it must start with a single `/`, and neither it nor its percent-decoded
/// form may hold `//` at the start, a backslash or a control character
/// (browsers drop tabs and newlines, so `/\t/host` becomes `//host`).
/// Anything else goes to `/`.
fn safe_next(next: Option<&str>) -> &str {
    let Some(n) = next else { return "/" };
    let decoded = percent_decode(n);
    let ok = |p: &str| {
        let b = p.as_bytes();
        b.first() == Some(&b'/')
            && b.get(1) != Some(&b'/')
            && !p.contains('\\')
            && !p.chars().any(|c| c.is_control())
    };
    if ok(n) && ok(&decoded) { n } else { "/" }
}

/// `%XX` sequences decoded (as Latin-1 bytes, enough to see control
/// characters and slashes); invalid sequences are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(char::from((h * 16 + l) as u8));
            i += 3;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

fn login_page(next: &str, error: Option<&str>) -> Html<String> {
    let err = error
        .map(|e| format!("<p class=\"error-box\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Log in</h1>{err}<p>This collector requires a token. Paste a viewer token \
(create one with <code>plumb token create --role viewer</code>); it is kept in an \
HttpOnly cookie for this site only.</p>\
<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
<p><label for=\"token\">Token</label><br><input id=\"token\" name=\"token\" type=\"password\" \
autocomplete=\"current-password\" size=\"70\" required autofocus></p>\
<p><button type=\"submit\">Log in</button></p></form>",
        next = esc(next)
    );
    layout("Log in", Nav::None, "", &body)
}

async fn login_form(Query(q): Query<NextQuery>) -> Html<String> {
    login_page(safe_next(q.next.as_deref()), None)
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(state): State<AppState>, axum::Form(form): axum::Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref()).to_string();
    let token = form.token.trim().to_string();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Err(e) = auth::require(&state, &headers, Role::Viewer).await {
        return (e.status(), login_page(&next, Some(&e.to_string()))).into_response();
    }
    // The cookie holds a session id, never the token itself: the store
    // keeps the id's hash bound to the token, so revoking the token ends
    // the session, and a stolen cookie is not a token usable elsewhere.
    let session = match auth::open_session(&state, &token).await {
        Ok(id) => id,
        Err(e) => return (e.status(), login_page(&next, Some(&e.to_string()))).into_response(),
    };
    let secure = if state.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        auth::COOKIE,
        auth::SESSION_LIFETIME.as_secs()
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::close_session(&state, &headers).await {
        return PageError(e).into_response();
    }
    let secure = if state.tls { "; Secure" } else { "" };
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        auth::COOKIE
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Durations as everywhere in plumb (`plumb_model::display`).
pub use plumb_model::display::duration as human_duration;

/// A time cell: UTC to the second, with the full time as a tooltip.
pub fn time_cell(t: Timestamp) -> String {
    format!(
        "<time datetime=\"{full}\" title=\"{full}\">{short}</time>",
        full = t.to_rfc3339(),
        short = t.to_rfc3339_secs().replace('T', " ").trim_end_matches('Z')
    )
}

/// "x ago" relative to now.
pub fn ago(t: Timestamp) -> String {
    format!(
        "{} ago",
        human_duration(Timestamp::now().as_nanos() - t.as_nanos())
    )
}

/// Sizes as everywhere in plumb (`plumb_model::display`).
pub use plumb_model::display::size as bytes;

/// A state badge.
pub fn badge(state: &str) -> String {
    format!("<span class=\"state st-{s}\">{s}</span>", s = esc(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_neutralizes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert!(matches!(esc("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn login_never_redirects_off_site() {
        assert_eq!(safe_next(Some("/runs/abc")), "/runs/abc");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
        // Issue 21: browsers drop tabs and newlines, making `//host`.
        assert_eq!(safe_next(Some("/\t/127.0.0.1:9/phish")), "/");
        assert_eq!(safe_next(Some("/%09/127.0.0.1:9/phish")), "/");
        assert_eq!(safe_next(Some("/runs\nSet-Cookie: x=1")), "/");
        assert_eq!(safe_next(Some("/%2F/evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/%5Cevil.example")), "/");
        assert_eq!(safe_next(Some("/runs?q=a%20b")), "/runs?q=a%20b");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(5_000_000), "5ms");
        assert_eq!(human_duration(42_000_000_000), "42s");
        assert_eq!(human_duration(185_000_000_000), "3m05s");
        assert_eq!(human_duration(7_800_000_000_000), "2h10m");
    }

    /// Issue 13, item 13: the dashboard's ticking durations (live.js) and
    /// every other duration shown read alike. Runs the script's own
    /// function in node when node is installed (CI installs it for the
    /// dashboard tests).
    #[test]
    fn live_durations_read_as_the_cli_prints_them() {
        let js = include_str!("assets/live.js");
        let start = js
            .find("function human(ns) {")
            .expect("live.js has human()");
        let end = start + js[start..].find("\n  }\n").expect("human() ends") + 4;
        let values: Vec<i64> = vec![
            -5,
            0,
            1,
            999_999,
            5_000_000,
            999_999_999,
            1_000_000_000,
            4_250_000_000,
            9_999_999_999,
            10_000_000_000,
            59_900_000_000,
            60_000_000_000,
            119_000_000_000,
            3_599_000_000_000,
            3_600_000_000_000,
            86_399_000_000_000,
            86_400_000_000_000,
            200_000_000_000_000,
        ];
        let script = format!(
            "{}\nconsole.log([{}].map(human).join(\"\\n\"));",
            &js[start..end],
            values
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let out = match std::process::Command::new("node")
            .arg("-e")
            .arg(&script)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("skipped: node is not installed ({e})");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        let want: Vec<String> = values.iter().map(|v| human_duration(*v)).collect();
        assert_eq!(got.lines().collect::<Vec<_>>(), want);
    }
}
