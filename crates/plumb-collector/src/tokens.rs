//! Making and checking tokens. The store keeps only hashes
//! ([`plumb_store::Store::add_token`]); the token itself is shown once.

use crate::auth::Role;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
pub fn create(store: &plumb_store::Store, role: Role, name: &str) -> Result<String, TokenError> {
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
