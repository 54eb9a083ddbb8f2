//! Collector access tokens: only their SHA-256 hashes are stored, so a copy
//! of the store gives nobody access.

use crate::Store;
use crate::error::{Result, StoreError};
use rusqlite::params;

/// A stored token, without the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Its role name (`agent`, `viewer`, `admin`).
    pub role: String,
    /// A label for humans.
    pub name: String,
    /// When it was created.
    pub created: plumb_model::Timestamp,
}

impl Store {
    /// Stores a token's hash with its role and label.
    pub fn add_token(&self, hash: &[u8; 32], role: &str, name: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO tokens (hash, role, name, created_ns) VALUES (?1, ?2, ?3, ?4)",
            params![
                plumb_model::hex(hash),
                role,
                name,
                plumb_model::Timestamp::now().as_nanos()
            ],
        )?;
        Ok(())
    }

    /// Every stored token, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut st = self
            .conn()
            .prepare("SELECT hash, role, name, created_ns FROM tokens ORDER BY created_ns")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hex, role, name, created) = row?;
            let hash = parse_hash(&hex).ok_or_else(|| {
                StoreError::Corrupt(format!("token hash `{hex}` is not 64 hex digits"))
            })?;
            out.push(TokenInfo {
                hash,
                role,
                name,
                created: plumb_model::Timestamp::from_nanos(created),
            });
        }
        Ok(out)
    }

    /// Deletes the token with this hash, so it stops working (a running
    /// collector rereads its tokens every second). Returns whether it
    /// existed.
    /// Its dashboard sessions go with it.
    pub fn delete_token(&self, hash: &[u8; 32]) -> Result<bool> {
        let hex = plumb_model::hex(hash);
        let tx = self.conn().unchecked_transaction()?;
        tx.execute("DELETE FROM sessions WHERE token_hash = ?1", params![hex])?;
        let n = tx.execute("DELETE FROM tokens WHERE hash = ?1", params![hex])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Stores a dashboard session (the hash of its id) opened with the
    /// token whose hash is `token`.
    pub fn add_session(&self, hash: &[u8; 32], token: &[u8; 32]) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sessions (hash, token_hash, created_ns) VALUES (?1, ?2, ?3)",
            params![
                plumb_model::hex(hash),
                plumb_model::hex(token),
                plumb_model::Timestamp::now().as_nanos()
            ],
        )?;
        Ok(())
    }

    /// Deletes a dashboard session (logging out). Returns whether it
    /// existed.
    pub fn delete_session(&self, hash: &[u8; 32]) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM sessions WHERE hash = ?1",
            params![plumb_model::hex(hash)],
        )?;
        Ok(n > 0)
    }

    /// The (session hash, role) of every session opened since `since` whose
    /// token still exists.
    pub fn session_hashes(&self, since: plumb_model::Timestamp) -> Result<Vec<([u8; 32], String)>> {
        let mut st = self.conn().prepare(
            "SELECT s.hash, t.role FROM sessions s JOIN tokens t ON t.hash = s.token_hash \
             WHERE s.created_ns >= ?1",
        )?;
        let rows = st.query_map(params![since.as_nanos()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (hex, role) = row?;
            let hash = parse_hash(&hex).ok_or_else(|| {
                StoreError::Corrupt(format!("session hash `{hex}` is not 64 hex digits"))
            })?;
            out.push((hash, role));
        }
        Ok(out)
    }

    /// The (hash, role) of every stored token.
    pub fn token_hashes(&self) -> Result<Vec<([u8; 32], String)>> {
        Ok(self
            .tokens()?
            .into_iter()
            .map(|t| (t.hash, t.role))
            .collect())
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_round_trip_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let hash = [7u8; 32];
        store.add_token(&hash, "viewer", "ci").unwrap();
        assert_eq!(
            store.token_hashes().unwrap(),
            vec![(hash, "viewer".to_string())]
        );
        assert!(store.add_token(&hash, "agent", "dup").is_err());
        assert!(store.delete_token(&hash).unwrap());
        assert!(!store.delete_token(&hash).unwrap(), "already gone");
        assert!(store.token_hashes().unwrap().is_empty());
    }

    #[test]
    fn sessions_end_with_their_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let (token, session, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        store.add_token(&token, "viewer", "web").unwrap();
        store.add_session(&session, &token).unwrap();
        store.add_session(&other, &token).unwrap();
        let epoch = plumb_model::Timestamp::from_nanos(0);
        assert_eq!(store.session_hashes(epoch).unwrap().len(), 2);
        assert!(store.delete_session(&other).unwrap());
        // A session survives reopening the store (a collector restart).
        drop(store);
        let store = crate::Store::open(dir.path()).unwrap();
        assert_eq!(
            store.session_hashes(epoch).unwrap(),
            vec![(session, "viewer".to_string())]
        );
        // Too old to count.
        let later = plumb_model::Timestamp::from_nanos(i64::MAX);
        assert!(store.session_hashes(later).unwrap().is_empty());
        // Revoking the token ends it.
        assert!(store.delete_token(&token).unwrap());
        assert!(store.session_hashes(epoch).unwrap().is_empty());
    }
}
