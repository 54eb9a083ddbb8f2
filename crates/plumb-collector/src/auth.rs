//! Who may do what: bearer tokens with a role.
//!
//! A token is 32 random bytes, shown once as `plumb_<64 hex digits>`; the
//! store keeps only its SHA-256. Presented tokens are hashed and compared
//! against every stored hash in constant time.
//!
//! When auth is on: always when any token exists in the store, and always
//! when the collector listens on a non-loopback address (which, without
//! tokens, it refuses to do unless `--insecure`). A collector on loopback
//! with no tokens is open to local users, so one machine needs no setup.
//! `--insecure` switches checks off entirely.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read runs, logs, nodes, metrics.
    Viewer,
    /// Write: ingest runs, logs, node reports.
    Agent,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}`: use agent, viewer or admin"
            )),
        }
    }
}

/// The auth state shared by all requests.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    /// Checks switched off (`--insecure`).
    disabled: bool,
    /// Listening on a non-loopback address: auth on even without tokens.
    required: bool,
    cache: Mutex<TokenCache>,
}

#[derive(Debug)]
struct TokenCache {
    /// (SHA-256 of the token, role).
    tokens: Vec<([u8; 32], Role)>,
    /// (SHA-256 of a dashboard session id, its token's role).
    sessions: Vec<([u8; 32], Role)>,
    loaded: Option<Instant>,
}

/// How long a dashboard session lasts (the cookie's Max-Age too).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a loaded token list is trusted before it is read again, so
/// tokens created (or revoked) while the collector runs take effect soon.
const TOKEN_REFRESH: Duration = Duration::from_secs(1);

impl Auth {
    /// Auth as configured: `disabled` with `--insecure`; `required` when
    /// listening on a non-loopback address.
    pub fn new(disabled: bool, required: bool) -> Auth {
        Auth {
            inner: Arc::new(AuthInner {
                disabled,
                required,
                cache: Mutex::new(TokenCache {
                    tokens: Vec::new(),
                    sessions: Vec::new(),
                    loaded: None,
                }),
            }),
        }
    }

    /// Replaces the known token hashes (called with what the store holds).
    pub fn set_tokens(&self, tokens: Vec<([u8; 32], Role)>) {
        let mut c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.tokens = tokens;
        c.loaded = Some(Instant::now());
    }

    /// Replaces the known dashboard sessions.
    pub fn set_sessions(&self, sessions: Vec<([u8; 32], Role)>) {
        let mut c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.sessions = sessions;
    }

    /// Makes the next check reread tokens and sessions from the store (after
    /// a login or logout changed them).
    pub fn invalidate(&self) {
        let mut c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.loaded = None;
    }

    /// Checks a dashboard session id (from the cookie) for `needed`.
    pub fn check_session(&self, session: &str, needed: Role) -> Result<(), ApiError> {
        if self.inner.disabled {
            return Ok(());
        }
        let c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.tokens.is_empty() && !self.inner.required {
            return Ok(());
        }
        let hash = hash_token(session);
        let mut found: Option<Role> = None;
        for (h, role) in &c.sessions {
            if ct_eq(h, &hash) {
                found = Some(*role);
            }
        }
        match found {
            Some(role) if role.allows(needed) => Ok(()),
            Some(role) => Err(ApiError::Forbidden(format!(
                "a {} session cannot do this: it needs a {} token",
                role.as_str(),
                needed.as_str()
            ))),
            None => Err(ApiError::Unauthorized(
                "the dashboard session is not known (logged out, expired, or its token was revoked): log in again".into(),
            )),
        }
    }

    /// Whether anyone who reaches the collector may do anything: auth
    /// disabled, or no token created yet (as of the last check).
    pub fn open(&self) -> bool {
        if self.inner.disabled {
            return true;
        }
        let c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.tokens.is_empty() && !self.inner.required
    }

    fn stale(&self) -> bool {
        let c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.loaded.is_none_or(|t| t.elapsed() > TOKEN_REFRESH)
    }

    /// Checks `presented` (the bearer token, if any) against the known
    /// tokens for `needed`.
    pub fn check(&self, presented: Option<&str>, needed: Role) -> Result<(), ApiError> {
        if self.inner.disabled {
            return Ok(());
        }
        let c = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.tokens.is_empty() && !self.inner.required {
            return Ok(());
        }
        let Some(token) = presented else {
            return Err(ApiError::Unauthorized(format!(
                "this collector requires a token: send `Authorization: Bearer <token>` with a {} token (create one with `plumb token create --role {}`)",
                needed.as_str(),
                needed.as_str()
            )));
        };
        let hash = hash_token(token);
        let mut found: Option<Role> = None;
        for (h, role) in &c.tokens {
            // Every stored hash is compared, in constant time, so timing
            // says nothing about which (if any) matched.
            if ct_eq(h, &hash) {
                found = Some(*role);
            }
        }
        match found {
            None => Err(ApiError::Unauthorized(
                "the token presented is not known to this collector".into(),
            )),
            Some(role) if role.allows(needed) => Ok(()),
            Some(role) => Err(ApiError::Forbidden(format!(
                "a {} token cannot do this: it needs a {} token",
                role.as_str(),
                needed.as_str()
            ))),
        }
    }
}

/// The bearer token in `headers`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Checks that the request's token has `needed`, reloading the token list
/// from the store when it is stale. Usable from any route module.
pub async fn require(state: &AppState, headers: &HeaderMap, needed: Role) -> Result<(), ApiError> {
    if state.auth.inner.disabled {
        return Ok(());
    }
    if state.auth.stale() {
        let since = plumb_model::Timestamp::from_nanos(
            plumb_model::Timestamp::now()
                .as_nanos()
                .saturating_sub(SESSION_LIFETIME.as_nanos() as i64),
        );
        let (tokens, sessions) = state
            .db
            .read(move |s| Ok((s.token_hashes()?, s.session_hashes(since)?)))
            .await?;
        let parse = |v: Vec<([u8; 32], String)>| -> Vec<([u8; 32], Role)> {
            v.into_iter()
                .filter_map(|(h, r)| Some((h, r.parse().ok()?)))
                .collect()
        };
        state.auth.set_sessions(parse(sessions));
        state.auth.set_tokens(parse(tokens));
    }
    // The dashboard's login cookie stands in for a bearer header, for
    // reading only: a cookie is sent by the browser on its own, so it must
    // never authorize a write (no cross-site request can ingest). It holds
    // a session id, never the token: the store keeps the id's hash, bound
    // to the token, and revoking the token ends the session.
    if let Some(token) = bearer(headers) {
        return state.auth.check(Some(token), needed);
    }
    if needed == Role::Viewer
        && let Some(session) = cookie_session(headers)
    {
        return state.auth.check_session(session, needed);
    }
    state.auth.check(None, needed)
}

/// The name of the dashboard's login cookie, which holds a session id
/// (set by `/login`: HttpOnly, SameSite=Strict, Secure under TLS).
pub const COOKIE: &str = "plumb_session";

/// The session id in the dashboard's login cookie, if any.
pub fn cookie_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE && !v.is_empty()).then_some(v)
        })
}

/// What every session id starts with.
pub const SESSION_PREFIX: &str = "plumbs_";

/// Opens a dashboard session for `token` (already checked): stores the
/// hash of a new random id bound to the token's hash, and returns the id.
pub async fn open_session(state: &AppState, token: &str) -> Result<String, ApiError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| ApiError::Internal(format!("cannot get random bytes for a session: {e}")))?;
    let id = format!("{SESSION_PREFIX}{}", plumb_model::hex(&secret));
    let (hash, token_hash) = (hash_token(&id), hash_token(token));
    state
        .db
        .write(move |s| s.add_session(&hash, &token_hash))
        .await?;
    state.auth.invalidate();
    Ok(id)
}

/// Ends the session in the request's cookie, if any.
pub async fn close_session(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(id) = cookie_session(headers) else {
        return Ok(());
    };
    let hash = hash_token(id);
    state.db.write(move |s| s.delete_session(&hash)).await?;
    state.auth.invalidate();
    Ok(())
}

/// Extractor: the request carries a viewer (or admin) token when auth is on.
#[derive(Debug, Clone, Copy)]
pub struct Viewer;

/// Extractor: the request carries an agent (or admin) token when auth is on.
#[derive(Debug, Clone, Copy)]
pub struct Agent;

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(state, &parts.headers, Role::Viewer).await?;
        Ok(Viewer)
    }
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(state, &parts.headers, Role::Agent).await?;
        Ok(Agent)
    }
}

// Making and checking tokens. The store keeps only hashes
// ([`plumb_store::Store::add_token`]); the token itself is shown once.

/// What every token starts with, so one found in a log or a paste is
/// recognisable (and greppable by secret scanners).
pub const TOKEN_PREFIX: &str = "plumb_";

/// SHA-256 of a presented token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Equality of two hashes in time independent of where they differ.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Creates a token with `role`, stores its hash, and returns the token
/// (the only time it exists in clear).
pub fn create_token(
    store: &dyn plumb_store::Backend,
    role: Role,
    name: &str,
) -> Result<String, TokenError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", plumb_model::hex(&secret));
    store.add_token(&hash_token(&token), role.as_str(), name)?;
    Ok(token)
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The OS random source failed.
    #[error("cannot get random bytes for a token: {0}")]
    Random(String),
    /// The store refused it.
    #[error(transparent)]
    Store(#[from] plumb_store::StoreError),
}
