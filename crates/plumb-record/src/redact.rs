//! Secret redaction at capture: which names and values are secrets, and the
//! keyed hash that replaces them.
//!
//! A redacted value becomes `[redacted:<8 hex>]` where the hex is a keyed
//! SHA-256 of the value, so two runs with the same secret still compare
//! equal in `plumb diff` while the value itself never reaches storage.

use plumb_model::redacted_marker;
use sha2::{Digest, Sha256};

/// Name fragments that mark a secret, matched case-insensitively anywhere in
/// the name. The default errs on the side of redacting.
pub const DEFAULT_SECRET_FRAGMENTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "AUTH",
    "SESSION",
    "COOKIE",
    "PRIVATE",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "SIGNING_KEY",
    "DSN",
];

/// Value prefixes of well-known credential formats, redacted whatever the name.
const SECRET_VALUE_PREFIXES: &[&str] = &[
    "-----BEGIN ",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "AKIA",
    "ASIA",
    "sk-",
    "eyJ", // a JWT
];

/// Which names and values are secrets, and the key of the hash that replaces
/// them.
#[derive(Clone)]
pub struct Redactor {
    key: Vec<u8>,
    fragments: Vec<String>,
    allow: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Redactor")
            .field("fragments", &self.fragments)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// The default rules with the given hash key.
    pub fn new(key: &[u8]) -> Redactor {
        Redactor {
            key: key.to_vec(),
            fragments: DEFAULT_SECRET_FRAGMENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allow: Vec::new(),
        }
    }

    /// Adds name fragments (case-insensitive) that mark secrets.
    pub fn with_extra_fragments<I: IntoIterator<Item = String>>(mut self, extra: I) -> Self {
        self.fragments
            .extend(extra.into_iter().map(|s| s.to_ascii_uppercase()));
        self
    }

    /// Names (exact, case-insensitive) that are never redacted by name.
    pub fn with_allowed_names<I: IntoIterator<Item = String>>(mut self, allow: I) -> Self {
        self.allow
            .extend(allow.into_iter().map(|s| s.to_ascii_uppercase()));
        self
    }

    /// Whether a variable or key of this name holds a secret.
    pub fn is_secret_name(&self, name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        if self.allow.contains(&upper) {
            return false;
        }
        if self.fragments.iter().any(|f| upper.contains(f.as_str())) {
            return true;
        }
        // `*_KEY` and a bare `KEY`, but not `KEYBOARD` or `MONKEY`.
        upper == "KEY"
            || upper.ends_with("_KEY")
            || upper.ends_with("-KEY")
            || upper.ends_with(".KEY")
    }

    /// Whether a value is a secret whatever its name: a URL with a password
    /// in it, or a well-known credential format.
    pub fn is_secret_value(&self, value: &str) -> bool {
        url_has_password(value)
            || SECRET_VALUE_PREFIXES
                .iter()
                .any(|p| value.starts_with(p) && value.len() >= p.len() + 8)
    }

    /// The marker that replaces `value`.
    pub fn marker(&self, value: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update([0u8]);
        h.update(value.as_bytes());
        let digest = h.finalize();
        redacted_marker(&plumb_model::hex(&digest[..4]))
    }

    /// `value` itself, or its marker when the name or the value is secret.
    pub fn redact(&self, name: &str, value: &str) -> String {
        if self.is_secret_name(name) || self.is_secret_value(value) {
            self.marker(value)
        } else {
            value.to_string()
        }
    }
}

/// `scheme://user:password@host...` with a non-empty password.
fn url_has_password(value: &str) -> bool {
    let Some(scheme_end) = value.find("://") else {
        return false;
    };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return false;
    };
    match authority[..at].split_once(':') {
        Some((_, pw)) => !pw.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUST_REDACT: &[&str] = &[
        "GITHUB_TOKEN",
        "API_TOKEN",
        "token",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "DB_PASSWORD",
        "MYSQL_PWD_PASSWORD",
        "PGPASSWORD",
        "LDAP_PASSWD",
        "API_KEY",
        "OPENAI_API_KEY",
        "STRIPE_KEY",
        "ACCESS_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "DOCKER_AUTH_CONFIG",
        "HTTP_AUTHORIZATION",
        "SESSION_ID",
        "COOKIE_JAR",
        "CLIENT_SECRET",
        "SSH_PRIVATE_KEY",
        "SENTRY_DSN",
        "GPG_PASSPHRASE",
        "jwt_signing_key",
        "KEY",
    ];
    const MUST_KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "LANG",
        "PWD",
        "TERM",
        "HOSTNAME",
        "PYTHONPATH",
        "LD_LIBRARY_PATH",
        "KEYBOARD_LAYOUT",
        "MONKEY",
        "SLURM_JOB_ID",
        "CUDA_VISIBLE_DEVICES",
    ];

    #[test]
    fn secret_names_are_redacted_and_others_kept() {
        let r = Redactor::new(b"k");
        for name in MUST_REDACT {
            assert!(r.is_secret_name(name), "{name} should be redacted");
        }
        for name in MUST_KEEP {
            assert!(!r.is_secret_name(name), "{name} should be kept");
        }
    }

    #[test]
    fn urls_with_passwords_are_secret_values() {
        let r = Redactor::new(b"k");
        assert!(r.is_secret_value("postgres://app:hunter2@db:5432/x"));
        assert!(r.is_secret_value("https://u:p@example.org/"));
        assert!(!r.is_secret_value("https://example.org/a@b"));
        assert!(!r.is_secret_value("https://user@example.org/"));
        assert!(!r.is_secret_value("/usr/bin:/bin"));
        assert!(r.is_secret_value("ghp_0123456789abcdefghij"));
    }

    #[test]
    fn markers_are_keyed_and_stable() {
        let a = Redactor::new(b"one");
        let b = Redactor::new(b"two");
        assert_eq!(a.marker("s3cret"), a.marker("s3cret"));
        assert_ne!(a.marker("s3cret"), a.marker("other"));
        assert_ne!(a.marker("s3cret"), b.marker("s3cret"));
        let out = a.redact("DB_PASSWORD", "s3cret");
        assert!(plumb_model::is_redacted(&out));
        assert!(!out.contains("s3cret"));
        assert_eq!(a.redact("PATH", "/bin"), "/bin");
    }

    #[test]
    fn allow_list_wins() {
        let r = Redactor::new(b"k").with_allowed_names(["GIT_AUTHOR_NAME".to_string()]);
        assert!(!r.is_secret_name("GIT_AUTHOR_NAME"));
        assert!(r.is_secret_name("GIT_AUTHOR_TOKEN"));
    }
}
