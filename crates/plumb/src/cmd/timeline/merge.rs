//! `plumb timeline --merge FILE...`: plain log files from hosts that never
//! ran plumb, merged into one timeline by a streaming k-way merge.
//!
//! Each file is read through its own buffered reader; a binary heap holds
//! one pending record per file, keyed by its corrected time (`raw −
//! offset`), so memory grows with the number of files, never with their
//! length. A file's timestamp format is found from its first line (or
//! given with `--pattern`); a line that does not start with a timestamp in
//! that format belongs to the record before it (a traceback stays under
//! the line that logged it).
//!
//! Causality, streaming: a record with `plumb.msg.recv=ID` whose send has
//! not been merged yet holds its file back (the rest of that host comes
//! after it, as a hybrid logical clock demands) until the send is merged,
//! then goes right after it. A send remembered for `--causal-window` of
//! merged time is what bounds the memory; a receive whose send does not
//! come within that window is let go where the merge has got to (so the
//! output never goes back in time) and marked `?`.

use super::{Flag, Format as OutFormat};
use crate::out::{raw_stdout, stdout};
use anyhow::{Context, Result, bail};
use plumb_model::timeline::Msg;
use plumb_model::timeline::stamp::{Format, Rfc3339};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;

/// One file to merge, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The path.
    pub path: String,
    /// The host label (the file stem unless given as `LABEL=FILE`).
    pub label: String,
    /// The host's offset (its clock minus the reference), ns, when given as
    /// `FILE@OFFSET`.
    pub offset_ns: Option<i64>,
}

/// A signed offset: `+1.25s`, `-300ms`, `2s`, `0`.
pub fn parse_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ns = plumb_model::parse_duration_ns(body).map_err(|e| {
        format!("bad offset `{s}` ({e}); an offset is signed, like +1.25s or -300ms")
    })?;
    Ok(if neg { -ns } else { ns })
}

impl Input {
    /// `[LABEL=]FILE[@OFFSET]`. A spec that names an existing file as a
    /// whole is that file, whatever `=` or `@` it holds.
    pub fn parse(spec: &str) -> Result<Input, String> {
        if Path::new(spec).exists() {
            return Ok(Input::plain(spec, None));
        }
        let (rest, offset_ns) = match spec.rsplit_once('@') {
            Some((file, off)) => (
                file,
                Some(parse_offset(off).map_err(|e| format!("`{spec}`: {e}"))?),
            ),
            None => (spec, None),
        };
        let (label, path) = match rest.split_once('=') {
            Some((l, p)) if !Path::new(rest).exists() => (Some(l), p),
            _ => (None, rest),
        };
        if path.is_empty() {
            return Err(format!("`{spec}` names no file"));
        }
        let mut input = Input::plain(path, offset_ns);
        if let Some(l) = label {
            if l.is_empty() {
                return Err(format!("`{spec}`: empty label before `=`"));
            }
            input.label = l.to_string();
        }
        Ok(input)
    }

    fn plain(path: &str, offset_ns: Option<i64>) -> Input {
        let label = Path::new(path)
            .file_stem()
            .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned());
        Input {
            path: path.to_string(),
            label,
            offset_ns,
        }
    }
}

/// How to merge.
#[derive(Debug)]
pub struct Options {
    /// The files.
    pub inputs: Vec<Input>,
    /// `--pattern`: the leading timestamp's format for every file.
    pub pattern: Option<String>,
    /// The year of syslog lines and of patterns without one.
    pub year: i32,
    /// How long a receive waits for its send, in merged time (0: no
    /// causal pass).
    pub causal_window_ns: i64,
    /// Also show raw time and correction.
    pub raw: bool,
    /// Text or JSON lines.
    pub format: OutFormat,
}

