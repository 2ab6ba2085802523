//! Sensitive data found in response bodies: what kinds, never the values.
//!
//! Scanners look at the inspected (decoded) body prefix only and favour precision: a card
//! number must pass the Luhn check and have 13 to 19 digits, a US SSN must be `ddd-dd-dddd`
//! with valid area/group/serial, a phone number must be written in international form
//! (`+` and 10 to 15 digits), a JWT must have three base64url parts with a JSON header.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sensitive {
    Email,
    Phone,
    CardNumber,
    UsSsn,
    Jwt,
    ApiKey,
    PrivateKey,
}

impl Sensitive {
    /// Every kind, in declaration (and so `Ord`) order.
    pub const ALL: [Sensitive; 7] = [
        Sensitive::Email,
        Sensitive::Phone,
        Sensitive::CardNumber,
        Sensitive::UsSsn,
        Sensitive::Jwt,
        Sensitive::ApiKey,
        Sensitive::PrivateKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Sensitive::Email => "email",
            Sensitive::Phone => "phone",
            Sensitive::CardNumber => "card_number",
            Sensitive::UsSsn => "us_ssn",
            Sensitive::Jwt => "jwt",
            Sensitive::ApiKey => "api_key",
            Sensitive::PrivateKey => "private_key",
        }
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = (d - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b'+'
}

/// Bytes of a response body scanned: records sit at the front; a 64 KiB inspection prefix of
/// a bulk export shows its kinds in the first 32 KiB.
pub const SCAN_CAP: usize = 32 * 1024;

/// Kinds of sensitive data in a response: textual bodies only (JSON, text, XML, CSV, forms,
/// JavaScript, or no content type), the first [`SCAN_CAP`] bytes.
pub fn scan_response(m: &crate::http::Message) -> BTreeSet<Sensitive> {
    if m.body.is_empty() {
        return BTreeSet::new();
    }
    let textual = m
        .header("content-type")
        .is_none_or(|ct| json_at_12(ct) || textual_type(ct));
    if !textual {
        return BTreeSet::new();
    }
    scan(&m.body[..m.body.len().min(SCAN_CAP)])
}

/// `json` in any case at bytes 12 to 16, as in `application/json`: a textual type, found
/// without lowercasing or searching (a byte OR-ed with 0x20 is a small letter only when it
/// is that letter in one case or the other).
#[inline]
fn json_at_12(ct: &str) -> bool {
    ct.as_bytes()
        .get(12..16)
        .is_some_and(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) | 0x2020_2020 == u32::from_le_bytes(*b"json"))
}

/// Is a response of this content type text the scanners read?
fn textual_type(ct: &str) -> bool {
    let ct: std::borrow::Cow<'_, str> = if ct.bytes().any(|b| b.is_ascii_uppercase()) {
        ct.to_ascii_lowercase().into()
    } else {
        ct.into()
    };
    ["json", "text", "xml", "csv", "form", "javascript"]
        .iter()
        .any(|t| crate::util::contains_short(ct.as_bytes(), t.as_bytes()))
}

/// Bytes that can start something at a word start: digits and the first bytes of the
/// patterns below.
const fn starts() -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = true;
        c += 1;
    }
    let s = b"e-srgxA@";
    let mut i = 0;
    while i < s.len() {
        t[s[i] as usize] = true;
        i += 1;
    }
    t
}
static STARTS: [bool; 256] = starts();

/// Kinds of sensitive data in `body`.
///
/// Only a few places can start a finding: an `@`, a digit at a word start, and the first byte
/// of one of the fixed prefixes (`eyJ`, `-----BEGIN `, the API key prefixes). Where AVX2 is,
/// [`scan_pairs`] finds those 32 bytes at a time, whatever the body's length. Elsewhere a long
/// body's are found by fast searches (eight bytes at a time for `@` and digits, Aho-Corasick
/// for the prefixes) and a short body's by [`scan_short`]. Each visits them in order by the
/// same rules as the walk over every byte (the tests hold all to the same answers): a page or
/// a bulk export is mostly bytes where nothing can start.
pub fn scan(body: &[u8]) -> BTreeSet<Sensitive> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2 (detected just above).
        return unsafe { scan_pairs(body) };
    }
    if body.len() < 256 {
        scan_short(body)
    } else {
        scan_candidates(body)
    }
}

/// [`scan`] on a short body: [`scan_blocks`] where SSE2 is, else the walk over every byte.
fn scan_short(body: &[u8]) -> BTreeSet<Sensitive> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86-64 baseline: every CPU this build runs on has it.
    return unsafe { scan_blocks(body) };
    #[cfg(not(target_arch = "x86_64"))]
    return scan_every_byte(body);
}

/// [`scan`] on a short body: [`starts_here`] worked out for 16 bytes at a time with SSE2 (part
/// of every x86-64 CPU), the places it holds visited in order. A short API answer is mostly
/// names, quotes and small numbers: the walk over every byte paid a table lookup and a branch
/// per byte, this pays about two instructions per byte. Elsewhere the walk itself.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn scan_blocks(body: &[u8]) -> BTreeSet<Sensitive> {
    let mut found = BTreeSet::new();
    let mut next = 0; // positions before this were consumed by a finding's run
    let mut prev_alnum = 0u32; // the last byte of the previous block was a letter or digit
    let mut base = 0;
    while base < body.len() {
        let (m, alnum) = starts_and_alnum(&body[base..]);
        // a word start: the first byte of the body, or one after a byte that is no letter or digit
        let word_start = !((alnum << 1) | prev_alnum);
        let at = m.at;
        let mut cand = (m.starts & word_start) | at;
        prev_alnum = (alnum >> 15) & 1;
        while cand != 0 {
            let p = base + cand.trailing_zeros() as usize;
            cand &= cand - 1;
            if p >= next && may_start(body, p) {
                // (a digit here is at a word start: `visit` would take its digit branch, whose
                // answer for a short number is known without the call)
                next = match short_number(body, p) {
                    Some(e) => e,
                    None => visit(body, p, &mut found),
                };
            }
        }
        base += 16;
    }
    found
}

