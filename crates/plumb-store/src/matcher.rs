//! What a search means: one definition of "this line matches", shared by
//! output chunks and log chunks, by the word filters that skip chunks and
//! by the check of each line, so the result never depends on how output
//! was cut into chunks or whether a chunk has a filter.
//!
//! Three modes:
//! - [`SearchMode::Words`] (the default): every term of the query must
//!   appear in the line as whole words, in any order, ignoring ASCII case.
//!   A term is a run of non-blank characters or a `"quoted phrase"`; a term
//!   made of several words (`widget-5`, `"warning disk"`, `a.b.c`) matches
//!   those words in sequence, with anything that is not a word between them.
//!   Words are split by the same tokenizer that builds the filters
//!   ([`crate::chunk::for_each_word`]): letters, digits, `_` and every
//!   non-ASCII byte are word bytes.
//! - [`SearchMode::Substring`]: the text as it is, anywhere in the line, as
//!   `grep -F` does (case-sensitive unless asked otherwise).
//! - [`SearchMode::Regex`]: a regular expression (Rust's `regex` syntax,
//!   linear time), matched against each line on its own.
//!
//! A line is what lies between two newlines of one stream of one run.

use crate::chunk;
use crate::error::{Result, StoreError};
use memchr::memmem;

/// How the search text is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Whole words in any order; terms of several words in sequence.
    #[default]
    Words,
    /// A literal string anywhere in the line.
    Substring,
    /// A regular expression matched against each line.
    Regex,
}

impl SearchMode {
    /// The mode's name in the query API (`words`, `substring`, `regex`).
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Words => "words",
            SearchMode::Substring => "substring",
            SearchMode::Regex => "regex",
        }
    }

    /// The inverse of [`SearchMode::as_str`].
    pub fn parse(s: &str) -> Option<SearchMode> {
        match s {
            "words" | "" => Some(SearchMode::Words),
            "substring" => Some(SearchMode::Substring),
            "regex" => Some(SearchMode::Regex),
            _ => None,
        }
    }
}

/// Longest regular expression accepted, compiled size included: a query
/// from the network must not cost the collector much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled query: the word hashes every candidate chunk must contain,
/// and the test of one line.
#[derive(Debug)]
pub struct Matcher {
    /// Hashes of words that every matching line contains (as whole words):
    /// a chunk whose filter lacks one holds no match.
    required: Vec<u64>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Words {
        /// Each term's words, lowercased.
        terms: Vec<Vec<Vec<u8>>>,
        /// The longest word of all terms, lowercased: lines holding it
        /// (as a substring) are the only candidates.
        probe: Vec<u8>,
    },
    Substring {
        needle: Vec<u8>,
        ignore_case: bool,
    },
    Regex(regex::bytes::Regex),
}

