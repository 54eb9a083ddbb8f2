//! Configuration, input and output files named on the command line: size,
//! SHA-256, and the (redacted) content of small configuration files.
//!
//! Neither function fails: a file that cannot be read gives a
//! [`FileRecord`] whose `error` says why, since recording never fails the
//! job.

use plumb_model::FileRecord;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::Redactor;

/// Configuration files up to this size keep their (redacted) content.
pub const MAX_CONTENT_BYTES: u64 = 64 * 1024;

/// Files are hashed in blocks of this size, so memory stays flat.
const HASH_BLOCK: usize = 1024 * 1024;

/// Records a configuration file: size, SHA-256 and, when it is at most
/// [`MAX_CONTENT_BYTES`] of UTF-8 text, its content with secret-looking
/// values redacted.
pub fn record_config(path: &Path, redactor: &Redactor) -> FileRecord {
    let mut record = empty_record(path);
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(e) => {
            record.error = Some(e);
            return record;
        }
    };
    // Read at most one byte past the limit: enough to know the file is too
    // big for its content to be kept, without holding a large file in memory.
    let mut head = Vec::new();
    if let Err(e) = (&mut file)
        .take(MAX_CONTENT_BYTES + 1)
        .read_to_end(&mut head)
    {
        record.error = Some(format!("cannot read {}: {e}", path.display()));
        return record;
    }
    let mut hasher = Sha256::new();
    hasher.update(&head);
    let mut size = head.len() as u64;
    if size > MAX_CONTENT_BYTES {
        match hash_rest(&mut file, &mut hasher) {
            Ok(n) => size += n,
            Err(e) => {
                record.error = Some(format!("cannot read {}: {e}", path.display()));
                return record;
            }
        }
    } else if let Ok(text) = std::str::from_utf8(&head) {
        record.content = Some(redact_config_text(text, redactor));
    }
    record.size = Some(size);
    record.sha256 = Some(plumb_model::hex(&hasher.finalize()));
    record
}

/// Records an input or output file: size and SHA-256 (streamed), no content.
pub fn record_file(path: &Path) -> FileRecord {
    let mut record = empty_record(path);
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(e) => {
            record.error = Some(e);
            return record;
        }
    };
    let mut hasher = Sha256::new();
    match hash_rest(&mut file, &mut hasher) {
        Ok(size) => {
            record.size = Some(size);
            record.sha256 = Some(plumb_model::hex(&hasher.finalize()));
        }
        Err(e) => record.error = Some(format!("cannot read {}: {e}", path.display())),
    }
    record
}

fn empty_record(path: &Path) -> FileRecord {
    FileRecord {
        path: path.to_string_lossy().into_owned(),
        ..Default::default()
    }
}

/// Opens `path` for reading, refusing directories with a clear message.
fn open_regular(path: &Path) -> Result<File, String> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: no such file", path.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!("{}: permission denied", path.display())
        }
        _ => format!("cannot open {}: {e}", path.display()),
    })?;
    match file.metadata() {
        Ok(m) if m.is_dir() => Err(format!("{}: is a directory, not a file", path.display())),
        Ok(_) => Ok(file),
        Err(e) => Err(format!("cannot stat {}: {e}", path.display())),
    }
}