/// The bytes that start something, per class bit, for [`scan_pairs`]: bit 0 to 5 a fixed
/// prefix's first byte (the bit picks which second bytes it needs), bit 6 a digit, bit 7 `@`.
/// Each class is a set of high nibbles times a set of low nibbles, so the two 16-entry tables
/// below (one looked up by each nibble, AND-ed) give it exactly: no byte is put in a class it
/// is not in (held by `the_nibble_tables_give_the_classes_exactly`).
const FIRST: [&[u8]; 8] = [b"e", b"sr", b"g", b"x", b"A", b"-", b"0123456789", b"@"];
/// The second bytes each prefix class needs (`eyJ`, `sk_`/`rk_`, `gh`, `xo`, `AI`/`AK`,
/// `--`); bits 6 and 7 (a digit, an `@`) need none and are set for every byte.
const SECOND: [&[u8]; 6] = [b"y", b"k", b"h", b"o", b"IK", b"-"];

/// (low-nibble table, high-nibble table) of the classes in `sets`, `all` set for every nibble.
const fn nibble_tables(sets: &[&[u8]], all: u8) -> ([u8; 16], [u8; 16]) {
    let mut lo = [all; 16];
    let mut hi = [all; 16];
    let mut k = 0;
    while k < sets.len() {
        let mut j = 0;
        while j < sets[k].len() {
            let b = sets[k][j];
            lo[(b & 15) as usize] |= 1 << k;
            hi[(b >> 4) as usize] |= 1 << k;
            j += 1;
        }
        k += 1;
    }
    (lo, hi)
}
const FIRST_TABLES: ([u8; 16], [u8; 16]) = nibble_tables(&FIRST, 0);
const SECOND_TABLES: ([u8; 16], [u8; 16]) = nibble_tables(&SECOND, 0xc0);

