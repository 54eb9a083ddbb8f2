//! What decoding a body will cost, measured before it is decoded.
//!
//! A few bytes of protobuf can stand for a message that takes hundreds of
//! bytes once decoded: an empty `LogRecord` is two bytes on the wire and a
//! struct of some 200 bytes in memory, so a 64 MiB body of them decodes to
//! gigabytes, and gzip makes that body 30 KB. Neither the body limit nor the
//! decompression limit bounds that. [`scan`] walks the encoded body (the
//! protobuf wire format, guided by OTLP's schema, or the JSON text) without
//! allocating and counts what decoding would build: messages, scalars,
//! string bytes and nesting depth. It stops at the first limit crossed, so a
//! hostile body costs one linear pass over at most the bytes already read.

use crate::{DecodeError, Format};

/// How much one decoded request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages (resources, scopes, records, spans, attributes, values...)
    /// in one request.
    pub max_items: u64,
    /// Nesting depth of messages (attribute values nest arrays and maps).
    pub max_depth: u32,
    /// The estimated memory of the decoded request, in bytes
    /// ([`Cost::decoded_bytes`]).
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    /// 512 Ki messages (8192 records with 30 attributes each fit), depth
    /// 32, 256 MiB decoded.
    fn default() -> Limits {
        Limits {
            max_items: 512 * 1024,
            max_depth: 32,
            max_decoded_bytes: 256 << 20,
        }
    }
}

/// What decoding a body builds, as counted by [`scan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Messages (JSON objects).
    pub items: u64,
    /// Scalar fields (numbers, booleans, packed elements).
    pub scalars: u64,
    /// Bytes of strings and byte fields.
    pub bytes: u64,
    /// The deepest nesting seen.
    pub depth: u32,
}

/// The memory one decoded message is reckoned to take: the largest OTLP
/// structs (`Span`, `LogRecord`, data points) are about 200 bytes, and
/// plumb's own records built from them about as much again.
pub const ITEM_COST: u64 = 384;

impl Cost {
    /// The estimated memory the decoded request takes.
    pub fn decoded_bytes(&self) -> u64 {
        self.items
            .saturating_mul(ITEM_COST)
            .saturating_add(self.scalars.saturating_mul(8))
            .saturating_add(self.bytes.saturating_mul(2))
    }
}

/// Which request a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `ExportLogsServiceRequest`.
    Logs,
    /// `ExportTraceServiceRequest`.
    Traces,
    /// `ExportMetricsServiceRequest`.
    Metrics,
}

/// Counts what decoding `body` would build, and refuses it (with
/// [`DecodeError::TooLarge`] naming the limit) as soon as a limit in
/// `limits` is crossed. A body that is not well-formed is left for the
/// decoder to refuse with its own message; the scan only stops there.
pub fn scan(
    body: &[u8],
    format: Format,
    signal: Signal,
    limits: &Limits,
) -> Result<Cost, DecodeError> {
    let mut st = Scan {
        cost: Cost::default(),
        limits,
    };
    let res = match format {
        Format::Protobuf => {
            let root = match signal {
                Signal::Logs => &LOGS_REQUEST,
                Signal::Traces => &TRACES_REQUEST,
                Signal::Metrics => &METRICS_REQUEST,
            };
            // The request itself is one message at depth 0.
            st.message(body, root, 0)
        }
        Format::Json => st.json(body),
    };
    match res {
        Ok(()) | Err(Stop::Malformed) => Ok(st.cost),
        Err(Stop::Over(what)) => Err(DecodeError::TooLarge(what)),
    }
}

enum Stop {
    /// A limit was crossed; the message names it.
    Over(String),
    /// The body is not well-formed; the decoder will say how.
    Malformed,
}

struct Scan<'a> {
    cost: Cost,
    limits: &'a Limits,
}

/// A protobuf message type as far as the scan needs it: which
/// length-delimited fields hold messages (and of which type). Every other
/// length-delimited field is a string, bytes or a packed scalar array.
#[derive(Debug)]
struct Schema {
    messages: &'static [(u32, &'static Schema)],
    /// Fields that hold packed varints, which decode to 8 bytes each.
    packed_varints: &'static [u32],
}

impl Schema {
    fn child(&self, field: u32) -> Option<&'static Schema> {
        self.messages
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, s)| *s)
    }
}

