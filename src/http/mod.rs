//! HTTP/1.x over a reassembled TCP flow.
//!
//! [`half::Half`] parses one direction into messages (httparse heads, RFC 9112 body framing,
//! bounded body inspection); [`conn::Conn`] pairs requests with responses in order and hands
//! out finished [`Transaction`]s. Everything here is fed by [`crate::reassembly::Chunk`]s and
//! keeps to documented caps: a head longer than `max_head` or a pipeline deeper than
//! `max_pending` is an anomaly, never unbounded growth.

pub mod body;
pub mod conn;
pub mod half;

use crate::capture::Ts;

/// HTTP layer caps and switches.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Body bytes kept per message for inspection (after decoding), bytes. Default 64 KiB.
    pub body_depth: usize,
    /// Longest request or response head (start line + headers), bytes. Default 64 KiB (Apache
    /// takes 100 lines of 8190 bytes, Go 1 MiB). A longer head is reported as a truncated
    /// message with the headers that fit and a HEADER_TOO_LONG anomaly.
    pub max_head: usize,
    /// Requests waiting for their responses per connection. Default 1024 (their bytes are
    /// capped at 1 MiB too). Past either cap the oldest unanswered request is reported without
    /// its response (TOO_MANY_PIPELINED_REQUESTS) and its response skipped when it comes, so
    /// later pairings stay exact.
    pub max_pending: usize,
    /// Decode gzip/deflate bodies for inspection (output capped at `body_depth`). Default on.
    pub decompress: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_depth: 64 << 10,
            max_head: 64 << 10,
            max_pending: 1024,
            decompress: true,
        }
    }
}

/// A message's header lines in the order they came: every name and value in one buffer
/// (two allocations per message, not two per line; a head is at most `max_head` bytes). A
/// parsed head's header block is copied in whole ([`Headers::from_block`]: one copy, not two
/// per line), so the buffer may hold bytes between the lines (`: `, CRLF) that are no part
/// of them.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    buf: String,
    /// Per line: where its name starts and ends, and where its value starts and ends, in `buf`.
    lines: Vec<[u32; 4]>,
    /// One bit per line name ([`name_bit`]): `find` answers "absent" for most names without
    /// scanning (a lookup misses far more often than it hits).
    present: u64,
    /// Per name of [`KNOWN`]: 1 + the index of its first line, 0 for none (complete while
    /// there are at most 255 lines; past that `find` scans). The names the code looks up on
    /// every message are answered without a scan; 12 bytes, so a `Message` (moved several
    /// times per transaction) stays small.
    first: [u8; KNOWN.len()],
    /// Per name of [`KNOWN`]: a second line of that name came (framing checks duplicates).
    repeated: u16,
}

/// Header names looked up on (nearly) every message, each on its own presence bit (`upgrade`
/// shares `content-length`'s: not indexed). Lower case.
const KNOWN: [&[u8]; 12] = [
    b"host",
    b"content-type",
    b"user-agent",
    b"content-length",
    b"transfer-encoding",
    b"authorization",
    b"cookie",
    b"x-forwarded-for",
    b"referer",
    b"location",
    b"content-encoding",
    b"set-cookie",
];

/// Index in [`KNOWN`] of a known header name.
#[derive(Clone, Copy)]
pub(crate) enum Known {
    ContentLength = 3,
    TransferEncoding = 4,
}

const _: () = assert!(
    matches!(KNOWN[Known::ContentLength as usize], b"content-length")
        && matches!(KNOWN[Known::TransferEncoding as usize], b"transfer-encoding")
);

/// No name of [`KNOWN`] on this presence bit.
const NO_KNOWN: u8 = u8::MAX;

/// Presence bit (its index) to the name of [`KNOWN`] on it.
const KNOWN_OF_SLOT: [u8; 64] = {
    let mut t = [NO_KNOWN; 64];
    let mut k = 0;
    while k < KNOWN.len() {
        let s = name_slot(KNOWN[k]) as usize;
        assert!(t[s] == NO_KNOWN, "two known header names on one presence bit");
        t[s] = k as u8;
        k += 1;
    }
    t
};

/// The same lines in the same order (whatever else the buffers hold).
impl PartialEq for Headers {
    fn eq(&self, o: &Headers) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter())
    }
}

impl Eq for Headers {}

/// The presence bit of a header name: from its length and its first and last bytes, the same
/// for any two names equal in ASCII case (`| 0x20` maps a letter and its capital alike; any
/// other byte, compared exactly, maps to itself).
#[inline(always)]
fn name_bit(name: &[u8]) -> u64 {
    1 << name_slot(name)
}

/// The index (0..64) of [`name_bit`]'s bit.
#[inline(always)]
const fn name_slot(name: &[u8]) -> u32 {
    let (f, l) = match name {
        [] => (0, 0),
        [f, .., l] => (*f | 0x20, *l | 0x20),
        [f] => (*f | 0x20, *f | 0x20),
    };
    let h = (name.len() as u32)
        .wrapping_mul(0x9e37)
        .wrapping_add((f as u32).wrapping_mul(0x3b))
        .wrapping_add((l as u32).wrapping_mul(0x0d));
    (h ^ (h >> 6)) & 63
}

/// The name of [`KNOWN`] this one is (ASCII case-insensitive), if any.
#[inline(always)]
fn known(name: &[u8], slot: u32) -> Option<usize> {
    let k = usize::from(KNOWN_OF_SLOT[slot as usize & 63]);
    let f = KNOWN_FOLDED.get(k)?;
    (name.len() == f.len && {
        let w = words(name);
        // (a name in lower case, as the code's lookups are, or capitalised, as most clients
        // and servers send it, needs no folding)
        w == f.w
            || w == KNOWN_CAPITALISED[k]
            || (lower8(w[0]) == f.w[0] && lower8(w[1]) == f.w[1] && lower8(w[2]) == f.w[2])
    })
    .then_some(k)
}

/// [`known`] for a name of RFC 9110 `tchar`s only (a head parser's names): `| 0x20` folds
/// a letter's case exactly, and maps no `tchar` onto `-` (only CR, not a `tchar`, goes
/// there), so one OR per word stands in for the case folding.
#[inline(always)]
fn known_token(name: &[u8], slot: u32) -> Option<usize> {
    let k = usize::from(KNOWN_OF_SLOT[slot as usize & 63]);
    let f = KNOWN_FOLDED.get(k)?;
    if name.len() != f.len {
        return None;
    }
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let w = words(name);
    // (the words of a name under 8 bytes are 4 bytes wide, the third 0, as `f`'s are)
    let fold = if name.len() < 8 {
        [FOLD >> 32, FOLD >> 32, 0]
    } else {
        [FOLD; 3]
    };
    ((w[0] | fold[0]) == f.w[0] && (w[1] | fold[1]) == f.w[1] && (w[2] | fold[2]) == f.w[2]).then_some(k)
}

/// The presence bits and the known-name index of [`Headers`], noted line by line while a
/// head is parsed (before the lines are in a buffer).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NameIndex {
    present: u64,
    first: [u8; KNOWN.len()],
    repeated: u16,
}

