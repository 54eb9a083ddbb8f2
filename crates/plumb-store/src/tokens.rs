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

use crate::kit::parse_hash;

impl crate::backend::Tokens for Store {
    fn add_token(&self, hash: &[u8; 32], role: &str, name: &str) -> Result<()> {
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

    fn tokens(&self) -> Result<Vec<TokenInfo>> {
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

    fn delete_token(&self, hash: &[u8; 32]) -> Result<bool> {
        let hex = plumb_model::hex(hash);
        let tx = self.conn().unchecked_transaction()?;
        tx.execute("DELETE FROM sessions WHERE token_hash = ?1", params![hex])?;
        let n = tx.execute("DELETE FROM tokens WHERE hash = ?1", params![hex])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn add_session(&self, hash: &[u8; 32], token: &[u8; 32]) -> Result<()> {
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

    fn delete_session(&self, hash: &[u8; 32]) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM sessions WHERE hash = ?1",
            params![plumb_model::hex(hash)],
        )?;
        Ok(n > 0)
    }

    fn session_hashes(&self, since: plumb_model::Timestamp) -> Result<Vec<([u8; 32], String)>> {
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

    fn token_hashes(&self) -> Result<Vec<([u8; 32], String)>> {
        Ok(self
            .tokens()?
            .into_iter()
            .map(|t| (t.hash, t.role))
            .collect())
    }
}