const fn msg(messages: &'static [(u32, &'static Schema)]) -> Schema {
    Schema {
        messages,
        packed_varints: &[],
    }
}

// OTLP's messages (opentelemetry-proto, common/resource/logs/trace/metrics
// v1), by field number. Unknown fields are skipped by the decoder without
// being kept, so only the fields listed here can allocate messages.
static ANY_VALUE: Schema = msg(&[(5, &ARRAY_VALUE), (6, &KEY_VALUE_LIST)]);
static ARRAY_VALUE: Schema = msg(&[(1, &ANY_VALUE)]);
static KEY_VALUE_LIST: Schema = msg(&[(1, &KEY_VALUE)]);
static KEY_VALUE: Schema = msg(&[(2, &ANY_VALUE)]);
static ENTITY_REF: Schema = msg(&[]);
static RESOURCE: Schema = msg(&[(1, &KEY_VALUE), (3, &ENTITY_REF)]);
static SCOPE: Schema = msg(&[(3, &KEY_VALUE)]);

static LOGS_REQUEST: Schema = msg(&[(1, &RESOURCE_LOGS)]);
static RESOURCE_LOGS: Schema = msg(&[(1, &RESOURCE), (2, &SCOPE_LOGS)]);
static SCOPE_LOGS: Schema = msg(&[(1, &SCOPE), (2, &LOG_RECORD)]);
static LOG_RECORD: Schema = msg(&[(5, &ANY_VALUE), (6, &KEY_VALUE)]);

static TRACES_REQUEST: Schema = msg(&[(1, &RESOURCE_SPANS)]);
static RESOURCE_SPANS: Schema = msg(&[(1, &RESOURCE), (2, &SCOPE_SPANS)]);
static SCOPE_SPANS: Schema = msg(&[(1, &SCOPE), (2, &SPAN)]);
static SPAN: Schema = msg(&[(9, &KEY_VALUE), (11, &EVENT), (13, &LINK), (15, &STATUS)]);
static EVENT: Schema = msg(&[(3, &KEY_VALUE)]);
static LINK: Schema = msg(&[(4, &KEY_VALUE)]);
static STATUS: Schema = msg(&[]);

static METRICS_REQUEST: Schema = msg(&[(1, &RESOURCE_METRICS)]);
static RESOURCE_METRICS: Schema = msg(&[(1, &RESOURCE), (2, &SCOPE_METRICS)]);
static SCOPE_METRICS: Schema = msg(&[(1, &SCOPE), (2, &METRIC)]);
static METRIC: Schema = msg(&[
    (5, &GAUGE),
    (7, &SUM),
    (9, &HISTOGRAM),
    (10, &EXP_HISTOGRAM),
    (11, &SUMMARY),
    (12, &KEY_VALUE),
]);
static GAUGE: Schema = msg(&[(1, &NUMBER_POINT)]);
static SUM: Schema = msg(&[(1, &NUMBER_POINT)]);
static HISTOGRAM: Schema = msg(&[(1, &HISTOGRAM_POINT)]);
static EXP_HISTOGRAM: Schema = msg(&[(1, &EXP_HISTOGRAM_POINT)]);
static SUMMARY: Schema = msg(&[(1, &SUMMARY_POINT)]);
static NUMBER_POINT: Schema = msg(&[(5, &EXEMPLAR), (7, &KEY_VALUE)]);
static HISTOGRAM_POINT: Schema = msg(&[(8, &EXEMPLAR), (9, &KEY_VALUE)]);
static EXP_HISTOGRAM_POINT: Schema = msg(&[
    (1, &KEY_VALUE),
    (8, &BUCKETS),
    (9, &BUCKETS),
    (11, &EXEMPLAR),
]);
static BUCKETS: Schema = Schema {
    messages: &[],
    packed_varints: &[2],
};
static SUMMARY_POINT: Schema = msg(&[(6, &QUANTILE), (7, &KEY_VALUE)]);
static QUANTILE: Schema = msg(&[]);
static EXEMPLAR: Schema = msg(&[(7, &KEY_VALUE)]);