impl NameIndex {
    /// Line `i` has this name, every byte an RFC 9110 `tchar` (as [`Headers::note_name_at`]
    /// notes any name).
    #[inline(always)]
    pub(crate) fn note_token(&mut self, i: usize, name: &[u8]) {
        debug_assert!(name.iter().all(|b| is_tchar(*b)));
        let slot = name_slot(name);
        self.present |= 1 << slot;
        if let Some(k) = known_token(name, slot) {
            if self.first[k] == 0 {
                // (past 255 lines the index is not complete: `find` scans then)
                if i < 255 {
                    self.first[k] = i as u8 + 1;
                }
            } else {
                self.repeated |= 1 << k;
            }
        }
    }
}

/// A name of 4 to 24 bytes as three words that cover it: eight bytes at its start, middle
/// and end (4 to 7 bytes: four at its start and end, and 0). Two names of one length are
/// equal in ASCII case iff their words are, made lower case ([`lower8`] works per byte).
#[derive(Clone, Copy)]
struct Folded {
    len: usize,
    w: [u64; 3],
}

/// [`KNOWN`] as [`Folded`] words (lower case already).
const KNOWN_FOLDED: [Folded; KNOWN.len()] = {
    let mut t = [Folded { len: 0, w: [0; 3] }; KNOWN.len()];
    let mut k = 0;
    while k < KNOWN.len() {
        let n = KNOWN[k];
        assert!(n.len() >= 4 && n.len() <= 24, "known names are 4 to 24 bytes");
        t[k] = if n.len() < 8 {
            Folded {
                len: n.len(),
                w: [le_word(n, 0, 4), le_word(n, n.len() - 4, 4), 0],
            }
        } else {
            Folded {
                len: n.len(),
                w: [
                    le_word(n, 0, 8),
                    le_word(n, (n.len() - 8) / 2, 8),
                    le_word(n, n.len() - 8, 8),
                ],
            }
        };
        k += 1;
    }
    t
};

/// The [`Folded`] words of [`KNOWN`] written `Content-Type`: a capital letter at the start
/// and after each `-`.
const KNOWN_CAPITALISED: [[u64; 3]; KNOWN.len()] = {
    let mut t = [[0u64; 3]; KNOWN.len()];
    let mut k = 0;
    while k < KNOWN.len() {
        let f = KNOWN_FOLDED[k];
        let n = KNOWN[k];
        // the bytes to capitalise, by offset; then each word takes those it covers
        let starts: [usize; 3] = if n.len() < 8 {
            [0, n.len() - 4, usize::MAX]
        } else {
            [0, (n.len() - 8) / 2, n.len() - 8]
        };
        let width = if n.len() < 8 { 4 } else { 8 };
        let mut w = 0;
        while w < 3 {
            let mut v = f.w[w];
            if starts[w] != usize::MAX {
                let mut j = 0;
                while j < width {
                    let i = starts[w] + j;
                    if n[i].is_ascii_lowercase() && (i == 0 || n[i - 1] == b'-') {
                        v &= !(0x20u64 << (8 * j));
                    }
                    j += 1;
                }
            }
            t[k][w] = v;
            w += 1;
        }
        k += 1;
    }
    t
};

/// `w` bytes of `n` from `i`, little-endian.
const fn le_word(n: &[u8], i: usize, w: usize) -> u64 {
    let mut v = 0u64;
    let mut j = 0;
    while j < w {
        v |= (n[i + j] as u64) << (8 * j);
        j += 1;
    }
    v
}