/// [`scan`] with AVX2, 32 bytes at a time: each byte classed by two table lookups on its
/// nibbles as a prefix's first byte, a digit or an `@`, the next byte as that prefix's second
/// byte, so a block holds a candidate only where [`may_start`] and the byte's class do: a
/// digit or a prefix pair at a word start, or an `@`. Most blocks of a text hold none and
/// cost about 20 instructions (the search over every digit and `@` and Aho-Corasick over the
/// prefixes paid about five per byte); the rare candidates are visited in order with the same
/// checks as the walk over every byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_pairs(body: &[u8]) -> BTreeSet<Sensitive> {
    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16,
        _mm256_testz_si256,
    };
    let table = |t: &[u8; 16]| {
        let mut w = [0u8; 32];
        w[..16].copy_from_slice(t);
        w[16..].copy_from_slice(t); // (the shuffle looks up within each 16-byte lane)
        // SAFETY: `w` is 32 bytes; an unaligned load needs no alignment.
        unsafe { _mm256_loadu_si256(w.as_ptr().cast::<__m256i>()) }
    };
    let (first_lo, first_hi) = (table(&FIRST_TABLES.0), table(&FIRST_TABLES.1));
    let (second_lo, second_hi) = (table(&SECOND_TABLES.0), table(&SECOND_TABLES.1));
    let nib = _mm256_set1_epi8(0x0f);
    let class = |v: __m256i, lo: __m256i, hi: __m256i| {
        let l = _mm256_and_si256(v, nib);
        let h = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
        _mm256_and_si256(_mm256_shuffle_epi8(lo, l), _mm256_shuffle_epi8(hi, h))
    };
    // a block's classes: `v` its bytes, `v1` the bytes one on
    let classes =
        |v: __m256i, v1: __m256i| _mm256_and_si256(class(v, first_lo, first_hi), class(v1, second_lo, second_hi));
    let n = body.len();
    let mut found = BTreeSet::new();
    let mut next = 0; // positions before this were consumed by a finding's run
    // the candidates of the block at `base` (bytes `v`, classes `c`) visited in order (a
    // macro, not a closure: the compiler kept the closure a call, a tenth more per short body)
    macro_rules! take {
        ($base:expr, $v:expr, $c:expr) => {{
            let (base, v, c): (usize, __m256i, __m256i) = ($base, $v, $c);
            if _mm256_testz_si256(c, c) == 0 {
                let at = _mm256_movemask_epi8(c) as u32; // bit 7: an '@'
                let none = _mm256_cmpeq_epi8(_mm256_and_si256(c, _mm256_set1_epi8(0x7f)), _mm256_setzero_si256());
                let digit_or_pair = !(_mm256_movemask_epi8(none) as u32);
                // letters and digits (signed compares: bytes of 0x80 and up are negative, in no range)
                let digit = _mm256_and_si256(
                    _mm256_cmpgt_epi8(v, _mm256_set1_epi8(b'0' as i8 - 1)),
                    _mm256_cmpgt_epi8(_mm256_set1_epi8(b'9' as i8 + 1), v),
                );
                let folded = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
                let letter = _mm256_and_si256(
                    _mm256_cmpgt_epi8(folded, _mm256_set1_epi8(b'a' as i8 - 1)),
                    _mm256_cmpgt_epi8(_mm256_set1_epi8(b'z' as i8 + 1), folded),
                );
                let alnum = _mm256_movemask_epi8(_mm256_or_si256(digit, letter)) as u32;
                let prev_alnum = base > 0 && body[base - 1].is_ascii_alphanumeric();
                let word_start = !((alnum << 1) | prev_alnum as u32);
                let mut cand = (digit_or_pair & word_start) | at;
                if n - base < 32 {
                    cand &= (1u32 << (n - base)) - 1; // (the padding holds none: kept to the body all the same)
                }
                while cand != 0 {
                    let p = base + cand.trailing_zeros() as usize;
                    cand &= cand - 1;
                    if p >= next && starts_here(body, p) && may_start(body, p) {
                        // (as in `scan_blocks`: a digit here is at a word start)
                        next = match short_number(body, p) {
                            Some(e) => e,
                            None => visit(body, p, &mut found),
                        }
                    }
                }
            }
        }};
    }
    // two blocks at a time while they and the byte after them are in the body: most pairs
    // hold no candidate, one test says so
    let mut base = 0;
    while let Some(b) = body.get(base..base + 65) {
        // SAFETY: the four 32-byte loads read bytes 0..65 of `b`, all in it.
        let (v0, v0n, v1, v1n) = unsafe {
            let p = b.as_ptr();
            (
                _mm256_loadu_si256(p.cast::<__m256i>()),
                _mm256_loadu_si256(p.add(1).cast::<__m256i>()),
                _mm256_loadu_si256(p.add(32).cast::<__m256i>()),
                _mm256_loadu_si256(p.add(33).cast::<__m256i>()),
            )
        };
        let (c0, c1) = (classes(v0, v0n), classes(v1, v1n));
        let any = _mm256_or_si256(c0, c1);
        if _mm256_testz_si256(any, any) == 0 {
            take!(base, v0, c0);
            take!(base + 32, v1, c1);
        }
        base += 64;
    }
    while base < n {
        // the block and the block one byte on; past the body's end zero bytes, in no class
        // (and a zero second byte is none a prefix needs, as `may_start` reads the end)
        let (v, v1) = match body.get(base..base + 33) {
            // SAFETY: bytes base..base + 33 are in `body`: both 32-byte loads read inside it.
            Some(b) => unsafe {
                (
                    _mm256_loadu_si256(b.as_ptr().cast::<__m256i>()),
                    _mm256_loadu_si256(b.as_ptr().add(1).cast::<__m256i>()),
                )
            },
            None => {
                let mut pad = [0u8; 64];
                pad[..n - base].copy_from_slice(&body[base..]);
                // SAFETY: both loads read inside the 64-byte `pad`.
                unsafe {
                    (
                        _mm256_loadu_si256(pad.as_ptr().cast::<__m256i>()),
                        _mm256_loadu_si256(pad.as_ptr().add(1).cast::<__m256i>()),
                    )
                }
            }
        };
        take!(base, v, classes(v, v1));
        base += 32;
    }
    found
}

/// Could [`visit`] find something at `i` (a place [`starts_here`] holds)? False only for
/// a letter or `-` whose next byte no fixed prefix starting with it has (`email`, `status`,
/// `example`: most of a JSON answer's word starts), where `visit` finds nothing and goes on
/// at `i + 1`: skipping it changes nothing (every later place is past `i`). Held to `visit` by
/// `places_passed_over_are_where_visit_finds_nothing`.
#[inline(always)]
fn may_start(body: &[u8], i: usize) -> bool {
    let second = body.get(i + 1).copied().unwrap_or(0);
    match body[i] {
        b'e' => second == b'y',
        b's' | b'r' => second == b'k',
        b'g' => second == b'h',
        b'x' => second == b'o',
        b'A' => second == b'I' || second == b'K',
        b'-' => second == b'-',
        _ => true,
    }
}

/// Per byte of a 16-byte block (bit i for byte i): in [`STARTS`] other than `@`, an `@`.
#[cfg(target_arch = "x86_64")]
struct BlockMasks {
    starts: u32,
    at: u32,
}

/// [`BlockMasks`] for the first 16 bytes of `b` (fewer: padded with zero bytes, which are
/// neither in [`STARTS`] nor letters or digits), and the letters-or-digits mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn starts_and_alnum(b: &[u8]) -> (BlockMasks, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8,
    };
    // (one unaligned load for a whole block: the bytes put together one by one cost more
    // than the compares)
    let v = match b.get(..16) {
        // SAFETY: the 16 bytes are in `b`; an unaligned load needs no alignment.
        Some(block) => unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) },
        None => {
            let mut w = [0u8; 16];
            w[..b.len()].copy_from_slice(b);
            // SAFETY: as above, from the padded copy.
            unsafe { _mm_loadu_si128(w.as_ptr().cast::<__m128i>()) }
        }
    };
    let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
    // signed compares: bytes of 0x80 and up are negative, so never in an ASCII range
    let digit = _mm_and_si128(
        _mm_cmpgt_epi8(v, _mm_set1_epi8(b'0' as i8 - 1)),
        _mm_cmplt_epi8(v, _mm_set1_epi8(b'9' as i8 + 1)),
    );
    let folded = _mm_or_si128(v, _mm_set1_epi8(0x20)); // a capital and its small letter alike
    let letter = _mm_and_si128(
        _mm_cmpgt_epi8(folded, _mm_set1_epi8(b'a' as i8 - 1)),
        _mm_cmplt_epi8(folded, _mm_set1_epi8(b'z' as i8 + 1)),
    );
    let firsts = _mm_or_si128(
        _mm_or_si128(_mm_or_si128(eq(b'e'), eq(b'-')), _mm_or_si128(eq(b's'), eq(b'r'))),
        _mm_or_si128(_mm_or_si128(eq(b'g'), eq(b'x')), eq(b'A')),
    );
    let mask = |x| _mm_movemask_epi8(x) as u32;
    (
        BlockMasks {
            starts: mask(_mm_or_si128(digit, firsts)),
            at: mask(eq(b'@')),
        },
        mask(_mm_or_si128(digit, letter)),
    )
}

