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
    "PASS",
    "_PWD",
    "PWD_",
    "CONNECTION_STRING",
    "CONNSTR",
    "WEBHOOK",
    "KUBECONFIG",
    "ACCOUNTKEY",
    "ACCOUNT_KEY",
    "SAS_",
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

    /// `value` itself, or its marker when the name or the value is secret;
    /// secrets inside an ordinary value are replaced one by one
    /// ([`Redactor::redact_text`]).
    pub fn redact(&self, name: &str, value: &str) -> String {
        if self.is_secret_name(name) || self.is_secret_value(value) {
            self.marker(value)
        } else {
            self.redact_text(value)
        }
    }

    /// `text` with every secret inside it replaced by its marker: PEM
    /// private keys, passwords and long keys in URLs, `key=value` and
    /// `"key": "value"` pairs whose key names a secret (`password=`,
    /// `AccountKey=`, `secret=`, ...), `Authorization:` and `Bearer`
    /// credentials, and well-known token formats (GitHub, GitLab, Slack,
    /// AWS, OpenAI, Stripe, Hugging Face, npm, PyPI, Google, SendGrid,
    /// JWTs, Slack webhooks). Text without any is returned unchanged.
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = std::borrow::Cow::Borrowed(text);
        for pattern in secret_patterns() {
            if !pattern.is_match(&out) {
                continue;
            }
            let replaced = pattern
                .replace_all(&out, |c: &regex::Captures<'_>| {
                    let whole = c.get(0).expect("group 0");
                    let secret = c.name("s").unwrap_or(whole);
                    let mut r = String::with_capacity(whole.len());
                    r.push_str(&text_of(&out, whole.start(), secret.start()));
                    r.push_str(&self.marker(secret.as_str()));
                    r.push_str(&text_of(&out, secret.end(), whole.end()));
                    r
                })
                .into_owned();
            out = std::borrow::Cow::Owned(replaced);
        }
        out.into_owned()
    }

    /// A command line as recorded: each argument through
    /// [`Redactor::redact_text`], and the argument after a flag that names
    /// a secret (`--password hunter2`, `--token X`) replaced whole.
    pub fn redact_argv(&self, argv: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(argv.len());
        let mut next_is_secret = false;
        for a in argv {
            if next_is_secret {
                out.push(self.marker(a));
                next_is_secret = false;
                continue;
            }
            if let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-'))
                && !flag.is_empty()
                && !flag.contains('=')
                && flag.len() > 1
                && self.is_secret_name(&flag.replace('-', "_"))
            {
                next_is_secret = true;
            }
            out.push(self.redact_text(a));
        }
        out
    }

    /// Every field of a run record that holds text the program's user
    /// wrote or its environment held, redacted: name, command line, tags,
    /// environment values, configuration file contents, the exception
    /// chain's messages. The output itself is left as the program wrote it.
    pub fn redact_run(&self, run: &mut plumb_model::Run) {
        run.name = self.redact_text(&run.name);
        run.argv = self.redact_argv(&run.argv);
        run.tags = std::mem::take(&mut run.tags)
            .into_iter()
            .map(|(k, v)| {
                let v = self.redact(&k, &v);
                (self.redact_text(&k), v)
            })
            .collect();
        for v in run.env.values_mut() {
            if !is_marker(v) {
                *v = self.redact_text(v);
            }
        }
        for c in &mut run.config_files {
            if let Some(text) = c.content.as_mut() {
                *text = self.redact_text(text);
            }
        }
        if let Some(e) = run.exception.as_mut() {
            self.redact_exception(e);
        }
        for pm in &mut run.postmortem {
            pm.message = self.redact_text(&pm.message);
            for local in pm.frames.iter_mut().flat_map(|f| f.locals.iter_mut()) {
                // Whole when the name looks secret, secret-looking parts
                // otherwise, as environment values are.
                local.value = self.redact(&local.name, &local.value);
            }
        }
        run.warnings = run.warnings.iter().map(|w| self.redact_text(w)).collect();
    }

    fn redact_exception(&self, e: &mut plumb_model::Exception) {
        e.message = self.redact_text(&e.message);
        for c in &mut e.causes {
            self.redact_exception(c);
        }
    }
}

fn is_marker(v: &str) -> bool {
    v.starts_with("[redacted:") && v.ends_with(']')
}

fn text_of(s: &str, from: usize, to: usize) -> String {
    s[from..to].to_string()
}

