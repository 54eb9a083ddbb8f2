//! A credential that never prints.
//!
//! Bearer tokens travel in configs and clients that derive or implement
//! `Debug`, and a debug message (`tracing::debug!(?config)`, a panic, an
//! `unwrap` on a result holding one) would otherwise write the token to a
//! log. [`Secret`] holds such a value: its `Debug` prints `"<redacted>"`,
//! it has no `Display`, and the value is reached only through
//! [`Secret::expose`], so every place that uses it is easy to find.

use serde::Deserialize;

/// A credential (a bearer token) whose `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("plumb_agent_0123456789abcdef");
        let shown = format!("{s:?} {:?} {:#?}", Some(&s), vec![s.clone()]);
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(s.expose(), "plumb_agent_0123456789abcdef");
        let parsed: Secret = serde_json::from_str("\"tok-1\"").unwrap();
        assert_eq!(parsed.expose(), "tok-1");
    }
}