/// The words of a name of 4 to 24 bytes as [`Folded`] takes them (any other length: words
/// that match no known name's, which has another length anyway).
#[inline(always)]
fn words(n: &[u8]) -> [u64; 3] {
    let w8 = |i: usize| {
        n.get(i..i + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let w4 = |i: usize| {
        n.get(i..i + 4)
            .and_then(|w| w.try_into().ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    if n.len() < 8 {
        [w4(0), w4(n.len().saturating_sub(4)), 0]
    } else {
        [w8(0), w8((n.len() - 8) / 2), w8(n.len() - 8)]
    }
}

impl Headers {
    pub fn with_capacity(lines: usize, bytes: usize) -> Headers {
        Headers {
            buf: String::with_capacity(bytes),
            lines: Vec::with_capacity(lines),
            present: 0,
            first: [0; KNOWN.len()],
            repeated: 0,
        }
    }

    /// Headers over a copy of `block` (a head's header lines as text), holding `lines` lines
    /// added with [`Headers::push_span`]; `extra`: bytes to reserve past the block.
    pub(crate) fn from_block(block: &str, lines: usize, extra: usize) -> Headers {
        let mut buf = String::with_capacity(block.len() + extra);
        buf.push_str(block);
        Headers {
            buf,
            lines: Vec::with_capacity(lines),
            present: 0,
            first: [0; KNOWN.len()],
            repeated: 0,
        }
    }

    /// Add a line whose name and value are already in the buffer: `buf[n..ne]` and
    /// `buf[v..ve]`, ranges on character boundaries (the caller checked them on the text it
    /// copied; a range past the buffer drops the line).
    #[inline]
    pub(crate) fn push_span(&mut self, n: usize, ne: usize, v: usize, ve: usize) {
        if self.buf.as_bytes().get(n..ne).is_none() {
            return;
        }
        if ve > self.buf.len() || v > ve || ve > u32::MAX as usize {
            return;
        }
        self.note_name(n, ne);
        self.lines.push([n as u32, ne as u32, v as u32, ve as u32]);
    }

    /// Before a line whose name is `buf[n..ne]` is added: its presence bit, and its index
    /// entry if it is a known name.
    #[inline(always)]
    fn note_name(&mut self, n: usize, ne: usize) {
        let i = self.lines.len();
        self.note_name_at(i, n, ne);
    }

    /// [`Headers::note_name`] for line `i`.
    #[inline(always)]
    fn note_name_at(&mut self, i: usize, n: usize, ne: usize) {
        let Some(name) = self.buf.as_bytes().get(n..ne) else {
            return;
        };
        let slot = name_slot(name);
        self.present |= 1 << slot;
        if let Some(k) = known(name, slot) {
            if self.first[k] == 0 {
                // (past 255 lines the index is not complete: `find` scans then)
                if i < 255 {
                    self.first[k] = i as u8 + 1;
                }
            } else {
                self.repeated |= 1 << k;
            }
        }
    }

    /// Headers over `buf`, all ASCII, with these lines (name start and end, value start and
    /// end, in `buf`; a line out of range is dropped).
    pub(crate) fn from_ascii_spans(buf: String, mut spans: Vec<[u32; 4]>) -> Headers {
        // (ASCII: every offset is a character boundary)
        debug_assert!(buf.is_ascii());
        let mut h = Headers {
            buf,
            lines: Vec::new(),
            present: 0,
            first: [0; KNOWN.len()],
            repeated: 0,
        };
        let len = h.buf.len() as u32;
        let ok = |&[n, ne, v, ve]: &[u32; 4]| n <= ne && ne <= len && v <= ve && ve <= len;
        if !spans.iter().all(ok) {
            spans.retain(ok);
        }
        for (i, &[n, ne, ..]) in spans.iter().enumerate() {
            h.note_name_at(i, n as usize, ne as usize);
        }
        h.lines = spans;
        h
    }

    /// Headers over `buf`, all ASCII, with these lines (name start and end, value start and
    /// end, in `buf`), whose names `names` noted while the head was parsed (line `i`'s name
    /// at `names.note_token(i, ..)`). The ranges are checked once here; should one be out of
    /// range (the parser never gives one), the lines are taken as [`Headers::from_ascii_spans`]
    /// takes them: that line dropped, the names noted again.
    #[inline]
    pub(crate) fn from_token_lines(buf: String, lines: Vec<[u32; 4]>, names: NameIndex) -> Headers {
        debug_assert!(buf.is_ascii());
        let len = buf.len() as u32;
        // (branch-free: every range is in order and inside `buf`)
        let bad = lines.iter().fold(false, |bad, &[n, ne, v, ve]| {
            bad | (n > ne) | (ne > len) | (v > ve) | (ve > len)
        });
        if bad {
            return Headers::from_ascii_spans(buf, lines);
        }
        let NameIndex {
            present,
            first,
            repeated,
        } = names;
        Headers {
            buf,
            lines,
            present,
            first,
            repeated,
        }
    }

    /// Add a line. Lines past 4 GiB in all (far above any `max_head`) are dropped: offsets
    /// are 32-bit.
    #[inline]
    pub fn push(&mut self, name: &str, value: &str) {
        if self.buf.len() + name.len() + value.len() > u32::MAX as usize {
            return;
        }
        let s = self.buf.len();
        self.buf.push_str(name);
        let n = self.buf.len();
        self.note_name(s, n);
        self.buf.push_str(value);
        self.lines.push([s as u32, n as u32, n as u32, self.buf.len() as u32]);
    }

    /// Can a line with this name (ASCII case-insensitive) be here? False: certainly not.
    #[inline]
    pub fn may_contain(&self, name: &[u8]) -> bool {
        self.present & name_bit(name) != 0
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes of names and values.
    /// (summed when asked: once per queued request, not kept in every message)
    pub fn bytes(&self) -> usize {
        self.lines
            .iter()
            .map(|&[s, n, vs, ve]| (n - s) as usize + (ve - vs) as usize)
            .sum()
    }

    /// Line `i`: (name, value).
    pub fn get(&self, i: usize) -> Option<(&str, &str)> {
        let l = self.lines.get(i)?;
        Some(line(&self.buf, l))
    }

    /// The value of the first line with this name (ASCII case-insensitive). Only names of
    /// the right length are looked at. Inlined: for a name written in the code (nearly every
    /// lookup) its presence bit and its place in the index are worked out when compiling.
    #[inline(always)]
    pub fn find(&self, name: &[u8]) -> Option<&str> {
        let slot = name_slot(name);
        if self.present & (1 << slot) == 0 {
            return None;
        }
        if let Some(k) = known(name, slot).filter(|_| self.lines.len() <= 255) {
            let i = usize::from(self.first[k]).checked_sub(1)?;
            return self.lines.get(i).map(|l| value(&self.buf, l));
        }
        self.scan(name)
    }

    /// [`Headers::find`] by a walk over the lines.
    #[inline(never)]
    fn scan(&self, name: &[u8]) -> Option<&str> {
        let b = self.buf.as_bytes();
        for &[s, n, vs, ve] in &self.lines {
            let (s, n) = (s as usize, n as usize);
            if n.wrapping_sub(s) == name.len() && eq_ignore_case(&b[s..n], name) {
                return Some(&self.buf[vs as usize..ve as usize]);
            }
        }
        None
    }

    /// The value of the first line of a known name, and whether another line of that name
    /// came; `None` when the index cannot tell (past 255 lines: look with `iter`).
    #[inline]
    pub(crate) fn known(&self, k: Known) -> Option<(Option<&str>, bool)> {
        if self.lines.len() > 255 {
            return None;
        }
        let k = k as usize;
        let v = usize::from(self.first[k])
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map(|l| value(&self.buf, l));
        Some((v, self.repeated & (1 << k) != 0))
    }

    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            buf: &self.buf,
            lines: self.lines.iter(),
        }
    }
}

#[inline(always)]
fn line<'a>(buf: &'a str, &[s, n, vs, ve]: &[u32; 4]) -> (&'a str, &'a str) {
    (&buf[s as usize..n as usize], &buf[vs as usize..ve as usize])
}

/// [`line`]'s value alone (the name's range not sliced, nor checked, for nothing).
#[inline(always)]
fn value<'a>(buf: &'a str, &[_, _, vs, ve]: &[u32; 4]) -> &'a str {
    &buf[vs as usize..ve as usize]
}

/// The lines in order.
pub struct HeaderIter<'a> {
    buf: &'a str,
    lines: std::slice::Iter<'a, [u32; 4]>,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let l = self.lines.next()?;
        Some(line(self.buf, l))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.lines.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = HeaderIter<'a>;

    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(it: I) -> Headers {
        let mut h = Headers::default();
        for (n, v) in it {
            h.push(n.as_ref(), v.as_ref());
        }
        h
    }
}

impl<N: AsRef<str>, V: AsRef<str>> Extend<(N, V)> for Headers {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, it: I) {
        for (n, v) in it {
            self.push(n.as_ref(), v.as_ref());
        }
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(v: Vec<(String, String)>) -> Headers {
        v.into_iter().collect()
    }
}

/// A parsed request or response. Owned: it leaves the capture thread inside a transaction.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Request method (empty for a response).
    pub method: String,
    /// Request target as sent (empty for a response).
    pub uri: String,
    /// Response status (0 for a request).
    pub status: u16,
    pub reason: String,
    /// Minor version: `HTTP/1.<minor>`.
    pub minor: u8,
    pub headers: Headers,
    /// Body bytes on the wire after removing chunked framing (still content-encoded).
    pub body_len: u64,
    /// The first `body_depth` bytes of the body, decoded if it was gzip/deflate.
    pub body: Vec<u8>,
    /// The body was decoded from gzip/deflate for inspection.
    pub body_decoded: bool,
    pub start: Ts,
    pub end: Ts,
    /// Part of the message was lost (a reassembly gap).
    pub gap: bool,
    /// The message ended before its framing said it would.
    pub truncated: bool,
    /// An HTTP/0.9 message: a request line without a version, or a reply without a head.
    pub http09: bool,
    /// An HTTP/2 message (a stream's header block and DATA, see [`crate::http2`]).
    pub h2: bool,
}

impl Message {
    /// Decode a gzip/deflate body prefix in place (output capped at `cap` bytes). Returns
    /// false when the body claimed an encoding but did not decode.
    pub fn decode_body(&mut self, cap: usize) -> bool {
        if self.body_decoded || self.body.is_empty() {
            return true;
        }
        let Some(enc) = self.header("content-encoding") else {
            return true;
        };
        match body::decode(enc, &self.body, cap) {
            body::Decoded::Done(v) => {
                self.body = v;
                self.body_decoded = true;
                true
            }
            body::Decoded::Failed => false,
            body::Decoded::NotEncoded => true,
        }
    }

