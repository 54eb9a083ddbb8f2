//! What each toxic does to a piece of work on the userspace path: one
//! function per toxic, and [`apply`] choosing among them.
//!
//! A toxic takes one [`Work`] and emits zero or more, in the order they are
//! to leave; [`apply`] puts them on the chain's stack (which pops from the
//! end) in reverse, so a toxic never has to think about the stack.

use super::chain::{Chain, Rolled};
use super::userspace::{Item, Work};
use crate::model::{Stream, ToxicKind};
use crate::proxy::ToxicEntry;
use std::time::Duration;
use tokio::time::Instant;

/// Where a piece of work stands in the chain, apart from what it carries.
#[derive(Clone, Copy)]
struct Pos {
    /// The toxic after the one running.
    next: usize,
    /// Past the last toxic: work sent here leaves the chain at once.
    end: usize,
    /// The chunk's timestamp (see [`Work::at`]).
    at: Instant,
    /// When the chunk was read.
    read: Instant,
    now: Instant,
}

impl Pos {
    /// `item` going on to the next toxic, not before `wait`.
    fn on(&self, item: Item, wait: Option<Instant>) -> Work {
        self.to(self.next, item, wait)
    }

    /// `item` skipping the toxics left, not before `wait`.
    fn out(&self, item: Item, wait: Option<Instant>) -> Work {
        self.to(self.end, item, wait)
    }

    fn to(&self, idx: usize, item: Item, wait: Option<Instant>) -> Work {
        Work {
            idx,
            at: self.at,
            read: self.read,
            wait,
            item,
        }
    }
}

/// Runs toxic `t` on one piece of work, pushing what comes out onto
/// `stack` so that the first to leave is popped first.
pub(super) fn apply(t: &ToxicEntry, w: Work, chain: &mut Chain, stack: &mut Vec<Work>) {
    let p = Pos {
        next: w.idx + 1,
        end: chain.active.len(),
        at: w.at,
        read: w.read,
        now: Instant::now(),
    };
    let stream = chain.stream;
    let state = chain.rolled.get_mut(&t.spec.name);
    let from = stack.len();
    let out = &mut *stack;
    match (&t.spec.kind, w.item) {
        (ToxicKind::Latency { latency, jitter }, Item::Data(d)) => {
            self::latency(p, *latency, *jitter, d, out);
        }
        (ToxicKind::Bandwidth { rate }, Item::Data(d)) => bandwidth(p, *rate, state, d, out),
        (ToxicKind::SlowClose { delay }, item @ (Item::Eof | Item::Close)) => {
            slow_close(p, *delay, item, out);
        }
        (ToxicKind::Timeout { .. }, Item::Data(_)) => {
            // Data vanishes; the chain's deadline closes the connection.
        }
        (ToxicKind::ResetPeer { timeout }, Item::Data(_) | Item::Eof) => {
            reset_peer(p, *timeout, out);
        }
        (
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            },
            Item::Data(d),
        ) if *average_size > 0 => slicer(p, *average_size, *size_variation, *delay, d, out),
        (ToxicKind::LimitData { bytes }, Item::Data(d)) => limit_data(p, *bytes, state, d, out),
        (ToxicKind::Stall { interval, duration }, Item::Data(d))
            if *interval > 0 && *duration > 0 =>
        {
            stall(p, *interval, *duration, state, d, out);
        }
        (ToxicKind::DropConnection { per_mille }, Item::Data(d)) => {
            drop_connection(p, *per_mille, d, out);
        }
        (ToxicKind::HttpLatency { latency }, Item::Data(d)) => {
            http_latency(p, stream, *latency, d, out);
        }
        (ToxicKind::HttpError { status, per_mille }, Item::Data(d)) => {
            http_error(p, stream, *status, *per_mille, d, out);
        }
        (ToxicKind::HttpDrip { bytes, delay }, Item::Data(d)) => {
            http_drip(p, stream, *bytes, *delay, state, d, out);
        }
        // Toxics that leave this kind of item alone.
        (_, item) => out.push(p.on(item, None)),
    }
    stack[from..].reverse();
}