/// Feeds the rest of `file` to `hasher` in [`HASH_BLOCK`] reads; returns the
/// number of bytes read.
fn hash_rest(file: &mut File, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; HASH_BLOCK];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Redacts secret-looking values in configuration text, line by line:
/// JSON pairs (`"key": "value"`), `key = value`, `key: value`, `key=value`
/// and `export KEY=value`, where the key is a secret name or the value a
/// secret; any other token that is a secret by itself (a URL with a
/// password, a well-known token format); and PEM private key blocks.
pub fn redact_config_text(text: &str, redactor: &Redactor) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pem: Option<String> = None;
    // Indentation of a secret key whose value is a YAML block (`key: |`):
    // the more indented lines below it are its value.
    let mut block_under: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b2) => (b2, "\r\n"),
                None => (b, "\n"),
            },
            None => (line, ""),
        };
        if let Some(block) = pem.as_mut() {
            block.push_str(body);
            block.push('\n');
            if body.contains("-----END ") {
                let marker = redactor.marker(block);
                out.push_str(&marker);
                out.push_str(newline);
                pem = None;
            }
            continue;
        }
        let indent = body.len() - body.trim_start().len();
        if let Some(key_indent) = block_under {
            if body.trim().is_empty() {
                out.push_str(line);
                continue;
            }
            if indent > key_indent {
                out.push_str(&body[..indent]);
                out.push_str(&redactor.marker(body.trim()));
                out.push_str(newline);
                continue;
            }
            block_under = None;
        }
        if let Some((key, value)) = body.trim().split_once(':') {
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            let block = matches!(value.trim(), "|" | ">" | "|-" | ">-" | "|+" | ">+");
            if block && redactor.is_secret_name(key) {
                block_under = Some(indent);
                out.push_str(line);
                continue;
            }
        }
        if body.contains("-----BEGIN ") && body.contains("PRIVATE KEY") {
            // Keep whatever precedes the block (`key: |`, `"key": "`) and
            // replace the block itself, however many lines it spans.
            let at = body.find("-----BEGIN ").unwrap_or(0);
            out.push_str(&body[..at]);
            let mut block = body[at..].to_string();
            block.push('\n');
            if body[at..].contains("-----END ") {
                out.push_str(&redactor.marker(&block));
                out.push_str(newline);
            } else {
                pem = Some(block);
            }
            continue;
        }
        out.push_str(&redact_line(body, redactor));
        out.push_str(newline);
    }
    if let Some(block) = pem {
        // An unterminated key block: redact it all the same.
        out.push_str(&redactor.marker(&block));
    }
    out
}

fn redact_line(line: &str, redactor: &Redactor) -> String {
    if let Some(redacted) = redact_json_pairs(line, redactor) {
        return redacted;
    }
    if let Some(redacted) = redact_key_value(line, redactor) {
        return redacted;
    }
    redact_secret_tokens(line, redactor)
}

/// The end (exclusive) of a JSON string starting with the quote at `start`.
fn json_string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Redacts every `"key": "value"` pair of a line that holds at least one.
/// Returns `None` when the line has no such pair.
fn redact_json_pairs(line: &str, redactor: &Redactor) -> Option<String> {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut found = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        let Some(key_end) = json_string_end(b, i) else {
            break;
        };
        let mut j = key_end;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b':') {
            i = key_end;
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if b.get(j) != Some(&b'"') {
            i = j.max(key_end);
            continue;
        }
        let Some(value_end) = json_string_end(b, j) else {
            break;
        };
        found = true;
        let key = &line[i + 1..key_end - 1];
        let value = &line[j + 1..value_end - 1];
        if redactor.is_secret_name(key) || redactor.is_secret_value(value) {
            out.push_str(&line[copied..j + 1]);
            out.push_str(&redactor.marker(value));
            out.push('"');
            copied = value_end;
        }
        i = value_end;
    }
    if !found {
        return None;
    }
    out.push_str(&line[copied..]);
    Some(out)
}

/// `key = value`, `key: value`, `key=value`, `export KEY=value`, with
/// optional indentation and quotes around key or value. Returns `None`
/// when the line is not of that form or nothing in it is secret.
fn redact_key_value(line: &str, redactor: &Redactor) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let prefix_len = indent + if rest.starts_with("export ") { 7 } else { 0 };
    let rest = &line[prefix_len..];
    let sep = rest.find(['=', ':'])?;
    let raw_key = rest[..sep].trim();
    let key = raw_key.trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return None;
    }
    let after = &rest[sep + 1..];
    // `key: value` needs a space after the colon, so that `http://x` and
    // `12:30` are not taken for keys.
    if rest.as_bytes()[sep] == b':' && !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let value_start = after.len() - after.trim_start().len();
    let raw_value = after.trim();
    if raw_value.is_empty() {
        return None;
    }
    let raw_value = raw_value.strip_suffix(',').unwrap_or(raw_value);
    let (open, value, close) = unquote(raw_value);
    if !(redactor.is_secret_name(key) || redactor.is_secret_value(value)) {
        return None;
    }
    let head_len = prefix_len + sep + 1 + value_start;
    let value_at = head_len + open.len();
    let tail = &line[value_at + value.len()..];
    let tail = tail.strip_prefix(close).unwrap_or(tail);
    let mut out = String::with_capacity(line.len());
    out.push_str(&line[..value_at]);
    out.push_str(&redactor.marker(value));
    out.push_str(close);
    // Anything after the value (a comment, a comma) is dropped only when it
    // cannot be told apart from the value; a trailing comma is kept.
    if tail.trim() == "," {
        out.push_str(tail);
    }
    Some(out)
}