/// One file being read: its current record and the line after it.
#[derive(Debug)]
struct Source {
    label: String,
    /// The label padded to the widest one, and the gap after it: written
    /// as bytes on every line rather than formatted each time.
    column: Vec<u8>,
    path: String,
    offset: i64,
    format: Format,
    reader: BufReader<File>,
    /// The current record: its timestamped line and continuation lines.
    rec: Vec<u8>,
    /// Length of the record's first line.
    head: usize,
    rec_raw: i64,
    /// Line number of the record's first line.
    rec_line: u64,
    /// The next timestamped line, read ahead.
    next: Vec<u8>,
    next_raw: Option<i64>,
    line_no: u64,
    /// Where this host's previous record was placed: its records never go
    /// before it.
    floor: i64,
    /// What holds or held the current record back.
    gate: Gate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Gate {
    /// Nothing yet checked.
    Open,
    /// Its send was merged, placed there.
    After(i64),
    /// Its send never came within the window.
    Unmatched,
}

/// A line longer than this is still read, whole. The buffer of each file
/// is 16 KiB, so 100 files hold 1.6 MiB of buffers (`cargo xtask bench
/// timeline`: peak RSS 9.1 MiB and 1.38 s, against 13.7 MiB and 1.60 s
/// with 64 KiB buffers; sort -m's is under 12 MiB).
const READ_BUFFER: usize = 16 * 1024;

fn ensure_newline(v: &mut Vec<u8>) {
    if v.last() != Some(&b'\n') {
        v.push(b'\n');
    }
}

fn shown(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end();
    let s: String = s.chars().take(80).collect();
    plumb_model::text::escape_controls(&s).into_owned()
}

impl Source {
    fn open(
        input: &Input,
        offset: i64,
        pattern: Option<&str>,
        year: i32,
    ) -> Result<Option<Source>> {
        let file =
            File::open(&input.path).with_context(|| format!("cannot open {}", input.path))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let mut first = Vec::new();
        let mut line_no = 0;
        // Blank lines before the first one say nothing.
        loop {
            first.clear();
            let n = reader
                .read_until(b'\n', &mut first)
                .with_context(|| format!("cannot read {}", input.path))?;
            if n == 0 {
                return Ok(None);
            }
            line_no += 1;
            if !first.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let format = match pattern {
            Some(p) => {
                let f = Format::Pattern {
                    pattern: p.to_string(),
                    year,
                };
                if f.parse(&first).is_none() {
                    bail!(
                        "{}:{line_no}: the line does not start with a time in --pattern `{p}`: `{}`",
                        input.path,
                        shown(&first)
                    );
                }
                f
            }
            None => Format::detect(&first, year).with_context(|| {
                format!(
                    "{}:{line_no}: no timestamp in a known format at the start of `{}` (known: epoch seconds like 1733259306.123456, RFC 3339 / ISO 8601 like 2026-12-03T20:55:06.123Z or 2026-12-03 20:55:06,123, syslog like Dec  3 20:55:06); give its format with --pattern, like --pattern '[%d/%b/%Y:%H:%M:%S %z]'",
                    input.path,
                    shown(&first)
                )
            })?,
        };
        let (raw, _) = format.parse(&first).expect("checked above");
        let mut s = Source {
            label: input.label.clone(),
            column: Vec::new(),
            path: input.path.clone(),
            offset,
            format,
            reader,
            rec: Vec::new(),
            head: 0,
            rec_raw: 0,
            rec_line: 0,
            next: first,
            next_raw: Some(raw),
            line_no,
            floor: i64::MIN,
            gate: Gate::Open,
        };
        s.fill()?;
        Ok(Some(s))
    }

    /// Moves the read-ahead line into the current record and reads its
    /// continuation lines up to the next timestamped line. False at the
    /// end of the file.
    fn fill(&mut self) -> Result<bool> {
        let Some(raw) = self.next_raw.take() else {
            return Ok(false);
        };
        std::mem::swap(&mut self.rec, &mut self.next);
        ensure_newline(&mut self.rec);
        self.head = self.rec.len();
        self.rec_raw = raw;
        self.rec_line = self.line_no;
        self.gate = Gate::Open;
        loop {
            self.next.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.next)
                .with_context(|| format!("cannot read {}", self.path))?;
            if n == 0 {
                break;
            }
            self.line_no += 1;
            if let Some((t, _)) = self.format.parse(&self.next) {
                self.next_raw = Some(t);
                break;
            }
            self.rec.extend_from_slice(&self.next);
            ensure_newline(&mut self.rec);
        }
        Ok(true)
    }