impl Matcher {
    /// Compiles `text` for `mode`. `ignore_case` applies to substring and
    /// regex searches; word searches always ignore ASCII case.
    pub fn new(text: &str, mode: SearchMode, ignore_case: bool) -> Result<Matcher> {
        match mode {
            SearchMode::Words => {
                let terms = parse_terms(text)?;
                let mut required = Vec::new();
                for t in &terms {
                    for w in t {
                        chunk::for_each_word(w, |h| required.push(h));
                    }
                }
                required.sort_unstable();
                required.dedup();
                let probe = terms
                    .iter()
                    .flatten()
                    .max_by_key(|w| w.len())
                    .cloned()
                    .unwrap_or_default();
                Ok(Matcher {
                    required,
                    kind: Kind::Words { terms, probe },
                })
            }
            SearchMode::Substring => {
                if text.is_empty() {
                    return Err(StoreError::BadQuery("the search text is empty".into()));
                }
                Ok(Matcher {
                    required: inner_word_hashes(text.as_bytes()),
                    kind: Kind::Substring {
                        needle: if ignore_case {
                            text.to_ascii_lowercase().into_bytes()
                        } else {
                            text.as_bytes().to_vec()
                        },
                        ignore_case,
                    },
                })
            }
            SearchMode::Regex => {
                if text.is_empty() {
                    return Err(StoreError::BadQuery(
                        "the regular expression is empty".into(),
                    ));
                }
                let re = regex::bytes::RegexBuilder::new(text)
                    .case_insensitive(ignore_case)
                    .multi_line(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        StoreError::BadQuery(format!("`{text}` is not a regular expression: {e}"))
                    })?;
                Ok(Matcher {
                    required: Vec::new(),
                    kind: Kind::Regex(re),
                })
            }
        }
    }

    /// Word hashes a chunk's filter must hold for the chunk to hold a match.
    pub fn required_words(&self) -> &[u64] {
        &self.required
    }

    /// Whether one line (without its newline) matches.
    pub fn line_matches(&self, line: &[u8]) -> bool {
        match &self.kind {
            Kind::Words { terms, .. } => words_match(terms, line),
            Kind::Substring {
                needle,
                ignore_case,
            } => {
                if *ignore_case {
                    memmem::find(&line.to_ascii_lowercase(), needle).is_some()
                } else {
                    memmem::find(line, needle).is_some()
                }
            }
            Kind::Regex(re) => re.is_match(line),
        }
    }

    /// Calls `f(start, end)` for every matching line of `raw` (a run of
    /// whole lines, the last one maybe without its newline), in order,
    /// until `f` returns false. `start..end` excludes the newline.
    pub fn for_each_match(&self, raw: &[u8], mut f: impl FnMut(usize, usize) -> bool) {
        // A cheap scan finds candidate lines, which are then checked whole.
        let (hay, probe): (std::borrow::Cow<'_, [u8]>, Option<&[u8]>) = match &self.kind {
            Kind::Words { probe, .. } => (raw.to_ascii_lowercase().into(), Some(probe)),
            Kind::Substring {
                needle,
                ignore_case: true,
            } => (raw.to_ascii_lowercase().into(), Some(needle)),
            Kind::Substring { needle, .. } => (raw.into(), Some(needle)),
            Kind::Regex(_) => (raw.into(), None),
        };
        let finder = probe.map(memmem::Finder::new);
        let mut from = 0;
        while from < raw.len() {
            let at = match (&finder, &self.kind) {
                (Some(fi), _) => match fi.find(&hay[from..]) {
                    Some(p) => from + p,
                    None => return,
                },
                (None, Kind::Regex(re)) => match re.find_at(raw, from) {
                    Some(m) => m.start(),
                    None => return,
                },
                (None, _) => from,
            };
            let start = memchr::memrchr(b'\n', &raw[..at]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i);
            if self.line_matches(&raw[start..end]) && !f(start, end) {
                return;
            }
            from = end + 1;
        }
    }
}

/// Splits the query into terms: `"quoted phrases"` and runs of non-blank
/// characters, each as its lowercased words. Terms without a word (`--`)
/// are refused, since no line could be said to contain them as words.
fn parse_terms(text: &str) -> Result<Vec<Vec<Vec<u8>>>> {
    let mut terms = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (raw, next) = if bytes[i] == b'"' {
            let Some(close) = memchr::memchr(b'"', &bytes[i + 1..]) else {
                return Err(StoreError::BadQuery(format!(
                    "unterminated quote in `{text}`: a phrase is written \"like this\""
                )));
            };
            (&bytes[i + 1..i + 1 + close], i + close + 2)
        } else {
            let end = bytes[i..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'"')
                .map_or(bytes.len(), |p| i + p);
            (&bytes[i..end], end)
        };
        let words = split_words(raw);
        if words.is_empty() {
            return Err(StoreError::BadQuery(format!(
                "`{}` holds no word to search for (letters, digits, `_`): use a substring or regex search for punctuation",
                String::from_utf8_lossy(raw)
            )));
        }
        terms.push(words);
        i = next;
    }
    if terms.is_empty() {
        return Err(StoreError::BadQuery("the search text is empty".into()));
    }
    Ok(terms)
}

/// The byte ranges of the words of `text`, split as the word filters
/// split them ([`chunk::is_word_byte`]).
fn word_spans(text: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() && !chunk::is_word_byte(text[i]) {
            i += 1;
        }
        let start = i;
        while i < text.len() && chunk::is_word_byte(text[i]) {
            i += 1;
        }
        (i > start).then_some((start, i))
    })
}

/// The words of `text`, lowercased.
fn split_words(text: &[u8]) -> Vec<Vec<u8>> {
    word_spans(text)
        .map(|(s, e)| text[s..e].to_ascii_lowercase())
        .collect()
}

/// Whether every term appears in `line` as consecutive whole words.
fn words_match(terms: &[Vec<Vec<u8>>], line: &[u8]) -> bool {
    let spans: Vec<(usize, usize)> = word_spans(line).collect();
    let word = |k: usize| &line[spans[k].0..spans[k].1];
    terms.iter().all(|term| {
        spans.len() >= term.len()
            && (0..=spans.len() - term.len()).any(|s| {
                term.iter()
                    .enumerate()
                    .all(|(j, w)| word(s + j).eq_ignore_ascii_case(w))
            })
    })
}