/// Splits matching quotes off a value: (opening quote, inside, closing quote).
fn unquote(v: &str) -> (&str, &str, &str) {
    for q in ["\"", "'"] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return (q, &v[1..v.len() - 1], q);
        }
    }
    ("", v, "")
}

/// Replaces whitespace-separated tokens that are secrets by themselves.
fn redact_secret_tokens(line: &str, redactor: &Redactor) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        let core = token.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | ';' | '(' | ')'));
        if !core.is_empty() && redactor.is_secret_value(core) {
            let at = token.find(core).unwrap_or(0);
            out.push_str(&token[..at]);
            out.push_str(&redactor.marker(core));
            out.push_str(&token[at + core.len()..]);
        } else {
            out.push_str(token);
        }
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(b"test-key")
    }

    #[test]
    fn small_config_is_hashed_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.toml");
        let text = "\
# database settings
[db]
host = \"db.internal\"
port = 5432
password = \"hunter2\"
url = \"postgres://app:s3cretpw@db:5432/x\"
api_key=abc123def
  auth_token: tok-987
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI
timeout: 30
";
        std::fs::write(&path, text).unwrap();
        let r = record_config(&path, &redactor());
        assert_eq!(r.error, None);
        assert_eq!(r.size, Some(text.len() as u64));
        assert_eq!(
            r.sha256.as_deref(),
            Some(plumb_model::sha256_hex(text.as_bytes()).as_str())
        );
        let content = r.content.unwrap();
        for secret in [
            "hunter2",
            "s3cretpw",
            "abc123def",
            "tok-987",
            "wJalrXUtnFEMI",
        ] {
            assert!(!content.contains(secret), "{secret} leaked:\n{content}");
        }
        for kept in [
            "host = \"db.internal\"",
            "port = 5432",
            "timeout: 30",
            "# database settings",
            "[db]",
        ] {
            assert!(content.contains(kept), "{kept} lost:\n{content}");
        }
        let r2 = redactor();
        assert!(
            content.contains(&format!("password = \"{}\"", r2.marker("hunter2"))),
            "{content}"
        );
        assert!(
            content.contains(&format!("  auth_token: {}", r2.marker("tok-987"))),
            "{content}"
        );
        assert_eq!(content.lines().count(), text.lines().count());
    }

    #[test]
    fn json_pairs_are_redacted_in_place() {
        let r = redactor();
        let line = r#"{"user": "ann", "password": "p\"w1", "nested": {"token":"t0k"}, "n": 3}"#;
        let out = redact_config_text(line, &r);
        assert!(!out.contains("p\\\"w1") && !out.contains("t0k"), "{out}");
        assert!(out.contains(r#""user": "ann""#), "{out}");
        assert!(out.contains(r#""n": 3}"#), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert!(plumb_model::is_redacted(v["password"].as_str().unwrap()));
        assert!(plumb_model::is_redacted(
            v["nested"]["token"].as_str().unwrap()
        ));
    }

    #[test]
    fn secret_values_are_redacted_whatever_the_key() {
        let r = redactor();
        let out = redact_config_text(
            "mirror = https://bob:pa55@repo.example/x\nconnect to postgres://a:b1@h/db now\ngh ghp_0123456789abcdefghij\n",
            &r,
        );
        assert!(
            !out.contains("pa55") && !out.contains("b1@") && !out.contains("ghp_0123"),
            "{out}"
        );
        assert!(out.contains("connect to ") && out.contains(" now"), "{out}");
    }

    #[test]
    fn pem_private_keys_are_redacted_as_a_block() {
        let r = redactor();
        let text = "name: svc\ncert: |\n  -----BEGIN RSA PRIVATE KEY-----\n  MIIEowIBAAKCAQEAsecretmaterial\n  -----END RSA PRIVATE KEY-----\nport: 80\n";
        let out = redact_config_text(text, &r);
        assert!(!out.contains("secretmaterial"), "{out}");
        assert!(out.starts_with("name: svc\ncert: |\n  [redacted:"), "{out}");
        assert!(out.ends_with("]\nport: 80\n"), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }

    #[test]
    fn yaml_block_values_of_secret_keys_are_redacted() {
        let r = redactor();
        let text = "db:\n  password: |\n    hunter2\n    more\n\n  host: h1\n";
        let out = redact_config_text(text, &r);
        assert!(!out.contains("hunter2") && !out.contains("more"), "{out}");
        assert!(out.contains("  password: |\n    [redacted:"), "{out}");
        assert!(out.ends_with("\n\n  host: h1\n"), "{out}");
    }

    #[test]
    fn urls_and_times_are_not_taken_for_keys() {
        let r = redactor();
        let text = "see http://example.org/a\nstart 12:30\nkeyboard = us\n";
        assert_eq!(redact_config_text(text, &r), text);
    }

    #[test]
    fn large_or_binary_config_keeps_no_content() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let data = "password: x\n".repeat(10_000);
        std::fs::write(&big, &data).unwrap();
        let r = record_config(&big, &redactor());
        assert_eq!(r.size, Some(data.len() as u64));
        assert_eq!(
            r.sha256.as_deref(),
            Some(plumb_model::sha256_hex(data.as_bytes()).as_str())
        );
        assert_eq!(r.content, None);

        let bin = dir.path().join("blob.bin");
        std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x01]).unwrap();
        let r = record_config(&bin, &redactor());
        assert_eq!(r.size, Some(4));
        assert_eq!(r.content, None);
        assert_eq!(r.error, None);
    }

    #[test]
    fn missing_and_unreadable_files_give_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let r = record_config(&missing, &redactor());
        assert!(
            r.error.as_deref().unwrap().contains("no such file"),
            "{r:?}"
        );
        assert_eq!((r.size, r.sha256), (None, None));
        let r = record_file(&missing);
        assert!(r.error.unwrap().contains("nope.toml"));

        let r = record_file(dir.path());
        assert!(r.error.unwrap().contains("is a directory"));
    }

    proptest::proptest! {
        #[test]
        fn redaction_never_panics_and_keeps_line_count(text in "(?s).{0,400}") {
            let out = redact_config_text(&text, &redactor());
            // Lines are replaced one for one, except PEM blocks and YAML
            // block values, which this random text rarely forms.
            if !text.contains("-----BEGIN ") && !text.contains(": |") && !text.contains(": >") {
                proptest::prop_assert_eq!(out.matches('\n').count(), text.matches('\n').count());
            }
        }

        #[test]
        fn secret_assignments_never_survive(
            key in "(password|api_key|TOKEN|db_secret)",
            sep in "( = |=|: )",
            value in "[A-Za-z0-9]{6,20}",
        ) {
            let text = format!("{key}{sep}{value}\n");
            let out = redact_config_text(&text, &redactor());
            proptest::prop_assert!(!out.contains(&value), "{}", out);
        }
    }

    #[test]
    fn record_file_streams_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        // Two and a half hash blocks, not a multiple of the block size.
        let data: Vec<u8> = (0..(HASH_BLOCK * 5 / 2) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let r = record_file(&path);
        assert_eq!(r.size, Some(data.len() as u64));
        assert_eq!(r.sha256, Some(plumb_model::sha256_hex(&data)));
        assert_eq!(r.content, None);
        assert_eq!(r.path, path.to_string_lossy());
    }
}