    fn corrected(&self) -> i64 {
        self.rec_raw.saturating_sub(self.offset)
    }

    fn key(&self) -> i64 {
        let k = self.corrected().max(self.floor);
        match self.gate {
            Gate::After(t) => k.max(t.saturating_add(1)),
            _ => k,
        }
    }

    /// The mark on the record's first line, looked for only when the line
    /// holds `plumb.msg.` (a fast scan).
    fn msg(&self, finder: &memchr::memmem::Finder<'_>) -> Option<Msg> {
        let head = &self.rec[..self.head];
        finder.find(head)?;
        Msg::find(head)
    }
}

/// One merged line as JSON.
#[derive(Debug, Serialize)]
struct JsonLine<'a> {
    at: &'a str,
    placed_ns: i64,
    raw_ns: i64,
    offset_ns: i64,
    host: &'a str,
    file: &'a str,
    line: u64,
    text: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "is_zero")]
    shift_ns: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unmatched: bool,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Writes merged records.
struct Writer<W: Write> {
    out: W,
    time: Rfc3339,
    raw_time: Rfc3339,
    raw: bool,
    json: bool,
}

impl<W: Write> Writer<W> {
    fn record(&mut self, s: &Source, placed: i64) -> Result<()> {
        let shift = placed - s.corrected();
        let unmatched = s.gate == Gate::Unmatched;
        if self.json {
            let at = String::from_utf8_lossy(self.time.format(placed)).into_owned();
            let text = String::from_utf8_lossy(&s.rec);
            let j = JsonLine {
                at: &at,
                placed_ns: placed,
                raw_ns: s.rec_raw,
                offset_ns: s.offset,
                host: &s.label,
                file: &s.path,
                line: s.rec_line,
                text: std::borrow::Cow::Borrowed(text.trim_end_matches('\n')),
                shift_ns: shift,
                unmatched,
            };
            serde_json::to_writer(&mut self.out, &j)?;
            self.out.write_all(b"\n")?;
            return Ok(());
        }
        let flag = if unmatched {
            Flag::Unmatched
        } else if shift > 0 {
            Flag::Moved
        } else {
            Flag::None
        };
        self.out.write_all(self.time.format(placed))?;
        self.out.write_all(&[b' ', flag.char() as u8, b' '])?;
        self.out.write_all(&s.column)?;
        if self.raw {
            self.out.write_all(self.raw_time.format(s.rec_raw))?;
            write!(
                self.out,
                " {:>13}  ",
                super::correction_words(-s.offset, shift)
            )?;
        }
        self.out.write_all(&s.rec)?;
        Ok(())
    }
}

/// An offset estimated from matched send/receive pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimated {
    /// The file's index in the inputs.
    pub input: usize,
    /// The estimated offset, ns.
    pub offset_ns: i64,
    /// The true offset is within this of it (given the reference's).
    pub error_ns: i64,
    /// Whether the pairs contradict each other (a receive before its send
    /// in both directions at once: the clock moved during the logs).
    pub inconsistent: bool,
}