    /// First header with this name (ASCII case-insensitive).
    #[inline(always)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.find(name.as_bytes())
    }

    /// Every value of this header, in the order the lines came (a proxy appends its own
    /// `X-Forwarded-For` line after the client's: the last lines are the trusted ones).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        // (no line of that name: nothing to walk)
        let lines = if self.headers.may_contain(name.as_bytes()) {
            self.headers.len()
        } else {
            0
        };
        self.headers
            .iter()
            .take(lines)
            .filter(move |(n, _)| eq_ignore_case(n.as_bytes(), name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn protocol(&self) -> &'static str {
        match (self.http09, self.minor) {
            _ if self.h2 => "HTTP/2",
            (true, _) => "HTTP/0.9",
            (_, 0) => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }
}

/// One request and its response, either possibly missing (lost, or cut by the end of input).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub request: Option<Message>,
    pub response: Option<Message>,
    /// Some bytes of this transaction never reached the sensor (a message is missing or has a
    /// hole).
    pub gap: bool,
    /// A message ended before its framing said it would.
    pub truncated: bool,
    /// A gRPC call's summary (HTTP/2 with `content-type: application/grpc*`).
    pub grpc: Option<Box<crate::http2::grpc::Grpc>>,
}

impl Transaction {
    pub fn new(request: Option<Message>, response: Option<Message>, lost: bool) -> Self {
        let mut t = Transaction {
            request,
            response,
            gap: false,
            truncated: false,
            grpc: None,
        };
        t.seal(lost);
        t
    }

    /// Set the flags [`Transaction::new`] derives from the messages, for a transaction whose
    /// messages were put in place one by one (the HTTP/1 queue builds it in its box).
    pub fn seal(&mut self, lost: bool) {
        let (q, r) = (self.request.as_ref(), self.response.as_ref());
        let any = |f: fn(&Message) -> bool| q.is_some_and(f) || r.is_some_and(f);
        self.gap = lost || q.is_none() || any(|m| m.gap);
        self.truncated = any(|m| m.truncated);
    }

    /// Decode both bodies for inspection (see [`Message::decode_body`]); false if one failed.
    pub fn decode_bodies(&mut self, cap: usize) -> bool {
        let a = self.request.as_mut().is_none_or(|m| m.decode_body(cap));
        let b = self.response.as_mut().is_none_or(|m| m.decode_body(cap));
        a && b
    }

    /// Request start, else response start.
    pub fn start(&self) -> Ts {
        self.request.as_ref().or(self.response.as_ref()).map_or(0, |m| m.start)
    }

    /// Wire latency: request end to response start, microseconds.
    pub fn latency_us(&self) -> Option<u64> {
        let (q, r) = (self.request.as_ref()?, self.response.as_ref()?);
        Some(r.start.saturating_sub(q.end) / 1000)
    }
}

/// HTTP-layer anomalies, as EVE `anomaly.event` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnomaly {
    InvalidRequest,
    InvalidResponse,
    HeadTooLong,
    TooManyHeaders,
    ContentLengthAndChunked,
    MultipleContentLength,
    InvalidContentLength,
    UnknownTransferEncoding,
    InvalidChunk,
    TooManyPipelined,
    ResponseWithoutRequest,
    BodyDecodeError,
    ObsFold,
    Gap,
    /// A start line nginx accepts and a strict parser refuses (`HTTP/1.2`, `HTTP/1.01`, HTTP/0.9,
    /// a space in the target, a lower-case version...): parsed, and reported.
    UnusualStartLine,
    /// A status that is not three digits (`2XX`).
    InvalidStatus,
    /// A control byte in a header value (kept, as nginx passes it on).
    HeaderControlChar,
    /// Bytes before the first message of a direction (skipped to the first message line).
    JunkBeforeMessage,
    /// A chunk size above 2^63-1.
    ChunkSizeOverflow,
    /// A response to a request never seen announced a body, and a status line followed at
    /// once: taken as a bodiless response (a HEAD) followed by the next one.
    ResponseWithoutBody,
    /// An HTTP/2 frame that breaks RFC 9113 (stream id, length, padding, order of a header
    /// block's frames): the direction resynchronises on the frame layout.
    H2Frame,
    /// A header block of more than 256 CONTINUATION frames or `max_head` bytes: dropped.
    H2ContinuationFlood,
    /// More open HTTP/2 streams than `max_pending`: the oldest is reported as it is.
    H2TooManyStreams,
    /// A header block HPACK cannot decode: the direction's table becomes unknown.
    HpackError,
    /// A dynamic table size update above what the peer allowed (or above our cap).
    HpackTableSize,
}

impl HttpAnomaly {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpAnomaly::InvalidRequest => "INVALID_REQUEST_LINE_OR_HEADER",
            HttpAnomaly::InvalidResponse => "INVALID_RESPONSE_LINE_OR_HEADER",
            HttpAnomaly::HeadTooLong => "HEADER_TOO_LONG",
            HttpAnomaly::TooManyHeaders => "TOO_MANY_HEADERS",
            HttpAnomaly::ContentLengthAndChunked => "REQUEST_SMUGGLING_CL_TE",
            HttpAnomaly::MultipleContentLength => "MULTIPLE_CONTENT_LENGTH",
            HttpAnomaly::InvalidContentLength => "INVALID_CONTENT_LENGTH",
            HttpAnomaly::UnknownTransferEncoding => "UNKNOWN_TRANSFER_ENCODING",
            HttpAnomaly::InvalidChunk => "INVALID_CHUNK",
            HttpAnomaly::TooManyPipelined => "TOO_MANY_PIPELINED_REQUESTS",
            HttpAnomaly::ResponseWithoutRequest => "UNSOLICITED_RESPONSE",
            HttpAnomaly::BodyDecodeError => "BODY_DECODE_ERROR",
            HttpAnomaly::ObsFold => "OBSOLETE_LINE_FOLDING",
            HttpAnomaly::Gap => "GAP_IN_MESSAGE",
            HttpAnomaly::UnusualStartLine => "UNUSUAL_START_LINE",
            HttpAnomaly::InvalidStatus => "INVALID_RESPONSE_STATUS",
            HttpAnomaly::HeaderControlChar => "HEADER_VALUE_CONTROL_CHARACTER",
            HttpAnomaly::JunkBeforeMessage => "JUNK_BEFORE_MESSAGE",
            HttpAnomaly::ChunkSizeOverflow => "CHUNK_SIZE_OVERFLOW",
            HttpAnomaly::ResponseWithoutBody => "RESPONSE_BODY_IS_NEXT_RESPONSE",
            HttpAnomaly::H2Frame => "HTTP2_INVALID_FRAME",
            HttpAnomaly::H2ContinuationFlood => "HTTP2_CONTINUATION_FLOOD",
            HttpAnomaly::H2TooManyStreams => "HTTP2_TOO_MANY_STREAMS",
            HttpAnomaly::HpackError => "HTTP2_HPACK_DECODE_ERROR",
            HttpAnomaly::HpackTableSize => "HTTP2_HPACK_TABLE_SIZE_EXCEEDED",
        }
    }
}