impl Scan<'_> {
    fn item(&mut self, depth: u32) -> Result<(), Stop> {
        self.cost.items += 1;
        self.cost.depth = self.cost.depth.max(depth);
        if self.cost.items > self.limits.max_items {
            return Err(Stop::Over(format!(
                "the request holds more than {} messages (records, spans, points, attributes and values), the most one request may hold: send smaller batches",
                self.limits.max_items
            )));
        }
        if depth > self.limits.max_depth {
            return Err(Stop::Over(format!(
                "the request nests values more than {} levels deep, the most accepted",
                self.limits.max_depth
            )));
        }
        self.check_bytes()
    }

    fn check_bytes(&self) -> Result<(), Stop> {
        if self.cost.decoded_bytes() > self.limits.max_decoded_bytes {
            return Err(Stop::Over(format!(
                "the request would take more than {} MiB once decoded, the most one request may take: send smaller batches",
                self.limits.max_decoded_bytes >> 20
            )));
        }
        Ok(())
    }

    fn message(&mut self, mut buf: &[u8], schema: &Schema, depth: u32) -> Result<(), Stop> {
        self.item(depth)?;
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let field = (key >> 3) as u32;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                    self.cost.scalars += 1;
                }
                1 => {
                    buf = buf.get(8..).ok_or(Stop::Malformed)?;
                    self.cost.scalars += 1;
                }
                5 => {
                    buf = buf.get(4..).ok_or(Stop::Malformed)?;
                    self.cost.scalars += 1;
                }
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).map_err(|_| Stop::Malformed)?;
                    if len > buf.len() {
                        return Err(Stop::Malformed);
                    }
                    let (inner, rest) = buf.split_at(len);
                    buf = rest;
                    if let Some(child) = schema.child(field) {
                        self.message(inner, child, depth + 1)?;
                    } else if schema.packed_varints.contains(&field) {
                        // Each element ends in a byte without the
                        // continuation bit and decodes to a u64.
                        let n = inner.iter().filter(|b| **b < 0x80).count() as u64;
                        self.cost.scalars += n;
                    } else {
                        // A string or bytes field: its contents, plus the
                        // 24-byte header a repeated one adds per element.
                        self.cost.bytes += len as u64;
                        self.cost.scalars += 3;
                    }
                    self.check_bytes()?;
                }
                // Groups (3, 4) are not used by OTLP; the decoder refuses
                // them or skips them without keeping anything.
                _ => return Err(Stop::Malformed),
            }
        }
        Ok(())
    }

    /// Counts JSON objects (each decodes to one message), scalars and
    /// string bytes, and the nesting of objects and arrays.
    fn json(&mut self, body: &[u8]) -> Result<(), Stop> {
        // Open objects and arrays, and open objects alone: an object is a
        // message, so its depth is compared with the protobuf scan's.
        let mut nesting: u32 = 0;
        let mut objects: u32 = 0;
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'"' => {
                    let start = i + 1;
                    i += 1;
                    while i < body.len() && body[i] != b'"' {
                        i += if body[i] == b'\\' { 2 } else { 1 };
                    }
                    self.cost.bytes += i.saturating_sub(start) as u64;
                    self.cost.scalars += 3;
                    self.check_bytes()?;
                }
                b'{' => {
                    nesting += 1;
                    objects += 1;
                    // The outermost object is the request, at depth 0 as
                    // in the protobuf scan.
                    self.item(objects - 1)?;
                }
                b'[' => {
                    nesting += 1;
                    if nesting > self.limits.max_depth.saturating_mul(2) {
                        return Err(Stop::Over(format!(
                            "the request nests values more than {} levels deep, the most accepted",
                            self.limits.max_depth
                        )));
                    }
                }
                b'}' => {
                    nesting = nesting.saturating_sub(1);
                    objects = objects.saturating_sub(1);
                }
                b']' => nesting = nesting.saturating_sub(1),
                b',' | b':' => {}
                b if b.is_ascii_whitespace() => {}
                _ => {
                    // A number, true, false or null: one scalar.
                    self.cost.scalars += 1;
                    while i + 1 < body.len() && !b",]}: \t\r\n".contains(&body[i + 1]) {
                        i += 1;
                    }
                    self.check_bytes()?;
                }
            }
            i += 1;
        }
        Ok(())
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, Stop> {
    let mut v: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(v);
        }
    }
    Err(Stop::Malformed)
}