/// Estimates the offsets of the files that have none from the
/// `plumb.msg.send=ID` / `plumb.msg.recv=ID` pairs between files, in a
/// first pass that keeps only the pairs' ids and times. A message from
/// host a (sent at `s`, a's clock) to host b (received at `r`, b's clock)
/// says `off_b − off_a ≤ r − s` (a receive comes after its send); messages
/// both ways bound `off_b − off_a` on both sides, and the middle of the
/// tightest bounds is the estimate, half their width the error, as NTP's
/// four timestamps do. The reference is the first file with a given
/// offset (else the first file, at zero); estimates spread from it to
/// every file linked to it by pairs in both directions.
pub fn estimate_offsets(
    inputs: &[Input],
    pattern: Option<&str>,
    year: i32,
) -> Result<Vec<Estimated>> {
    let finder = memchr::memmem::Finder::new(b"plumb.msg.");
    let mut sends: HashMap<String, (usize, i64)> = HashMap::new();
    let mut recvs: Vec<(String, usize, i64)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(mut s) = Source::open(input, 0, pattern, year)? else {
            continue;
        };
        loop {
            match s.msg(&finder) {
                Some(Msg::Send(id)) => {
                    sends.entry(id).or_insert((i, s.rec_raw));
                }
                Some(Msg::Recv(id)) => recvs.push((id, i, s.rec_raw)),
                None => {}
            }
            if !s.fill()? {
                break;
            }
        }
    }
    // upper[(a, b)]: the least r − s of messages from a to b.
    let mut upper: HashMap<(usize, usize), i64> = HashMap::new();
    for (id, b, r) in &recvs {
        if let Some(&(a, s)) = sends.get(id)
            && a != *b
        {
            let d = r - s;
            upper
                .entry((a, *b))
                .and_modify(|u| *u = (*u).min(d))
                .or_insert(d);
        }
    }
    let n = inputs.len();
    let mut known: Vec<Option<(i64, i64)>> =
        inputs.iter().map(|i| i.offset_ns.map(|o| (o, 0))).collect();
    if known.iter().all(Option::is_none) && n > 0 {
        known[0] = Some((0, 0));
    }
    let mut out = Vec::new();
    let mut changed = true;
    while changed {
        changed = false;
        for b in 0..n {
            if known[b].is_some() {
                continue;
            }
            // The best-bounded link from any known file.
            let best = (0..n)
                .filter_map(|a| {
                    let (off_a, err_a) = known[a]?;
                    let hi = *upper.get(&(a, b))?;
                    let lo = -*upper.get(&(b, a))?;
                    Some((off_a + (hi + lo) / 2, err_a + (hi - lo).abs() / 2, lo > hi))
                })
                .min_by_key(|&(_, err, _)| err);
            if let Some((offset_ns, error_ns, inconsistent)) = best {
                known[b] = Some((offset_ns, error_ns));
                out.push(Estimated {
                    input: b,
                    offset_ns,
                    error_ns,
                    inconsistent,
                });
                changed = true;
            }
        }
    }
    Ok(out)
}

/// Merges the files to standard output.
pub fn run(opts: &Options) -> Result<()> {
    let mut sources = Vec::with_capacity(opts.inputs.len());
    for input in &opts.inputs {
        let offset = input.offset_ns.unwrap_or(0);
        if let Some(s) = Source::open(input, offset, opts.pattern.as_deref(), opts.year)? {
            sources.push(s);
        }
    }
    let width = sources
        .iter()
        .map(|s| s.label.chars().count())
        .max()
        .unwrap_or(4);
    for s in &mut sources {
        s.column = format!("{:<width$}  ", s.label).into_bytes();
    }
    // Text for a terminal goes through the escaping writer, so a log line
    // cannot drive the terminal; into a pipe or file the lines go as the
    // hosts wrote them, as `plumb logs` writes a run's output.
    let terminal = raw_stdout().is_terminal();
    let json = opts.format == OutFormat::Json;
    if terminal && !json {
        merge(
            &mut sources,
            opts,
            Writer {
                out: std::io::BufWriter::with_capacity(1 << 16, stdout()),
                time: Rfc3339::default(),
                raw_time: Rfc3339::default(),
                raw: opts.raw,
                json,
            },
        )
    } else {
        merge(
            &mut sources,
            opts,
            Writer {
                out: std::io::BufWriter::with_capacity(1 << 16, raw_stdout()),
                time: Rfc3339::default(),
                raw_time: Rfc3339::default(),
                raw: opts.raw,
                json,
            },
        )
    }
}