/// Is a body of this content type worth keeping for inspection (parameters, credentials,
/// attack payloads, sensitive data)? Media, fonts and archives are counted, not kept.
/// No content type: kept (API clients often omit it).
pub fn worth_inspecting(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    // (the API case, exactly as servers write it: no prefix below starts `json`)
    if ct.as_bytes().get(..16) == Some(b"application/json") {
        return true;
    }
    // bytes, not str: a header value can hold a multi-byte character anywhere
    let ct = ct.trim_start().as_bytes();
    // `application/...` first (the common API case), compared once, then its subtypes
    const APP: &[&[u8]] = &[
        b"octet-stream",
        b"zip",
        b"gzip",
        b"x-gzip",
        b"pdf",
        b"wasm",
        b"vnd.ms-fontobject",
        b"x-tar",
        b"x-7z",
        b"javascript",
        b"font",
    ];
    // (by the first letter: `c | 0x20` is that lower-case letter only for it and its capital)
    match ct.first().map(|c| c | 0x20) {
        Some(b'a') if starts_ci(ct, b"application/") => {
            let sub = &ct[b"application/".len()..];
            !APP.iter().any(|p| starts_ci(sub, p))
        }
        Some(b'a') => !starts_ci(ct, b"audio/"),
        Some(b'i') => !starts_ci(ct, b"image/"),
        Some(b'v') => !starts_ci(ct, b"video/"),
        Some(b'f') => !starts_ci(ct, b"font/"),
        Some(b't') => !(starts_ci(ct, b"text/javascript") || starts_ci(ct, b"text/css")),
        _ => true,
    }
}

/// Does `b` start with `p` (ASCII case-insensitive)? `p` starts with a lower-case letter.
#[inline(always)]
fn starts_ci(b: &[u8], p: &[u8]) -> bool {
    b.len() >= p.len() && b[0] | 0x20 == p[0] && eq_ignore_case(&b[..p.len()], p)
}

/// `a.eq_ignore_ascii_case(b)`, eight bytes at a time (header names are compared on every
/// lookup: this is the capture thread's most frequent comparison).
#[inline]
pub fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() < 8 {
            a.eq_ignore_ascii_case(b)
        } else {
            eq_words(a, b)
        }
}

/// [`eq_ignore_case`] of two slices of the same length, at least 8.
fn eq_words(a: &[u8], b: &[u8]) -> bool {
    #[inline(always)]
    fn word(s: &[u8], i: usize) -> u64 {
        s.get(i..i + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        if lower8(word(a, i)) != lower8(word(b, i)) {
            return false;
        }
        i += 8;
    }
    // the last eight bytes (overlapping the words already compared)
    i == n || lower8(word(a, n - 8)) == lower8(word(b, n - 8))
}

/// Eight bytes with `A`-`Z` made lower case, every other byte as it was (no carry crosses a
/// byte: the sums are taken on the low 7 bits, at most 0x7f + 0x3f).
#[inline]
fn lower8(w: u64) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    let h = w & LO7;
    // high bit set where the low 7 bits are >= 'A', and where they are > 'Z'
    let ge_a = h + 0x3f3f_3f3f_3f3f_3f3f;
    let gt_z = h + 0x2525_2525_2525_2525;
    let upper = ge_a & !gt_z & !w & HI;
    w | (upper >> 2)
}

/// RFC 9110 `tchar`: the bytes of a method token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Longest method token the probe takes for one (nginx has no limit short of the line).
const MAX_METHOD: usize = 64;

/// Does `d` start like a request line? The decision is made on the line's shape, not on a
/// list of methods: a token (any RFC 9110 `tchar`s), one or more spaces, then a target that
/// starts like one (`/`, `*`, `http://`, `https://`; after `CONNECT` any authority), or, when
/// the whole line is there, anything followed by a ` HTTP/x.y` version. `None` when too short
/// to tell.
pub(crate) fn starts_request(d: &[u8]) -> Option<bool> {
    let tok = d.iter().take(MAX_METHOD + 1).take_while(|b| is_tchar(**b)).count();
    if tok == d.len() {
        return if tok <= MAX_METHOD { None } else { Some(false) };
    }
    if tok == 0 || tok > MAX_METHOD || (d[tok] != b' ' && d[tok] != b'\t') {
        return Some(false);
    }
    let method = &d[..tok];
    let rest = &d[tok..];
    let sp = rest.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    let target = &rest[sp..];
    let Some(&first) = target.first() else {
        return if sp > 16 { Some(false) } else { None };
    };
    if first == b'/' || first == b'*' {
        return Some(true);
    }
    if method == b"CONNECT" && first > b' ' && first < 0x7f {
        return Some(true);
    }
    for scheme in [&b"http://"[..], b"https://"] {
        let n = scheme.len().min(target.len());
        if target[..n].eq_ignore_ascii_case(&scheme[..n]) {
            if n == scheme.len() {
                return Some(true);
            }
            if n == target.len() {
                return None;
            }
        }
    }
    // Any other target: only a complete line that ends in a version says "request".
    let Some(lf) = memchr::memchr(b'\n', target) else {
        return if target.len() > 8 << 10 { Some(false) } else { None };
    };
    let line = target[..lf].strip_suffix(b"\r").unwrap_or(&target[..lf]);
    let line = line.trim_ascii_end();
    let word = line.rsplit(|b| *b == b' ' || *b == b'\t').next().unwrap_or(&[]);
    Some(word.len() < line.len() && parse_version(word).is_some())
}

/// `HTTP/<major>.<minor>` (ASCII case-insensitive, as some servers and test suites send it;
/// any number of digits, `HTTP/1.01` is 1.1 as nginx reads it). Values saturate at 255.
pub(crate) fn parse_version(w: &[u8]) -> Option<(u8, u8)> {
    if w.len() < 8 || !w[..5].eq_ignore_ascii_case(b"HTTP/") {
        return None;
    }
    let v = &w[5..];
    let dot = memchr::memchr(b'.', v)?;
    let num = |s: &[u8]| -> Option<u8> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0u32, |a, b| (a * 10 + u32::from(b - b'0')).min(255)) as u8)
    };
    Some((num(&v[..dot])?, num(&v[dot + 1..])?))
}

/// Does `d` start like a status line (`HTTP/1.`, any case)? `None` when too short to tell.
pub(crate) fn starts_response(d: &[u8]) -> Option<bool> {
    // (as servers write it, the common case: one comparison)
    if d.starts_with(b"HTTP/1.") {
        return Some(true);
    }
    // lower case already: only `d`'s bytes are folded (not the constant's, on every call)
    const P: &[u8] = b"http/1.";
    let n = P.len().min(d.len());
    if !d[..n].iter().zip(P).all(|(c, p)| c.to_ascii_lowercase() == *p) {
        Some(false)
    } else if n < P.len() {
        None
    } else {
        Some(true)
    }
}

#[cfg(test)]
mod tests {

    /// Found by the `analysis` fuzz target: a Content-Type with a multi-byte character inside
    /// the first bytes made the prefix comparison slice a `str` mid-character (a panic on the
    /// capture thread from one header).
    #[test]
    fn content_types_with_multibyte_characters() {
        assert!(worth_inspecting(Some("appl\u{fffd}cation/json")));
        assert!(worth_inspecting(Some("\u{fffd}\u{fffd}\u{fffd}")));
        assert!(!worth_inspecting(Some("image/png")));
    }

    use super::*;