/// The patterns of [`Redactor::redact_text`]; the group `s`, where there is
/// one, is the secret (else the whole match is).
fn secret_patterns() -> &'static [regex::Regex] {
    static PATTERNS: std::sync::LazyLock<Vec<regex::Regex>> = std::sync::LazyLock::new(|| {
        [
            // PEM private keys, also inside JSON strings (escaped newlines)
            // and cut short.
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)",
            // URL passwords, and long keys alone in a URL's user part.
            r#"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@'"]*:(?P<s>[^/\s@'"]+)@"#,
            r"(?i)\b[a-z][a-z0-9+.-]*://(?P<s>[A-Za-z0-9_\-.~%]{16,})@",
            // key=value and "key": "value" pairs whose key names a secret.
            r#"(?i)(?:^|[^a-z0-9])[a-z0-9_]*?(?:password|passwd|pwd|pass|passphrase|secret|token|accountkey|sharedaccesskey|apikey|api_key|api-key|access_key|client_secret|credential|sig|signature)"?\s*[=:]\s*"?(?P<s>[^\s;&,"'}\]\\]+)"#,
            // HTTP credentials.
            r#"(?i)authorization\s*[:=]\s*"?(?:(?:bearer|basic|token|digest)\s+)?(?P<s>[^\s"']{8,})"#,
            r"(?i)\bbearer\s+(?P<s>[A-Za-z0-9._~+/=-]{16,})",
            // Token formats (after gitleaks' rules).
            r"\b(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{20,}",
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bglpat-[A-Za-z0-9_-]{20,}",
            r"\bxox[abeprs]-[A-Za-z0-9-]{10,}",
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            r"\bsk-[A-Za-z0-9_-]{20,}",
            r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"\bhf_[A-Za-z0-9]{20,}",
            r"\bnpm_[A-Za-z0-9]{30,}",
            r"\bpypi-[A-Za-z0-9_-]{40,}",
            r"\bAIza[0-9A-Za-z_-]{35}",
            r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+",
        ]
        .iter()
        .map(|p| regex::Regex::new(p).expect("secret patterns compile"))
        .collect()
    });
    &PATTERNS
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

    /// Issue 21, item 5: each of these secrets is found inside an ordinary
    /// value and replaced; the text around it stays readable.
    #[test]
    fn secrets_inside_values_are_replaced_and_the_rest_kept() {
        let r = Redactor::new(b"k");
        let cases: &[(&str, &str, &str)] = &[
            // (name, value, the secret that must not survive)
            ("MYSQL_PWD", "s3cr3t-mysql", "s3cr3t-mysql"),
            ("SSHPASS", "s3cr3t-ssh", "s3cr3t-ssh"),
            ("PGPASS", "s3cr3t-pg", "s3cr3t-pg"),
            ("DB_PASS", "s3cr3t-db", "s3cr3t-db"),
            (
                "SLACK_WEBHOOK_URL",
                "https://example.invalid/hook/abc",
                "hook/abc",
            ),
            (
                "KUBECONFIG_DATA",
                "YXBpVmVyc2lvbjogdjE=",
                "YXBpVmVyc2lvbjogdjE=",
            ),
            (
                "JDBC_URL",
                "jdbc:mysql://db:3306/app?user=u&password=s3cr3t-jdbc&ssl=1",
                "s3cr3t-jdbc",
            ),
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=s3cr3tAzureKey==;EndpointSuffix=x",
                "s3cr3tAzureKey",
            ),
            (
                "SETTINGS",
                "{\"key\": \"-----BEGIN RSA PRIVATE KEY-----\\nMIIEs3cr3tPem\\n-----END RSA PRIVATE KEY-----\"}",
                "MIIEs3cr3tPem",
            ),
            (
                "UPSTREAM",
                "https://abcdef0123456789s3cr3t@api.example.invalid/v1",
                "abcdef0123456789s3cr3t",
            ),
            (
                "HF_HOME_X",
                "hf_abcdefghijklmnopqrstuvwxyz012345",
                "hf_abcdefghijklmnopqrstuvwxyz012345",
            ),
            (
                "STRIPE",
                "sk_live_abcdefghijklmnop1234",
                "sk_live_abcdefghijklmnop1234",
            ),
            ("NOTE", "call with token=s3cr3t-tag please", "s3cr3t-tag"),
            ("NOTE", "postgres://u:s3cr3t-pw@h/db", "s3cr3t-pw"),
        ];
        for (name, value, secret) in cases {
            let out = r.redact(name, value);
            assert!(!out.contains(secret), "{name}={value} -> {out}");
            assert!(out.contains("[redacted:"), "{name}={value} -> {out}");
        }
        let argv: Vec<String> = [
            "curl",
            "-H",
            "Authorization: Bearer abcdef0123456789abcdef",
            "--password=s3cr3t-flag",
            "--token",
            "s3cr3t-next",
            "https://example.invalid/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = r.redact_argv(&argv).join(" ");
        for secret in ["abcdef0123456789abcdef", "s3cr3t-flag", "s3cr3t-next"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(
            out.starts_with("curl -H Authorization: Bearer [redacted:"),
            "{out}"
        );
        assert!(out.ends_with("https://example.invalid/x"), "{out}");
        // Ordinary text stays as it was.
        for plain in [
            "PATH=/usr/bin:/bin",
            "ssh://git@example.invalid/x.git",
            "bypass cache",
            "max_tokens=5",
            "3 of 10 passed",
        ] {
            assert_eq!(r.redact_text(plain), plain);
        }
        assert_eq!(r.redact("PWD", "/home/ann"), "/home/ann");
        assert_eq!(r.redact("OLDPWD", "/tmp"), "/tmp");
    }
}