/// [`scan`] by a walk over every byte: the reference the faster scans are tested against,
/// and the short-body scan where SSE2 is not.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn scan_every_byte(body: &[u8]) -> BTreeSet<Sensitive> {
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < body.len() {
        i = if starts_here(body, i) {
            visit(body, i, &mut found)
        } else {
            i + 1
        };
    }
    found
}

/// [`scan`] visiting only the places found by the searches.
fn scan_candidates(body: &[u8]) -> BTreeSet<Sensitive> {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let mut found = BTreeSet::new();
    let mut prefixes = PrefixStarts { body, from: 0 };
    let mut pre = prefixes.next();
    let mut next = 0; // positions before this were consumed by a finding's run
    let mut base = 0;
    while base < body.len() {
        let w = match body.get(base..base + 8) {
            Some(c) => u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            None => {
                // the tail padded with zero bytes (neither a digit nor an '@')
                let mut w8 = [0u8; 8];
                w8[..body.len() - base].copy_from_slice(&body[base..]);
                u64::from_le_bytes(w8)
            }
        };
        // per byte, the high bit: an ASCII digit, or an '@' (exact: no carry crosses a byte)
        let x = w & !H;
        let digit = (x + (0x80 - 0x30) * L) & !(x + (0x80 - 0x3a) * L) & !w & H;
        let v = w ^ (0x40 * L);
        let at = !(((v & !H) + !H) | v) & H;
        let mut m = digit | at;
        while m != 0 {
            let p = base + (m.trailing_zeros() / 8) as usize;
            m &= m - 1;
            while let Some(q) = pre.filter(|q| *q < p) {
                if q >= next && starts_here(body, q) {
                    next = visit(body, q, &mut found);
                }
                pre = prefixes.next();
            }
            if p >= next && starts_here(body, p) {
                next = visit(body, p, &mut found);
            }
        }
        base += 8;
    }
    while let Some(q) = pre {
        if q >= next && starts_here(body, q) {
            next = visit(body, q, &mut found);
        }
        pre = prefixes.next();
    }
    found
}

/// The fixed prefixes that start a finding at a word start.
const PREFIXES: [&str; 8] = [
    "eyJ",
    "-----BEGIN ",
    "sk_live_",
    "rk_live_",
    "ghp_",
    "xoxb-",
    "AIza",
    "AKIA",
];

/// Every position where one of [`PREFIXES`] starts, in order (a prefix starting inside
/// another's match included: each search resumes one byte after the last start).
struct PrefixStarts<'a> {
    body: &'a [u8],
    from: usize,
}

impl Iterator for PrefixStarts<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        static AC: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> = std::sync::LazyLock::new(|| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(PREFIXES)
                .ok()
        });
        if self.from >= self.body.len() {
            return None;
        }
        let start = match AC.as_ref() {
            Some(ac) => ac.find(aho_corasick::Input::new(self.body).range(self.from..))?.start(),
            // (cannot happen: the patterns are fixed) every position, as the byte walk does
            None => self.from,
        };
        self.from = start + 1;
        Some(start)
    }
}

/// Could something start at `i`? Inside a word only an '@' can; at a word start, only the
/// [`STARTS`] bytes.
fn starts_here(body: &[u8], i: usize) -> bool {
    let c = body[i];
    STARTS[c as usize] && (c == b'@' || i == 0 || !body[i - 1].is_ascii_alphanumeric())
}