fn merge<W: Write>(sources: &mut [Source], opts: &Options, mut w: Writer<W>) -> Result<()> {
    let finder = memchr::memmem::Finder::new(b"plumb.msg.");
    let causal = opts.causal_window_ns > 0;
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.key(), i)))
        .collect();
    // Sends merged within the window: id -> where placed; oldest first for
    // forgetting.
    let mut sends: HashMap<String, i64> = HashMap::new();
    let mut sent: VecDeque<(i64, String)> = VecDeque::new();
    // Files held back by a receive: id -> files; and each hold's deadline.
    let mut held: HashMap<String, Vec<usize>> = HashMap::new();
    let mut deadlines: Vec<(i64, usize, String)> = Vec::new();
    // The latest placed time written.
    let mut last = i64::MIN;
    loop {
        // Holds whose window ran out before the next record (or with
        // nothing else left to merge) are let go, marked.
        if !deadlines.is_empty() {
            let next = heap.peek().map(|Reverse((k, _))| *k);
            let mut k = 0;
            while k < deadlines.len() {
                let expired = next.is_none_or(|n| deadlines[k].0 < n);
                if expired {
                    let (_, s, id) = deadlines.swap_remove(k);
                    if let Some(v) = held.get_mut(&id) {
                        v.retain(|&x| x != s);
                        if v.is_empty() {
                            held.remove(&id);
                        }
                    }
                    // Where the merge has got to, so the output never
                    // goes back in time.
                    sources[s].gate = Gate::Unmatched;
                    sources[s].floor = sources[s].floor.max(last);
                    heap.push(Reverse((sources[s].key(), s)));
                } else {
                    k += 1;
                }
            }
        }
        let Some(Reverse((placed, i))) = heap.pop() else {
            break;
        };
        let s = &mut sources[i];
        let msg = if causal { s.msg(&finder) } else { None };
        if let (Some(Msg::Recv(id)), Gate::Open) = (&msg, s.gate) {
            match sends.get(id) {
                Some(&t) if t >= placed => {
                    s.gate = Gate::After(t);
                    heap.push(Reverse((s.key(), i)));
                    continue;
                }
                Some(&t) => s.gate = Gate::After(t),
                None => {
                    held.entry(id.clone()).or_default().push(i);
                    deadlines.push((
                        s.corrected().saturating_add(opts.causal_window_ns),
                        i,
                        id.clone(),
                    ));
                    continue;
                }
            }
        }
        w.record(s, placed)?;
        s.floor = placed;
        last = last.max(placed);
        if let Some(Msg::Send(id)) = msg {
            if let Some(waiting) = held.remove(&id) {
                deadlines.retain(|(_, _, d)| *d != id);
                for h in waiting {
                    sources[h].gate = Gate::After(placed);
                    heap.push(Reverse((sources[h].key(), h)));
                }
            }
            sends.insert(id.clone(), placed);
            sent.push_back((placed, id));
        }
        while let Some((t, _)) = sent.front() {
            if *t >= placed.saturating_sub(opts.causal_window_ns) {
                break;
            }
            let (_, id) = sent.pop_front().expect("front exists");
            sends.remove(&id);
        }
        let s = &mut sources[i];
        if s.fill()? {
            heap.push(Reverse((s.key(), i)));
        }
    }
    w.out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_label_file_and_offset() {
        assert_eq!(
            Input::parse("web=/var/log/a.log@+1.25s").unwrap(),
            Input {
                path: "/var/log/a.log".into(),
                label: "web".into(),
                offset_ns: Some(1_250_000_000)
            }
        );
        let i = Input::parse("/x/db.log@-300ms").unwrap();
        assert_eq!((i.label.as_str(), i.offset_ns), ("db", Some(-300_000_000)));
        assert_eq!(Input::parse("/x/db.log").unwrap().offset_ns, None);
        let e = Input::parse("/x/db.log@soon").unwrap_err();
        assert!(
            e.contains("`/x/db.log@soon`") && e.contains("bad offset `soon`"),
            "{e}"
        );
        assert!(Input::parse("=/x@1s").unwrap_err().contains("empty label"));
    }
}