/// Delays each chunk by `latency` ± `jitter` ms from its timestamp, which
/// the latency toxics before this one moved on: two 100 ms toxics make
/// 200 ms, while a stream of chunks still moves at full rate.
fn latency(p: Pos, latency: i64, jitter: i64, data: Vec<u8>, out: &mut Vec<Work>) {
    let j = if jitter > 0 {
        fastrand::i64(-jitter..jitter)
    } else {
        0
    };
    let until = p.at + Duration::from_millis((latency + j).max(0) as u64);
    out.push(Work {
        at: until,
        ..p.on(Item::Data(data), Some(until))
    });
}

/// Paces bytes at `rate` KB/s, one piece per 100 ms of budget so the pace
/// stays smooth; the budget carries over between chunks.
fn bandwidth(p: Pos, rate: i64, state: Option<&mut Rolled>, data: Vec<u8>, out: &mut Vec<Work>) {
    let rate = rate.max(1) as u64;
    let piece = (rate * 100).max(1) as usize;
    let mut free = state.as_ref().map_or(p.now, |s| s.next_free).max(p.now);
    for part in data.chunks(piece) {
        free += Duration::from_nanos(part.len() as u64 * 1_000_000 / rate);
        out.push(p.on(Item::Data(part.to_vec()), Some(free)));
    }
    if let Some(s) = state {
        s.next_free = free;
    }
}

/// Delays the end of the stream, whether the source's or one a toxic before
/// this one made (limit_data).
fn slow_close(p: Pos, delay: i64, end: Item, out: &mut Vec<Work>) {
    out.push(p.on(end, Some(p.now + Duration::from_millis(delay as u64))));
}

/// On the first data (or the end), resets the connection after `timeout`.
fn reset_peer(p: Pos, timeout: i64, out: &mut Vec<Work>) {
    out.push(p.out(
        Item::Reset,
        Some(p.now + Duration::from_millis(timeout as u64)),
    ));
}

/// Cuts data into pieces of `average` ± `variation` bytes, `delay` µs
/// apart.
fn slicer(p: Pos, average: i64, variation: i64, delay: i64, data: Vec<u8>, out: &mut Vec<Work>) {
    let mut rest = &data[..];
    let mut at = p.now;
    let var = variation.min(average - 1).max(0);
    while !rest.is_empty() {
        let size = if var > 0 {
            average + fastrand::i64(-var..=var)
        } else {
            average
        };
        let size = (size.max(1) as usize).min(rest.len());
        out.push(p.on(Item::Data(rest[..size].to_vec()), Some(at)));
        rest = &rest[size..];
        at += Duration::from_micros(delay as u64);
    }
}

/// Lets `bytes` bytes through, then closes. The close goes on down the
/// chain behind the data, so the toxics after this one (latency,
/// slow_close) act on it as on the end of any stream.
fn limit_data(
    p: Pos,
    bytes: i64,
    state: Option<&mut Rolled>,
    mut data: Vec<u8>,
    out: &mut Vec<Work>,
) {
    let passed = state.as_ref().map_or(0, |s| s.passed);
    let room = (bytes as u64).saturating_sub(passed) as usize;
    let reached = data.len() >= room;
    data.truncate(room);
    if let Some(s) = state {
        s.passed += data.len() as u64;
    }
    if !data.is_empty() {
        out.push(p.on(Item::Data(data), None));
    }
    if reached {
        out.push(p.on(Item::Close, None));
    }
}