    #[test]
    fn request_and_status_line_probes() {
        assert_eq!(starts_request(b"GET / HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"RPC_IN_DATA /rpc/rpcproxy.dll HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"BREW http://pot/ HTTP/1.1"), Some(true));
        assert_eq!(starts_request(b"GE"), None);
        assert_eq!(starts_request(b"SSH-2.0-OpenSSH_9.2\r\n"), Some(false));
        assert_eq!(starts_request(b"\x16\x03\x01\x02\x00"), Some(false));
        assert_eq!(starts_request(b"EHLO mail.example\r\n"), Some(false));
        assert_eq!(starts_request(b"HTTP/1.1 200 OK"), Some(false));
        assert_eq!(starts_response(b"HTTP/1.1 200 OK"), Some(true));
        assert_eq!(starts_response(b"HTT"), None);
        assert_eq!(starts_response(b"220 smtp ready"), Some(false));
        assert_eq!(starts_response(b"http/1.1 200 OK"), Some(true));
    }

    /// Issue 12 item 1: nginx serves any token as a method (405 for unknown ones) and keeps the
    /// connection: a 2- or 21-letter method must not make the flow "not HTTP".
    #[test]
    fn request_line_shape_not_method_list_decides_http() {
        assert_eq!(starts_request(b"AB / HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"get /x HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"M-SEARCH * HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"CONNECT example.com:443 HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"X odd-target HTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"X odd-target"), None);
        assert_eq!(starts_request(b"X odd target\r\n"), Some(false));
        assert_eq!(starts_request(b"GET "), None);
        // Apache takes a tab between the parts (and answers 400 in strict mode, logged)
        assert_eq!(starts_request(b"PUT\t/x\tHTTP/1.1\r\n"), Some(true));
        assert_eq!(starts_request(b"GET ht"), None);
        assert_eq!(parse_version(b"HTTP/1.01"), Some((1, 1)));
        assert_eq!(parse_version(b"http/1.9"), Some((1, 9)));
        assert_eq!(parse_version(b"HTTP/1"), None);
    }

    #[test]
    fn headers_keep_lines_in_order_with_empty_and_repeated_ones() {
        let mut h = Headers::default();
        assert!(h.is_empty() && h.get(0).is_none() && h.iter().next().is_none());
        h.push("Host", "api.example");
        h.push("X-Empty", "");
        h.push("", "");
        h.push("X-Forwarded-For", "10.0.0.1");
        h.push("x-forwarded-for", "naïve ☃");
        let lines: Vec<_> = h.iter().collect();
        assert_eq!(
            lines,
            [
                ("Host", "api.example"),
                ("X-Empty", ""),
                ("", ""),
                ("X-Forwarded-For", "10.0.0.1"),
                ("x-forwarded-for", "naïve ☃")
            ]
        );
        assert_eq!(h.len(), 5);
        assert_eq!(h.iter().len(), 5);
        assert_eq!(h.get(4), Some(("x-forwarded-for", "naïve ☃")));
        assert!(h.get(5).is_none());
        let m = Message {
            headers: h.clone(),
            ..Message::default()
        };
        assert_eq!(m.header("x-empty"), Some(""));
        assert_eq!(
            m.header_values("X-FORWARDED-FOR").collect::<Vec<_>>(),
            ["10.0.0.1", "naïve ☃"]
        );
        let from: Headers = lines
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into();
        assert_eq!(from, h);
    }

    #[test]
    fn find_is_the_first_line_whose_name_matches_in_any_case() {
        let h: Headers = vec![
            ("Host".to_string(), "a".to_string()),
            ("Connection".to_string(), "close".to_string()),
            ("User-Agent".to_string(), "curl".to_string()),
            ("user-agent".to_string(), "second".to_string()),
            ("X".to_string(), "".to_string()),
        ]
        .into();
        for name in [
            "host",
            "HOST",
            "user-agent",
            "connection",
            "x",
            "missing",
            "",
            "user-agen",
        ] {
            let want = h.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
            assert_eq!(h.find(name.as_bytes()), want, "{name}");
        }
        assert_eq!(h.find(b"user-agent"), Some("curl"));
    }

    #[test]
    fn header_values_are_trimmed_as_str_trim_does() {
        let cases: [&[u8]; 9] = [
            b"  plain value \t",
            b"\x0bvt\x0c\r\n",
            b"",
            b"   ",
            b"a",
            b" caf\xc3\xa9 \xe2\x80\x83",
            b"\xff\xfe broken ",
            b"\t x y \t",
            b"\x1f ctl \x7f",
        ];
        for v in cases {
            let mut h = Headers::default();
            half::push_value(&mut h, "X", v);
            let want = String::from_utf8_lossy(v).trim().to_string();
            assert_eq!(h.get(0), Some(("X", want.as_str())), "{v:?}");
        }
    }

    /// A small deterministic generator for the equivalence tests.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn eq_ignore_case_agrees_with_the_standard_comparison() {
        // every pair of bytes, at every position of names 1 to 20 bytes long
        for len in 1..=20usize {
            for pos in [0, len / 2, len - 1] {
                for x in 0..=255u8 {
                    for y in [
                        x,
                        x ^ 0x20,
                        x.wrapping_add(1),
                        b'a',
                        b'A',
                        b'-',
                        b'\r',
                        0x80 | (x & 0x7f),
                    ] {
                        let mut a = vec![b'k'; len];
                        let mut b = vec![b'K'; len];
                        a[pos] = x;
                        b[pos] = y;
                        assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b), "{a:?} {b:?}");
                    }
                }
            }
        }
        let mut seed = 7;
        for _ in 0..20_000 {
            let len = (lcg(&mut seed) % 24) as usize;
            let a: Vec<u8> = (0..len)
                .map(|_| b"aAzZ@[`{-_\x00\xff\xc1\xe1"[(lcg(&mut seed) % 14) as usize])
                .collect();
            let b: Vec<u8> = a
                .iter()
                .map(|c| if lcg(&mut seed) % 4 == 0 { c ^ 0x20 } else { *c })
                .collect();
            assert_eq!(eq_ignore_case(&a, &b), a.eq_ignore_ascii_case(&b), "{a:?} {b:?}");
        }
        assert!(!eq_ignore_case(b"content-length", b"content-lengt"));
        assert!(eq_ignore_case(b"", b""));
    }

    #[test]
    fn worth_inspecting_skips_the_same_content_types_as_the_prefix_list() {
        const SKIP: &[&str] = &[
            "image/",
            "video/",
            "audio/",
            "font/",
            "application/octet-stream",
            "application/zip",
            "application/gzip",
            "application/x-gzip",
            "application/pdf",
            "application/wasm",
            "application/vnd.ms-fontobject",
            "application/x-tar",
            "application/x-7z",
            "application/javascript",
            "text/javascript",
            "text/css",
            "application/font",
        ];
        let reference = |ct: &str| {
            let ct = ct.trim_start();
            !SKIP
                .iter()
                .any(|p| ct.len() >= p.len() && ct.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        };
        let mut cases: Vec<String> = vec![
            "".into(),
            " ".into(),
            "application/".into(),
            "application".into(),
            "application/json".into(),
            "application/jsonx".into(),
            "application/jso".into(),
            "application/javascript+json".into(),
            "application/json-seq".into(),
            "application/json".into(),
            "Application/JSON; charset=utf-8".into(),
            "\u{a0}image/png".into(),
            "\t IMAGE/png".into(),
            "text/html".into(),
            "text/cssx".into(),
            "application/x-7zip".into(),
            "application/fontobject".into(),
            "appl\u{fffd}cation/zip".into(),
            "application/\u{e9}".into(),
            "@pplication/zip".into(),
        ];
        for p in SKIP {
            cases.push(p.to_string());
            cases.push(p.to_uppercase());
            cases.push(format!("  {p}x"));
            cases.push(p[..p.len() - 1].to_string());
        }
        for ct in &cases {
            assert_eq!(worth_inspecting(Some(ct)), reference(ct), "{ct:?}");
        }
        assert!(worth_inspecting(None));
    }

    #[test]
    fn header_lookup_takes_the_first_line_of_that_name_in_any_case() {
        let m = Message {
            headers: Headers::from(vec![
                ("X-Forwarded-For".to_string(), "1.1.1.1".to_string()),
                ("Content-Typf".to_string(), "no".to_string()),
                ("content-TYPE".to_string(), "application/json".to_string()),
                ("Content-Type".to_string(), "text/html".to_string()),
                ("".to_string(), "empty name".to_string()),
                ("Host".to_string(), "".to_string()),
            ]),
            ..Message::default()
        };
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert_eq!(m.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(m.header("x-forwarded-for"), Some("1.1.1.1"));
        assert_eq!(m.header("host"), Some(""));
        assert_eq!(m.header(""), Some("empty name"));
        assert_eq!(m.header("content-typ"), None);
        assert_eq!(
            m.header_values("Content-Type").collect::<Vec<_>>(),
            ["application/json", "text/html"]
        );
        let lines: Vec<_> = m.headers.iter().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[2], ("content-TYPE", "application/json"));
        assert_eq!(lines[5], ("Host", ""));
    }

    /// The presence mask is a prefilter only: `find`, `may_contain` and `header_values` give
    /// what a plain scan of the lines gives, for names in any case, long names, empty and
    /// non-ASCII ones, and names that share a length or first and last letters.
    #[test]
    fn find_with_the_presence_mask_agrees_with_a_plain_scan() {
        let names = [
            "Host",
            "host",
            "HOST",
            "hosT",
            "User-Agent",
            "Content-Type",
            "content-length",
            "Content-Length",
            "Transfer-Encoding",
            "Authorization",
            "Cookie",
            "X-Forwarded-For",
            "Referer",
            "Origin",
            "Location",
            "Content-Encoding",
            "",
            "a",
            "A",
            "ab",
            "hxxt",
            "hast",
            "h\u{e9}st",
            "H\u{c9}ST",
            "na\u{ef}ve-\u{2603}",
            "x-very-long-header-name-that-goes-on-and-on-past-every-word-boundary-and-more",
            "X-VERY-LONG-HEADER-NAME-THAT-GOES-ON-AND-ON-PAST-EVERY-WORD-BOUNDARY-AND-MORE",
            "@",
            "`",
            "[x]",
            "{x}",
            "\u{7f}",
        ];
        let mut seed = 11;
        for round in 0..400 {
            let mut lines: Vec<(String, String)> = Vec::new();
            let n = (lcg(&mut seed) % 9) as usize;
            for i in 0..n {
                let base = names[(lcg(&mut seed) as usize) % names.len()];
                // flip the case of some ASCII letters
                let name: String = base
                    .chars()
                    .map(|c| {
                        if lcg(&mut seed).is_multiple_of(3) {
                            if c.is_ascii_lowercase() {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            }
                        } else {
                            c
                        }
                    })
                    .collect();
                lines.push((name, format!("v{round}.{i}")));
            }
            let h: Headers = lines.clone().into();
            for probe in names.iter().copied().chain(lines.iter().map(|(n, _)| n.as_str())) {
                let plain = lines
                    .iter()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(probe.as_bytes()))
                    .map(|(_, v)| v.as_str());
                assert_eq!(h.find(probe.as_bytes()), plain, "{probe:?} in {lines:?}");
                if plain.is_some() {
                    assert!(h.may_contain(probe.as_bytes()), "{probe:?}");
                }
                let all: Vec<&str> = lines
                    .iter()
                    .filter(|(n, _)| n.as_bytes().eq_ignore_ascii_case(probe.as_bytes()))
                    .map(|(_, v)| v.as_str())
                    .collect();
                let m = Message {
                    headers: h.clone(),
                    ..Message::default()
                };
                assert_eq!(m.header_values(probe).collect::<Vec<_>>(), all, "{probe:?}");
            }
        }
        // a name pushed is always found, whatever its bytes
        for x in 0..=255u8 {
            for len in [1usize, 2, 7, 8, 9, 40] {
                let name: Vec<u8> = (0..len).map(|i| if i % 2 == 0 { x } else { b'k' }).collect();
                let name = String::from_utf8_lossy(&name).into_owned();
                let mut h = Headers::default();
                h.push("Other", "o");
                h.push(&name, "v");
                assert_eq!(h.find(name.as_bytes()), Some("v"), "{name:?}");
                assert_eq!(h.find(name.to_ascii_uppercase().as_bytes()), Some("v"), "{name:?}");
                assert_eq!(h.find(name.to_ascii_lowercase().as_bytes()), Some("v"), "{name:?}");
            }
        }
        assert_eq!(Headers::default().find(b""), None);
    }

    /// Lines added as ranges of a copied block and lines pushed as copies read back the same,
    /// and compare equal whatever else the buffers hold.
    #[test]
    fn block_ranges_and_pushed_lines_read_back_alike() {
        let block = "Host: a\r\nX-Y:  b c \r\nCaf\u{e9}: \u{2603}\r\n\r\n";
        let mut h = Headers::from_block(block, 3, 0);
        h.push_span(0, 4, 6, 7);
        h.push_span(9, 12, 15, 18);
        h.push_span(21, 26, 28, 31);
        // out of range: dropped, never a panic later
        h.push_span(40, 50, 0, 1);
        h.push_span(0, 1, 30, 400);
        h.push("Late", "pushed");
        let want = [
            ("Host", "a"),
            ("X-Y", "b c"),
            ("Caf\u{e9}", "\u{2603}"),
            ("Late", "pushed"),
        ];
        assert_eq!(h.iter().collect::<Vec<_>>(), want);
        assert_eq!(h.len(), 4);
        assert_eq!(h.find(b"x-y"), Some("b c"));
        assert_eq!(h.find(b"CAF\xc3\xa9"), Some("\u{2603}"));
        assert_eq!(h.find(b"late"), Some("pushed"));
        let copied: Headers = want.iter().copied().collect();
        assert_eq!(h, copied);
        assert_eq!(h.bytes(), copied.bytes());
        assert_eq!(h.bytes(), want.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>());
        assert_ne!(h, Headers::default());
    }

    /// The known-name index answers as a walk over the lines does: first line of a name in
    /// any case, repeats noticed, names sharing a presence bit with a known one (`upgrade`),
    /// lines added by copy and as spans, and past 255 lines (where the index stops and
    /// `find` walks).
    #[test]
    fn known_header_index_agrees_with_a_walk() {
        let names = [
            "Host",
            "HOST",
            "host",
            "Content-Type",
            "content-TYPE",
            "User-Agent",
            "Content-Length",
            "Transfer-Encoding",
            "Authorization",
            "Cookie",
            "X-Forwarded-For",
            "Referer",
            "Location",
            "Content-Encoding",
            "Set-Cookie",
            "Upgrade",
            "Hosx",
            "Content-Typf",
            "Content-Lengtg",
            "X",
        ];
        fn walk<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
            h.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
        }
        let mut seed = 5u64;
        for round in 0..600 {
            let mut h = Headers::default();
            let pad = if round % 10 == 0 {
                250 + (lcg(&mut seed) % 10) as usize
            } else {
                0
            };
            for i in 0..pad {
                h.push("X-Pad", &i.to_string());
            }
            for i in 0..(lcg(&mut seed) % 8) {
                let n = names[(lcg(&mut seed) as usize) % names.len()];
                h.push(n, &format!("v{i}"));
            }
            for probe in names {
                assert_eq!(h.find(probe.as_bytes()), walk(&h, probe), "{probe}");
                assert_eq!(
                    h.find(probe.to_ascii_lowercase().as_bytes()),
                    walk(&h, probe),
                    "{probe}"
                );
            }
            for (k, name) in [
                (Known::ContentLength, "content-length"),
                (Known::TransferEncoding, "transfer-encoding"),
            ] {
                let count = h.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count();
                match h.known(k) {
                    Some((v, rep)) => {
                        assert!(h.len() <= 255);
                        assert_eq!(v, walk(&h, name), "{name}");
                        assert_eq!(rep, count > 1, "{name}");
                    }
                    None => assert!(h.len() > 255),
                }
            }
        }
        // spans over a block index the same way
        let block = "HOST: a\r\nhost: b\r\nContent-Length: 3\r\n";
        let h = Headers::from_ascii_spans(block.to_string(), vec![[0, 4, 6, 7], [9, 13, 15, 16], [18, 32, 34, 35]]);
        assert_eq!(h.find(b"host"), Some("a"));
        assert_eq!(h.known(Known::ContentLength), Some((Some("3"), false)));
        // a span out of range is dropped, never a panic later
        let h = Headers::from_ascii_spans("Host: a".to_string(), vec![[0, 4, 6, 70], [0, 4, 6, 7]]);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("Host", "a")]);
    }

    /// For names of `tchar`s, the one-OR-per-word known-name test answers as the case-folding
    /// one: the known names in every case, each with every byte replaced by every `tchar`
    /// (near misses), and random `tchar` names; and the index noted while parsing is the one
    /// the lines give when added one by one.
    #[test]
    fn known_token_agrees_with_known_on_tchar_names() {
        let tchars: Vec<u8> = (0..=255u8).filter(|b| is_tchar(*b)).collect();
        let agree = |name: &[u8]| {
            let slot = name_slot(name);
            assert_eq!(
                known_token(name, slot),
                known(name, slot),
                "{:?}",
                String::from_utf8_lossy(name)
            );
        };
        let mut seed = 17u64;
        for n in KNOWN {
            for variant in 0..4 {
                let mut name: Vec<u8> = n
                    .iter()
                    .map(|c| match variant {
                        0 => *c,
                        1 => c.to_ascii_uppercase(),
                        _ if lcg(&mut seed).is_multiple_of(2) => c.to_ascii_uppercase(),
                        _ => *c,
                    })
                    .collect();
                agree(&name);
                for at in 0..name.len() {
                    let was = name[at];
                    for &c in &tchars {
                        name[at] = c;
                        agree(&name);
                    }
                    name[at] = was;
                }
            }
        }
        for _ in 0..200_000 {
            let len = 1 + (lcg(&mut seed) % 26) as usize;
            let name: Vec<u8> = (0..len)
                .map(|_| tchars[(lcg(&mut seed) as usize) % tchars.len()])
                .collect();
            agree(&name);
        }
        // an index noted line by line, as a head parser does, is the one pushed lines give
        let names = [
            "Host",
            "content-length",
            "CONTENT-LENGTH",
            "Accept",
            "Set-Cookie",
            "x_y",
        ];
        for round in 0..2000 {
            let n = (lcg(&mut seed) % 12) as usize + if round % 50 == 0 { 260 } else { 0 };
            let mut buf = String::new();
            let mut lines = Vec::new();
            let mut idx = NameIndex::default();
            let mut pushed = Headers::default();
            for i in 0..n {
                let name = names[(lcg(&mut seed) as usize) % names.len()];
                let s = buf.len() as u32;
                buf.push_str(name);
                buf.push_str(": v\r\n");
                idx.note_token(i, name.as_bytes());
                let ne = s + name.len() as u32;
                lines.push([s, ne, ne + 2, ne + 3]);
                pushed.push(name, "v");
            }
            let h = Headers::from_token_lines(buf, lines, idx);
            assert_eq!(h, pushed);
            assert_eq!(
                (h.present, h.first, h.repeated),
                (pushed.present, pushed.first, pushed.repeated)
            );
        }
        // a range out of the buffer: the line dropped, the names noted again, no panic
        let mut idx = NameIndex::default();
        idx.note_token(0, b"Host");
        idx.note_token(1, b"Host");
        let h = Headers::from_token_lines("Host: a".to_string(), vec![[0, 4, 6, 70], [0, 4, 6, 7]], idx);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("Host", "a")]);
        assert_eq!(h.known(Known::ContentLength), Some((None, false)));
        assert_eq!(h.find(b"host"), Some("a"));
        assert_eq!(h.repeated, 0);
    }

    /// The status-line probe answers as a case-insensitive comparison with `HTTP/1.` does,
    /// for every byte at every offset of every prefix.
    #[test]
    fn starts_response_is_a_case_insensitive_prefix_test() {
        let reference = |d: &[u8]| {
            const P: &[u8] = b"HTTP/1.";
            let n = P.len().min(d.len());
            if !d[..n].eq_ignore_ascii_case(&P[..n]) {
                Some(false)
            } else if n < P.len() {
                None
            } else {
                Some(true)
            }
        };
        for base in [&b"HTTP/1.1 200 OK"[..], b"http/1.0 204", b"hTtP/1.x"] {
            for len in 0..=base.len() {
                let mut d = base[..len].to_vec();
                assert_eq!(starts_response(&d), reference(&d), "{d:?}");
                for at in 0..len {
                    for c in 0..=255u8 {
                        let was = d[at];
                        d[at] = c;
                        assert_eq!(starts_response(&d), reference(&d), "{d:?}");
                        d[at] = was;
                    }
                }
            }
        }
    }

    /// A message is moved several times per transaction: its header index must stay small.
    #[test]
    fn headers_stay_small() {
        assert!(
            std::mem::size_of::<Headers>() <= 72,
            "{}",
            std::mem::size_of::<Headers>()
        );
    }

    /// The capitalised shortcut is the words of each known name written `Content-Type`.
    #[test]
    fn known_names_capitalised_are_the_words_of_the_capitalised_text() {
        for (k, n) in KNOWN.iter().enumerate() {
            let cap: Vec<u8> = n
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 || n[i - 1] == b'-' {
                        c.to_ascii_uppercase()
                    } else {
                        *c
                    }
                })
                .collect();
            assert_eq!(words(&cap), KNOWN_CAPITALISED[k], "{}", String::from_utf8_lossy(&cap));
            assert_eq!(known(&cap, name_slot(&cap)), Some(k));
            assert_eq!(words(n), KNOWN_FOLDED[k].w);
        }
    }
}