/// Hashes of the words of a literal that are whole words wherever the
/// literal appears: those with a non-word byte on both sides inside it.
fn inner_word_hashes(text: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for (start, end) in word_spans(text) {
        if start > 0 && end < text.len() {
            chunk::for_each_word(&text[start..end], |h| out.push(h));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(m: &Matcher, raw: &str) -> Vec<String> {
        let mut out = Vec::new();
        m.for_each_match(raw.as_bytes(), |s, e| {
            out.push(raw[s..e].to_string());
            true
        });
        out
    }

    #[test]
    fn words_match_whole_words_in_any_order_ignoring_case() {
        let m = Matcher::new("widget-5", SearchMode::Words, false).unwrap();
        let raw = "widget-5 ok\nwidget-50 no\nWIDGET 5 yes\n5 widget no\nmegawidget-5 no\n";
        assert_eq!(lines(&m, raw), ["widget-5 ok", "WIDGET 5 yes"]);
        let m = Matcher::new("disk warning", SearchMode::Words, false).unwrap();
        assert_eq!(
            lines(&m, "warning: disk slow\ndisk ok\nwarnings disk\n"),
            ["warning: disk slow"]
        );
        let m = Matcher::new("\"warning disk\"", SearchMode::Words, false).unwrap();
        assert_eq!(
            lines(&m, "warning: disk slow\ndisk warning\n"),
            ["warning: disk slow"]
        );
    }

    #[test]
    fn substring_and_regex_are_grep_like() {
        let m = Matcher::new("line 19", SearchMode::Substring, false).unwrap();
        assert_eq!(
            lines(&m, "line 19\nline 1943\nLine 19\n"),
            ["line 19", "line 1943"]
        );
        let m = Matcher::new("line 19", SearchMode::Substring, true).unwrap();
        assert_eq!(lines(&m, "line 1943\nLine 19\n").len(), 2);
        let m = Matcher::new("^err.*[0-9]$", SearchMode::Regex, false).unwrap();
        assert_eq!(lines(&m, "err 1\nxerr 2\nerr x\nerr\n3\n"), ["err 1"]);
    }

    #[test]
    fn bad_queries_are_named() {
        for (text, mode) in [
            ("--", SearchMode::Words),
            ("\"open", SearchMode::Words),
            ("", SearchMode::Words),
            ("", SearchMode::Substring),
            ("(", SearchMode::Regex),
        ] {
            let e = Matcher::new(text, mode, false).unwrap_err().to_string();
            assert!(e.contains("search") || e.contains("`"), "{text:?}: {e}");
        }
    }

    #[test]
    fn inner_words_of_a_literal_are_required_whole() {
        // `a` and `b` touch the literal's ends, so in a line they may be
        // parts of longer words; `foo` and `bar` cannot.
        let m = Matcher::new("a foo-bar b", SearchMode::Substring, false).unwrap();
        let mut want = Vec::new();
        chunk::for_each_word(b"foo bar", |h| want.push(h));
        want.sort_unstable();
        assert_eq!(m.required_words(), want.as_slice());
    }

    /// A naive definition of each mode, written independently of the
    /// matcher's scan: split into lines, test each.
    fn naive(mode: SearchMode, text: &str, ignore_case: bool, line: &str) -> bool {
        match mode {
            SearchMode::Words => {
                let words: Vec<String> = line
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()))
                    .filter(|w| !w.is_empty())
                    .map(|w| w.to_ascii_lowercase())
                    .collect();
                text.split_whitespace().all(|term| {
                    let tw: Vec<String> = term
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()))
                        .filter(|w| !w.is_empty())
                        .map(|w| w.to_ascii_lowercase())
                        .collect();
                    words.windows(tw.len()).any(|win| win == tw.as_slice())
                })
            }
            SearchMode::Substring if ignore_case => line
                .to_ascii_lowercase()
                .contains(&text.to_ascii_lowercase()),
            SearchMode::Substring => line.contains(text),
            SearchMode::Regex => regex::Regex::new(text).unwrap().is_match(line),
        }
    }

    proptest! {
        #[test]
        fn every_mode_agrees_with_a_naive_scan(
            lines_in in proptest::collection::vec("[a-cA-C0-9 _.-]{0,12}", 0..40),
            text in "[a-cA-C0-9][a-cA-C0-9 .-]{0,5}",
            ignore_case: bool,
        ) {
            let raw: String = lines_in.iter().map(|l| format!("{l}\n")).collect();
            for mode in [SearchMode::Words, SearchMode::Substring] {
                let Ok(m) = Matcher::new(&text, mode, ignore_case) else { continue };
                let got = lines(&m, &raw);
                let want: Vec<String> = lines_in
                    .iter()
                    .filter(|l| naive(mode, &text, ignore_case, l))
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want, "mode {:?} text {:?}", mode, text);
            }
        }
    }
}