/// What starts at `i` (where [`starts_here`]), added to `found`; the position to go on from.
fn visit(body: &[u8], i: usize, found: &mut BTreeSet<Sensitive>) -> usize {
    let n = body.len();
    let c = body[i];
    if c == b'@' && i > 0 {
        // e-mail: word chars before, a dotted domain after
        let mut s = i;
        while s > 0 && is_word(body[s - 1]) {
            s -= 1;
        }
        let mut e = i + 1;
        while e < n && (body[e].is_ascii_alphanumeric() || body[e] == b'-' || body[e] == b'.') {
            e += 1;
        }
        let domain = &body[i + 1..e];
        if s < i && domain.contains(&b'.') && domain.last().is_some_and(|b| b.is_ascii_alphabetic()) {
            found.insert(Sensitive::Email);
        }
    } else if c.is_ascii_digit() && (i == 0 || !body[i - 1].is_ascii_alphanumeric()) {
        if let Some(e) = short_number(body, i) {
            return e;
        }
        return digit_run(body, i, found);
    } else if body[i..].starts_with(b"eyJ") && (i == 0 || !is_word(body[i - 1])) {
        let mut e = i;
        let mut dots = 0;
        while e < n && (body[e].is_ascii_alphanumeric() || body[e] == b'_' || body[e] == b'-' || body[e] == b'.') {
            dots += (body[e] == b'.') as u32;
            e += 1;
        }
        if dots == 2 && e - i > 30 {
            found.insert(Sensitive::Jwt);
        }
        return e;
    } else if c == b'-' && body[i..].starts_with(b"-----BEGIN ") {
        let line_end = body[i..].iter().position(|b| *b == b'\n').map_or(n, |p| i + p);
        if memchr::memmem::find(&body[i..line_end], b"PRIVATE KEY-----").is_some() {
            found.insert(Sensitive::PrivateKey);
        }
    } else if i == 0 || !body[i - 1].is_ascii_alphanumeric() {
        let rest = &body[i..];
        let key_like = |prefix: &[u8], min: usize| {
            rest.starts_with(prefix)
                && rest[prefix.len()..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count()
                    >= min
        };
        // the prefixes start with different bytes: only the one `c` starts can match
        let key = match c {
            b's' => key_like(b"sk_live_", 16),
            b'r' => key_like(b"rk_live_", 16),
            b'g' => key_like(b"ghp_", 30),
            b'x' => key_like(b"xoxb-", 20),
            b'A' => {
                key_like(b"AIza", 30)
                    || (rest.starts_with(b"AKIA")
                        && rest.len() >= 20
                        && rest[4..20].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
            }
            _ => false,
        };
        if key {
            found.insert(Sensitive::ApiKey);
        }
    }
    i + 1
}

/// [`visit`] at a digit at a word start: a run of digits with optional single spaces or
/// dashes, checked as a card number, a US SSN and a phone number; the position to go on from.
fn digit_run(body: &[u8], i: usize, found: &mut BTreeSet<Sensitive>) -> usize {
    let n = body.len();
    // a run of digits with optional single spaces or dashes
    let mut buf = [0u8; 20];
    let mut nd = 0;
    let mut e = i;
    while e < n && nd <= 19 {
        if body[e].is_ascii_digit() {
            buf[nd] = body[e];
            nd += 1;
        } else if (body[e] == b' ' || body[e] == b'-') && e + 1 < n && body[e + 1].is_ascii_digit() {
        } else {
            break;
        }
        e += 1;
    }
    let digits = &buf[..nd];
    let run = &body[i..e];
    let bounded = e >= n || !body[e].is_ascii_alphanumeric();
    if bounded && (13..=19).contains(&digits.len()) && luhn(digits) && digits.iter().any(|d| *d != digits[0]) {
        found.insert(Sensitive::CardNumber);
    }
    if bounded && run.len() == 11 && run[3] == b'-' && run[6] == b'-' && digits.len() == 9 {
        let area = &digits[..3];
        if area != b"000" && area != b"666" && area[0] != b'9' && &digits[3..5] != b"00" && &digits[5..] != b"0000" {
            found.insert(Sensitive::UsSsn);
        }
    }
    if i > 0 && body[i - 1] == b'+' && (10..=15).contains(&digits.len()) && bounded {
        found.insert(Sensitive::Phone);
    }
    e.max(i + 1)
}

/// Where [`digit_run`] at `i` (a digit at a word start) would go on, when the run is fewer than
/// 9 digits that no separator continues (`"id":97118,`): too short for any kind it looks for
/// (a card has 13 digits or more, an SSN 9, a phone number 10), so it finds nothing. Most
/// numbers in an API answer are such; this settles them without copying their digits.
#[inline(always)]
fn short_number(body: &[u8], i: usize) -> Option<usize> {
    let n = body.len();
    let mut e = i;
    while e < n && body[e].is_ascii_digit() {
        e += 1;
        if e - i >= 9 {
            return None;
        }
    }
    if e == i || (e + 1 < n && (body[e] == b' ' || body[e] == b'-') && body[e + 1].is_ascii_digit()) {
        return None;
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next of a xorshift sequence in `0..n` (generated test texts, the same every run).
    fn xorshift(seed: &mut u64, n: usize) -> usize {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    }

    fn kinds(s: &str) -> Vec<&'static str> {
        scan(s.as_bytes()).into_iter().map(|k| k.as_str()).collect()
    }

    #[test]
    fn known_pii_is_found() {
        assert_eq!(kinds(r#"{"email":"alice@example.com"}"#), vec!["email"]);
        assert_eq!(kinds(r#"{"card":"4111 1111 1111 1111"}"#), vec!["card_number"]);
        assert_eq!(kinds(r#"{"card":"4242424242424242"}"#), vec!["card_number"]);
        assert_eq!(kinds(r#"{"ssn":"123-45-6789"}"#), vec!["us_ssn"]);
        assert_eq!(kinds(r#"{"phone":"+14155550123"}"#), vec!["phone"]);
        assert_eq!(
            kinds(r#"{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"}"#),
            vec!["jwt"]
        );
        assert_eq!(kinds("key: AKIAIOSFODNN7EXAMPLE"), vec!["api_key"]);
        // each key prefix (each starts with a different byte, which picks the one checked)
        for k in [
            "sk_live_abcdefghij012345",
            "rk_live_abcdefghij012345",
            "ghp_abcdefghij0123456789abcdefghij",
            "xoxb-abcdefghij0123456789",
            "AIzaabcdefghij0123456789abcdefghij",
        ] {
            assert_eq!(kinds(&format!(r#"{{"k":"{k}"}}"#)), vec!["api_key"], "{k}");
            // one byte short of the length each needs
            assert!(kinds(&format!(r#"{{"k":"{}"}}"#, &k[..k.len() - 1])).is_empty(), "{k}");
        }
        assert_eq!(kinds("-----BEGIN RSA PRIVATE KEY-----\nMII"), vec!["private_key"]);
    }

    #[test]
    fn lookalikes_are_not_flagged() {
        // 16 digits failing Luhn, an order number, a date, a version, a public key
        for s in [
            r#"{"card":"4111111111111112"}"#,
            r#"{"order":"100000000000023"}"#,
            r#"{"id":1234567890123456789}"#,
            r#"{"date":"2026-11-29","v":"1.2.3"}"#,
            "-----BEGIN PUBLIC KEY-----",
            r#"{"ssn":"000-12-3456"}"#,
            r#"{"phone":"4155550123"}"#,
            r#"{"handle":"@alice"}"#,
        ] {
            assert!(kinds(s).is_empty(), "{s}: {:?}", kinds(s));
        }
    }

    #[test]
    fn scan_finds_what_a_walk_over_every_byte_finds() {
        // Texts built from the pieces the scanners look for, overlapping and cut at random,
        // with non-ASCII bytes: the candidate search must visit every place the walk acts on.
        let pieces: [&[u8]; 34] = [
            b"eyJ",
            b"eyJhbGciOiJIUzI1NiJ9",
            b".",
            b"-----BEGIN ",
            b"PRIVATE KEY-----",
            b"\n",
            b"sk_live_",
            b"rk_live_",
            b"ghp_",
            b"xoxb-",
            b"AIza",
            b"AKIA",
            b"IOSFODNN7EXAMPLE",
            b"abcdefghij0123456789_ABCDEFGHIJ",
            b"@",
            b"example.com",
            b"user",
            b"+",
            b"14155550123",
            b"4111 1111 1111 1111",
            b"4242424242424242",
            b"123-45-6789",
            b"0",
            b"9",
            b" ",
            b"-",
            b"_",
            b"\"",
            b":",
            b"e",
            b"A",
            b"\xc3\xa9",
            b"\xff\x80\xb0\xc0",
            b"x",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: usize| xorshift(&mut seed, n);
        let mut found_some = 0;
        for round in 0..20_000 {
            let mut t = Vec::new();
            for _ in 0..rnd(if round % 4 == 0 { 200 } else { 24 }) {
                let p = pieces[rnd(pieces.len())];
                // sometimes only part of a piece
                let cut = if rnd(4) == 0 { rnd(p.len() + 1) } else { p.len() };
                t.extend_from_slice(&p[..cut]);
            }
            let want = scan_every_byte(&t);
            found_some += !want.is_empty() as usize;
            assert_eq!(pairs(&t).unwrap_or_else(|| want.clone()), want, "round {round}");
            assert_eq!(
                scan_candidates(&t),
                want,
                "round {round}: {:?}",
                String::from_utf8_lossy(&t)
            );
        }
        // the texts did exercise the finders
        assert!(found_some > 3_000, "{found_some}");
        for t in [
            &b""[..],
            b"@",
            b"1",
            b"eyJ",
            b"-----BEGIN ",
            b"a@b.co",
            b"12345678@x.io",
        ] {
            assert_eq!(scan_candidates(t), scan_every_byte(t));
            assert_eq!(scan_short(t), scan_every_byte(t));
            assert_eq!(pairs(t).unwrap_or_else(|| scan_every_byte(t)), scan_every_byte(t));
        }
    }

    #[test]
    fn the_block_scan_finds_what_the_walk_finds_at_every_length() {
        // Texts from the same pieces, every length up to 300 (block ends fall everywhere),
        // with findings straddling the 16-byte blocks.
        let pieces: [&[u8]; 16] = [
            b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlX2xvbmdlcg",
            b"sk_live_abcdefghij0123456789",
            b"ghp_abcdefghij0123456789abcdefghij01",
            b"AKIAIOSFODNN7EXAMPLE",
            b"AIzaabcdefghij0123456789abcdefghij",
            b"xoxb-abcdefghij0123456789",
            b"user@example.com",
            b"+14155550123",
            b"4111 1111 1111 1111",
            b"123-45-6789",
            b"-----BEGIN RSA PRIVATE KEY-----\n",
            b" ",
            b"\"id\":",
            b"x9",
            b"\xc3\xa9\xff",
            b"_",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| xorshift(&mut seed, n);
        let mut found_some = 0;
        for round in 0..6_000 {
            let mut t = Vec::new();
            while t.len() < 300 {
                t.extend_from_slice(pieces[rnd(pieces.len())]);
            }
            let len = round % 301;
            let t = &t[rnd(8).min(len)..len];
            let want = scan_every_byte(t);
            found_some += !want.is_empty() as usize;
            assert_eq!(scan_short(t), want, "round {round}: {:?}", String::from_utf8_lossy(t));
            assert_eq!(pairs(t).unwrap_or_else(|| want.clone()), want, "round {round}");
        }
        assert!(found_some > 4_000, "{found_some}");
    }

    #[test]
    fn the_block_masks_hold_where_the_walk_would_start() {
        // every byte after every byte: a candidate exactly where `starts_here` says so
        for prev in 0..=255u8 {
            for c in 0..=255u8 {
                let body = [prev, c];
                let got = scan_blocks_candidates(&body);
                let want = (0..2).filter(|&i| starts_here(&body, i)).collect::<Vec<_>>();
                assert_eq!(got, want, "{prev:#04x} {c:#04x}");
            }
        }
    }

    /// Wherever [`may_start`] is false, `visit` finds nothing and goes on one byte later: every
    /// pair of bytes after every byte, and the short texts of the scan tests.
    #[test]
    fn places_passed_over_are_where_visit_finds_nothing() {
        let mut passed = 0;
        for prev in [None, Some(b' '), Some(b'"'), Some(b'a'), Some(b'@')] {
            for c in 0..=255u8 {
                for d in 0..=255u8 {
                    let mut body: Vec<u8> = prev.into_iter().collect();
                    let i = body.len();
                    body.extend([c, d]);
                    for tail in [
                        &b""[..],
                        b"J.x",
                        b"_live_abcdefghij012345",
                        b"p_abcdefghij0123456789abcdefghij01",
                    ] {
                        let mut b = body.clone();
                        b.extend_from_slice(tail);
                        if starts_here(&b, i) && !may_start(&b, i) {
                            passed += 1;
                            let mut found = BTreeSet::new();
                            assert_eq!(visit(&b, i, &mut found), i + 1, "{:?}", String::from_utf8_lossy(&b));
                            assert!(found.is_empty(), "{:?}", String::from_utf8_lossy(&b));
                        }
                    }
                }
                // the body's last byte
                let mut b: Vec<u8> = prev.into_iter().collect();
                let i = b.len();
                b.push(c);
                if starts_here(&b, i) && !may_start(&b, i) {
                    let mut found = BTreeSet::new();
                    assert_eq!(visit(&b, i, &mut found), i + 1);
                    assert!(found.is_empty());
                }
            }
        }
        assert!(passed > 10_000, "{passed}");
    }

    /// [`scan`]'s AVX2 answer for `body`, or `None` on a CPU without AVX2 (the tests that
    /// hold it to the walk then check nothing: they say so on stderr).
    fn pairs(body: &[u8]) -> Option<BTreeSet<Sensitive>> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: this CPU has AVX2.
            return Some(unsafe { scan_pairs(body) });
        }
        eprintln!("no AVX2 here: scan_pairs not tested");
        None
    }

    /// Every byte's class by the nibble tables is exactly the sets they were built from, for
    /// the first and the second byte alike (a byte outside a class never gets its bit).
    #[test]
    fn the_nibble_tables_give_the_classes_exactly() {
        for b in 0..=255u8 {
            let look = |t: &([u8; 16], [u8; 16])| t.0[(b & 15) as usize] & t.1[(b >> 4) as usize];
            let want_first = (0..8).fold(0u8, |m, k| m | ((FIRST[k].contains(&b) as u8) << k));
            assert_eq!(look(&FIRST_TABLES), want_first, "{b:#04x}");
            let want_second = (0..6).fold(0xc0u8, |m, k| m | ((SECOND[k].contains(&b) as u8) << k));
            assert_eq!(look(&SECOND_TABLES), want_second, "{b:#04x}");
        }
        // the pairs are the prefixes' first two bytes, and every first byte `may_start` reads
        for p in PREFIXES {
            let (a, b) = (p.as_bytes()[0], p.as_bytes()[1]);
            let k = (0..6).find(|&k| FIRST[k].contains(&a)).expect("a first byte");
            assert!(SECOND[k].contains(&b), "{p}");
        }
    }

    /// The AVX2 scan answers as the walk over every byte on long texts of findings, lookalikes
    /// and noise; with each finding put at every offset across two 32-byte blocks, into a
    /// background of words, numbers or random bytes; on random bytes and on texts of nothing
    /// but the bytes a finding is made of.
    #[test]
    fn the_pair_scan_finds_what_the_walk_finds() {
        let Some(_) = pairs(b"") else { return };
        let check = |t: &[u8], what: &str| {
            assert_eq!(
                pairs(t),
                Some(scan_every_byte(t)),
                "{what}: {:?}",
                String::from_utf8_lossy(t)
            );
        };
        let findings: [&[u8]; 26] = [
            b"alice@example.com",
            b"a@b.co",
            b"@",
            b"4111 1111 1111 1111",
            b"4111111111111112",
            b"4242424242424242",
            b"4242-4242-4242-4242",
            b"123-45-6789",
            b"000-12-3456",
            b"+14155550123",
            b"+1415555012",
            b"4155550123",
            b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
            b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9",
            b"sk_live_abcdefghij012345",
            b"rk_live_abcdefghij01234",
            b"ghp_abcdefghij0123456789abcdefghij",
            b"xoxb-abcdefghij0123456789",
            b"AIzaabcdefghij0123456789abcdefghij",
            b"AKIAIOSFODNN7EXAMPLE",
            b"AKIAIOSFODNN7EXAMPL",
            b"-----BEGIN RSA PRIVATE KEY-----\nMII",
            b"-----BEGIN PUBLIC KEY-----",
            b"12345678",
            b"123456789",
            b"\xc3\xa9@x.io",
        ];
        let mut seed = 0x5851_f42d_4c95_7f2du64;
        let mut rnd = |n: usize| xorshift(&mut seed, n);
        let words: Vec<u8> = (0..400)
            .flat_map(|i| {
                let w: &[u8] = [&b"alpha "[..], b"\"key\":", b"gamma ", b"response,", b"sky ", b"ghost "][i % 6];
                w.iter().copied()
            })
            .collect();
        let numbers: Vec<u8> = (0..300)
            .flat_map(|i| format!("{{\"id\":{i},\"n\":-{}}}", i * 7).into_bytes())
            .collect();
        let random: Vec<u8> = (0..1200).map(|_| rnd(256) as u8).collect();
        for (bi, background) in [&words, &numbers, &random].into_iter().enumerate() {
            for f in findings {
                for lead in [&b""[..], b" ", b"x", b"\"", b"1", b"+", b"-"] {
                    for at in 200..300 {
                        let mut t = background[..at].to_vec();
                        t.extend_from_slice(lead);
                        t.extend_from_slice(f);
                        t.extend_from_slice(&background[at..at + 40]);
                        check(&t, &format!("background {bi} at {at}"));
                        // the finding at the very end of the body
                        let end = [&background[..at], lead, f].concat();
                        check(&end, &format!("background {bi} ending at {at}"));
                    }
                }
            }
        }
        // noise made of the bytes findings are made of, and random bytes, at every length
        let alphabet = b"eysrkghxoAIKza_-@.0123456789+ \n\"BEGIN";
        for round in 0..4000 {
            let len = round % 960;
            let t: Vec<u8> = if round % 3 == 0 {
                (0..len).map(|_| rnd(256) as u8).collect()
            } else {
                (0..len).map(|_| alphabet[rnd(alphabet.len())]).collect()
            };
            check(&t, &format!("noise round {round}"));
        }
        // texts of findings and pieces as the walk test builds them, long
        for round in 0..3000 {
            let mut t = Vec::new();
            while t.len() < 256 + round % 1000 {
                let f = findings[rnd(findings.len())];
                let cut = if rnd(4) == 0 { rnd(f.len() + 1) } else { f.len() };
                t.extend_from_slice(&f[..cut]);
                t.extend_from_slice(&words[..rnd(20)]);
            }
            check(&t, &format!("findings round {round}"));
        }
    }

    /// The positions [`scan_blocks`] would visit (before any finding's run skips some).
    #[cfg(target_arch = "x86_64")]
    fn scan_blocks_candidates(body: &[u8]) -> Vec<usize> {
        // SAFETY: SSE2 is part of the x86-64 baseline.
        let (m, alnum) = unsafe { starts_and_alnum(body) };
        let cand = (m.starts & !(alnum << 1)) | m.at;
        (0..body.len()).filter(|i| cand >> i & 1 == 1).collect()
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn scan_blocks_candidates(body: &[u8]) -> Vec<usize> {
        (0..body.len()).filter(|&i| starts_here(body, i)).collect()
    }

    /// A short number settled without the digit walk is one the walk finds nothing in and
    /// leaves at the same place: every run of digits, spaces and dashes up to 21 bytes, at the
    /// body's start, after a `+`, and followed by every kind of byte.
    #[test]
    fn short_numbers_are_what_the_digit_walk_finds_nothing_in() {
        let alpha = [b'1', b'4', b'0', b' ', b'-'];
        let mut settled = 0;
        for len in 1..=21u32 {
            // every pattern up to 7 bytes; longer ones sampled
            let total = (alpha.len() as u64).pow(len.min(7));
            let mut seed = len as u64 * 77 + 1;
            for code in 0..total.min(20_000) {
                let mut run = Vec::new();
                let mut c = if len <= 7 {
                    code
                } else {
                    xorshift(&mut seed, usize::MAX) as u64
                };
                for _ in 0..len {
                    run.push(alpha[(c % alpha.len() as u64) as usize]);
                    c /= alpha.len() as u64;
                }
                run[0] = b'4';
                for lead in [&b""[..], b"+", b"\"", b"+1-"] {
                    for tail in [&b""[..], b",", b"a", b"-", b" ", b"-5", b" 5", b"\xc3"] {
                        let body = [lead, &run[..], tail].concat();
                        let i = lead.len();
                        let mut walk = BTreeSet::new();
                        let want = digit_run(&body, i, &mut walk);
                        if let Some(e) = short_number(&body, i) {
                            settled += 1;
                            assert_eq!(
                                (e, walk.is_empty()),
                                (want, true),
                                "{:?}",
                                String::from_utf8_lossy(&body)
                            );
                        }
                        let mut via_visit = BTreeSet::new();
                        assert_eq!(visit(&body, i, &mut via_visit), want);
                        assert_eq!(via_visit, walk);
                    }
                }
            }
        }
        assert!(settled > 10_000, "{settled}");
        assert_eq!(short_number(b"12345678,", 0), Some(8));
        assert_eq!(short_number(b"123456789,", 0), None);
        assert_eq!(short_number(b"12 3", 0), None);
        assert_eq!(short_number(b"12 a", 0), Some(2));
        assert_eq!(short_number(b"a1", 0), None);
    }

    /// `json` found at bytes 12 to 16 in any case is a type the full test calls textual, for
    /// every byte value in each of those places and around them.
    #[test]
    fn json_at_byte_12_is_a_textual_type() {
        let mut hits = 0;
        for base in [
            "application/json",
            "APPLICATION/JSON; charset=utf-8",
            "applicationXjsoN",
            "image/png0000000",
        ] {
            for at in 0..base.len() {
                for c in 0..=127u8 {
                    let mut b = base.as_bytes().to_vec();
                    b[at] = c;
                    let ct = String::from_utf8(b).expect("ascii");
                    if json_at_12(&ct) {
                        hits += 1;
                        assert!(textual_type(&ct), "{ct:?}");
                    }
                }
            }
        }
        assert!(hits > 1000, "{hits}");
        assert!(!json_at_12("application/jso"));
        assert!(!json_at_12("application/xml"));
        assert!(json_at_12("application/JSON"));
    }
}