/// Holds data back for `duration` ms out of every `interval` ms, counted
/// from when the toxic came on for this connection.
fn stall(
    p: Pos,
    interval: i64,
    duration: i64,
    state: Option<&mut Rolled>,
    data: Vec<u8>,
    out: &mut Vec<Work>,
) {
    let origin = state.as_ref().map_or(p.now, |s| s.since);
    let interval = Duration::from_millis(interval as u64);
    let duration = Duration::from_millis(duration as u64);
    let phase = Duration::from_nanos(((p.now - origin).as_nanos() % interval.as_nanos()) as u64);
    let wait = (phase < duration).then(|| p.now + (duration - phase));
    out.push(p.on(Item::Data(data), wait));
}

/// Resets the connection on a chunk with probability `per_mille` / 1000.
fn drop_connection(p: Pos, per_mille: i64, data: Vec<u8>, out: &mut Vec<Work>) {
    if fastrand::i64(0..1000) < per_mille {
        out.push(p.out(Item::Reset, None));
    } else {
        out.push(p.on(Item::Data(data), None));
    }
}

/// Delays each HTTP message (not each chunk) by `latency` ms.
fn http_latency(p: Pos, stream: Stream, latency: i64, data: Vec<u8>, out: &mut Vec<Work>) {
    let wait = starts_message(stream, &data).then(|| p.now + Duration::from_millis(latency as u64));
    out.push(p.on(Item::Data(data), wait));
}

/// Answers a share of HTTP messages with `status` instead of passing them.
fn http_error(
    p: Pos,
    stream: Stream,
    status: i64,
    per_mille: i64,
    data: Vec<u8>,
    out: &mut Vec<Work>,
) {
    if starts_message(stream, &data) && fastrand::i64(0..1000) < per_mille {
        out.push(p.out(Item::Respond(http_error_response(status as u16)), None));
    } else {
        out.push(p.on(Item::Data(data), None));
    }
}

/// Passes HTTP headers at once and drips the body, `bytes` at a time
/// `delay` ms apart. The end of the headers may straddle chunks, so the
/// last bytes seen are kept between them.
fn http_drip(
    p: Pos,
    stream: Stream,
    bytes: i64,
    delay: i64,
    state: Option<&mut Rolled>,
    data: Vec<u8>,
    out: &mut Vec<Work>,
) {
    let Some(s) = state else {
        out.push(p.on(Item::Data(data), None));
        return;
    };
    if s.http_body && starts_message(stream, &data) {
        s.http_body = false;
        s.http_tail.clear();
    }
    let body_from = if s.http_body {
        0
    } else {
        let mut seen = std::mem::take(&mut s.http_tail);
        let carried = seen.len();
        seen.extend_from_slice(&data[..data.len().min(65536)]);
        match seen.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => {
                s.http_body = true;
                (at + 4).saturating_sub(carried)
            }
            None => {
                s.http_tail = seen[seen.len().saturating_sub(3)..].to_vec();
                data.len()
            }
        }
    };
    if body_from > 0 {
        out.push(p.on(Item::Data(data[..body_from].to_vec()), None));
    }
    let piece = bytes.max(1) as usize;
    let gap = Duration::from_millis(delay as u64);
    let mut free = s.next_free.max(p.now);
    for part in data[body_from..].chunks(piece) {
        free += gap;
        out.push(p.on(Item::Data(part.to_vec()), Some(free)));
    }
    s.next_free = free;
}

/// Whether a chunk begins an HTTP/1 message: a request upstream, a response
/// downstream. A heuristic: keep-alive messages that start mid-chunk are not
/// seen, which is rare for request/response traffic.
fn starts_message(stream: Stream, d: &[u8]) -> bool {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"PATCH ",
        b"HEAD ",
        b"OPTIONS ",
        b"CONNECT ",
        b"TRACE ",
    ];
    match stream {
        Stream::Upstream => METHODS.iter().any(|m| d.starts_with(m)),
        Stream::Downstream => d.starts_with(b"HTTP/1."),
    }
}

fn http_error_response(status: u16) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    };
    let body = format!("plumb proxy: injected {status}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
