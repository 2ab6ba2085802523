//! Small formatting helpers at the bottom of the module graph: every layer may use them, they
//! use nothing of apitap's. Written for the hot path (a few per `http` event): no `format!`
//! machinery, no allocation when writing into a buffer.

use std::net::IpAddr;

/// Nanoseconds since the Unix epoch (the capture's clock).
pub type Ts = u64;

/// EVE timestamp: `2026-11-29T05:50:07.123456+0000` (UTC, microseconds).
pub fn fmt_ts(ns: Ts) -> String {
    let b = ts_bytes(ns);
    // the buffer holds ASCII digits and punctuation only
    String::from_utf8(b.to_vec()).unwrap_or_default()
}

thread_local! {
    /// The last timestamp [`push_ts`] wrote on this thread, in microseconds (all it shows),
    /// and its text. Starts as the epoch, written right, so no value is mistaken for a
    /// cached one.
    static LAST_TS: std::cell::Cell<(u64, [u8; 31])> =
        const { std::cell::Cell::new((0, *b"1970-01-01T00:00:00.000000+0000")) };
}

/// [`fmt_ts`] appended to a buffer.
#[inline(always)]
pub fn push_ts(out: &mut Vec<u8>, ns: Ts) {
    // An event's five timestamps, and the next events', are mostly the same microsecond
    // (copied as is) or the same second (only the microseconds rewritten).
    let (last, b) = LAST_TS.get();
    if last == ns / 1000 {
        out.extend_from_slice(&b);
    } else {
        out.extend_from_slice(&new_ts(ns, last, b));
    }
}

/// The text of a microsecond other than the last one written (`last`, whose text is `b`),
/// kept as the last one.
#[inline(never)]
fn new_ts(ns: Ts, last: u64, mut b: [u8; 31]) -> [u8; 31] {
    let us = ns / 1000;
    if last / 1_000_000 == us / 1_000_000 {
        put_micros(&mut b, ns);
    } else {
        b = ts_bytes(ns);
    }
    LAST_TS.set((us, b));
    b
}

/// Two ASCII digits per value below 100 (`itoa`'s table).
const DIGITS2: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The microseconds of `ns` into their six places of a [`ts_bytes`] buffer, two digits a step.
#[inline]
fn put_micros(b: &mut [u8; 31], ns: Ts) {
    let micros = ((ns % 1_000_000_000) / 1000) as usize;
    for (k, v) in [(20, micros / 10_000), (22, micros / 100 % 100), (24, micros % 100)] {
        let v = v % 100;
        b[k] = DIGITS2[2 * v];
        b[k + 1] = DIGITS2[2 * v + 1];
    }
}

fn ts_bytes(ns: Ts) -> [u8; 31] {
    let secs = (ns / 1_000_000_000) as i64;
    let micros = ((ns % 1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut b = *b"0000-00-00T00:00:00.000000+0000";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for k in (at..at + width).rev() {
            b[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u32);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 6, micros);
    b
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An address as text, as `Display` writes it (IPv4 without the formatter: ~15x cheaper).
pub fn ip_string(ip: IpAddr) -> String {
    let mut v = Vec::with_capacity(15);
    push_ip(&mut v, ip);
    String::from_utf8(v).unwrap_or_default()
}

/// An octet's decimal digits followed by a dot, left-aligned in four bytes, and how many of
/// those bytes are digits and dot (`10` -> `b"10.\0"`, 3).
const OCTETS: [([u8; 4], u8); 256] = {
    let mut t = [([0u8; 4], 0u8); 256];
    let mut o = 0;
    while o < 256 {
        let d = [
            b'0' + (o / 100) as u8,
            b'0' + (o / 10 % 10) as u8,
            b'0' + (o % 10) as u8,
        ];
        t[o] = if o >= 100 {
            ([d[0], d[1], d[2], b'.'], 4)
        } else if o >= 10 {
            ([d[1], d[2], b'.', 0], 3)
        } else {
            ([d[2], b'.', 0, 0], 2)
        };
        o += 1;
    }
    t
};

/// [`ip_string`] appended to a buffer.
#[inline(always)]
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            // each octet's four bytes from a table into a stack buffer, one copy out (a push
            // per digit cost five times more)
            // (20 bytes and `n & 15`: no write can fall outside, so none is checked)
            let mut buf = [0u8; 20];
            let mut n = 0;
            for o in a.octets() {
                let (d, len) = OCTETS[o as usize];
                buf[n & 15..(n & 15) + 4].copy_from_slice(&d);
                n += len as usize;
            }
            // (n is 8..=16: the last octet's dot left off)
            out.extend_from_slice(&buf[..n - 1]);
        }
        // rare on the hot path; the std formatter does RFC 5952 compression
        IpAddr::V6(_) => {
            use std::io::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// A decimal number appended to a buffer (`itoa`: two digits per step from a table, about
/// twice as fast as a digit-by-digit loop; eight numbers per `http` line).
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Does any byte of this word need escaping? (SWAR: a byte below 0x20, `"` or `\\`.)
#[inline(always)]
fn word_needs_escape(w: u64) -> bool {
    escape_bits(w) != 0
}

/// The high bit set in the bytes of `w` that are below 0x20, `"` or `\\` (and maybe in
/// bytes above such a byte, from the borrow: the answer "none" is exact, the places are not).
#[inline(always)]
fn escape_bits(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // bytes < 0x20 (bytes >= 0x80 set the high bit of w itself and are masked out by !w)
    let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))
}

/// Might any byte of `b` need escaping? Sixteen bytes a step with SSE2 (every x86-64 has
/// it), the last sixteen read again, overlapping; shorter strings by [`needs_any_escape_swar`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn needs_any_escape(b: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let n = b.len();
    if n < 16 {
        return needs_any_escape_swar(b);
    }
    // SAFETY: SSE2 is part of the x86-64 baseline; every load reads 16 bytes that lie within
    // `b` (at `i` with `i + 16 <= n`, and at `n - 16`)
    unsafe {
        let (quote, backslash, ctl) = (
            _mm_set1_epi8(b'"' as i8),
            _mm_set1_epi8(b'\\' as i8),
            _mm_set1_epi8(0x1f),
        );
        // 0xff in each byte that is `"`, `\` or at most 0x1f (`min(v, 0x1f) == v`)
        let hits = |p: *const u8| {
            let v = _mm_loadu_si128(p as *const __m128i);
            _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v),
            )
        };
        let p = b.as_ptr();
        let mut acc = hits(p.add(n - 16));
        let mut i = 0;
        while i + 16 <= n {
            acc = _mm_or_si128(acc, hits(p.add(i)));
            i += 16;
        }
        _mm_movemask_epi8(acc) != 0
    }
}

/// [`needs_any_escape`] elsewhere: the word-at-a-time check.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn needs_any_escape(b: &[u8]) -> bool {
    needs_any_escape_swar(b)
}

/// Might any byte of `b` need escaping? Eight bytes at a time; the last eight read again,
/// overlapping (a short string: its first and last four, or its first, middle and last byte,
/// with plain bytes around), so no byte is missed and there is no tail to copy.
#[inline(always)]
fn needs_any_escape_swar(b: &[u8]) -> bool {
    let n = b.len();
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
    let half = |s: &[u8]| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])) as u64;
    if n >= 8 {
        let mut acc = escape_bits(word(&b[n - 8..]));
        for w in b.chunks_exact(8) {
            acc |= escape_bits(word(w));
        }
        acc != 0
    } else if n >= 4 {
        word_needs_escape(half(&b[..4]) | half(&b[n - 4..]) << 32)
    } else if n > 0 {
        word_needs_escape(u64::from_le_bytes([
            b[0],
            b[n / 2],
            b[n - 1],
            b'a',
            b'a',
            b'a',
            b'a',
            b'a',
        ]))
    } else {
        false
    }
}

/// Does this byte need escaping in a JSON string (as serde_json escapes)?
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` as a JSON string (quotes included), escaped exactly as serde_json escapes: `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00XX`; everything else as is.
/// (Inlined: a dozen calls per `http` line, where the call's register saves cost as much as
/// the check of a short string.)
#[inline(always)]
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_body(out, s);
    out.push(b'"');
}

/// [`push_json_str`] without the quotes: for a writer that has them in its literals (one copy
/// fewer per string).
#[inline(always)]
pub fn push_json_body(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if needs_any_escape(b) {
        return push_json_escaped(out, b);
    }
    // nearly every string: checked a word at a time, copied whole
    out.extend_from_slice(b);
}

/// [`push_json_body`] of a string with a byte to escape (rare: kept out of line).
#[cold]
#[inline(never)]
fn push_json_escaped(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() + 1);
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // eight bytes at a time while none needs escaping
        if i + 8 <= b.len() {
            let w = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let c = b[i];
        i += 1;
        if !needs_escape(c) {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// A writer into a `Vec`'s spare capacity whose write position and end stay in registers:
/// a `Vec` behind `&mut` is reloaded and stored around every push, and the ~80 pushes of an
/// `http` line made that a fifth of the line's cost. Every write checks its own room (no
/// bound has to be worked out ahead, so none can be wrong); the `Vec`'s length is set once,
/// when the cursor is dropped.
pub struct Cursor<'a> {
    v: &'a mut Vec<u8>,
    /// Where the next byte goes: every byte from the `Vec`'s length up to here was written.
    cur: *mut u8,
    /// The end of the `Vec`'s capacity.
    end: *mut u8,
}

/// The cursor's slow path: the bytes written so far committed, room for `n` more made; the
/// new write position and end.
#[cold]
#[inline(never)]
fn cursor_grow(v: &mut Vec<u8>, cur: *mut u8, n: usize) -> (*mut u8, *mut u8) {
    commit(v, cur);
    v.reserve(n);
    spare(v)
}

/// The `Vec`'s length set to take in the bytes written up to `cur`.
#[inline(always)]
fn commit(v: &mut Vec<u8>, cur: *mut u8) {
    // SAFETY: `cur` lies within the Vec's allocation, between its start and the end of its
    // capacity, and every byte below it was written (the cursor's invariant)
    unsafe { v.set_len(cur.offset_from(v.as_ptr()) as usize) };
}

/// The write position and end of a `Vec`'s spare capacity.
#[inline(always)]
fn spare(v: &mut Vec<u8>) -> (*mut u8, *mut u8) {
    let (len, cap) = (v.len(), v.capacity());
    let p = v.as_mut_ptr();
    // SAFETY: both offsets are within (or one past) the allocation
    unsafe { (p.add(len), p.add(cap)) }
}

impl<'a> Cursor<'a> {
    /// A cursor at the end of `v`, with room for `reserve` bytes made up front.
    #[inline(always)]
    pub fn new(v: &'a mut Vec<u8>, reserve: usize) -> Self {
        v.reserve(reserve);
        let (cur, end) = spare(v);
        Cursor { v, cur, end }
    }

    /// Room for `n` more bytes.
    #[inline(always)]
    fn room(&mut self, n: usize) {
        // (`end - cur`: both point into the same allocation, `cur` never past `end`)
        if (self.end as usize) - (self.cur as usize) < n {
            (self.cur, self.end) = cursor_grow(self.v, self.cur, n);
        }
    }

    /// The `Vec` with everything written so far, for a rare writer that takes one (the
    /// cursor's position is reloaded when it returns).
    #[inline(always)]
    fn with_vec(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        commit(self.v, self.cur);
        f(self.v);
        (self.cur, self.end) = spare(self.v);
    }

    /// Bytes as they are (a constant's length is known here, and the copy becomes a few moves).
    #[inline(always)]
    pub fn put(&mut self, s: &[u8]) {
        self.room(s.len());
        // SAFETY: `room` made `s.len()` bytes from `cur` writable
        unsafe { self.raw(s) };
    }

    /// [`Cursor::put`] without the room check.
    /// SAFETY: the caller made room for `s.len()` bytes (the source is a shared borrow, the
    /// destination the Vec's spare capacity: they do not overlap).
    #[inline(always)]
    unsafe fn raw(&mut self, s: &[u8]) {
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.cur, s.len());
            self.cur = self.cur.add(s.len());
        }
    }

    /// A key given with the comma before it (`,"key":`), written with that comma when `some`
    /// (an earlier key in the object) and without it otherwise; `some` set. One room check.
    /// (The comma a byte of its own: a choice between the two texts would be a copy of
    /// unknown length, a `memcpy` call.)
    #[inline(always)]
    pub fn key(&mut self, some: &mut bool, k: &[u8]) {
        // (at least the comma's byte, even for an empty `k`)
        self.room(k.len().max(1));
        let bare = k.get(1..).unwrap_or_default();
        // SAFETY: `room(k.len())` covers the comma and the `k.len() - 1` bytes after it
        unsafe {
            if *some {
                self.cur.write(b',');
                self.cur = self.cur.add(1);
            }
            self.raw(bare);
        }
        *some = true;
    }

    /// A constant and a number after it, with one room check.
    #[inline(always)]
    pub fn put_u64(&mut self, k: &[u8], n: u64) {
        self.room(k.len() + 20);
        // SAFETY: room for `k` and the at most 20 digits
        unsafe {
            self.raw(k);
            self.raw_u64(n);
        }
    }

    /// A constant and a timestamp after it, with one room check.
    #[inline(always)]
    pub fn put_ts(&mut self, k: &[u8], ns: Ts) {
        let (last, b) = LAST_TS.get();
        let b = if last == ns / 1000 { b } else { new_ts(ns, last, b) };
        self.room(k.len() + b.len());
        // SAFETY: room for both
        unsafe {
            self.raw(k);
            self.raw(&b);
        }
    }

    /// A string's JSON text without its quotes and a constant after it (`"` mostly), with
    /// one room check when nothing needs escaping.
    #[inline(always)]
    pub fn json_body_then(&mut self, s: &str, tail: &[u8]) {
        let b = s.as_bytes();
        if needs_any_escape(b) {
            self.with_vec(|v| push_json_escaped(v, b));
            return self.put(tail);
        }
        self.room(b.len() + tail.len());
        // SAFETY: room for both
        unsafe {
            self.raw_var(b);
            self.raw(tail);
        }
    }

    /// One byte.
    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        self.room(1);
        // SAFETY: as in `put`
        unsafe {
            self.cur.write(b);
            self.cur = self.cur.add(1);
        }
    }

    /// `true` or `false`: one eight-byte store of either, the position moved by its length
    /// (a choice between two copies of different lengths compiles to a `memcpy` call).
    #[inline(always)]
    pub fn bool(&mut self, b: bool) {
        self.room(8);
        let (word, n) = if b { (*b"true\0\0\0\0", 4) } else { (*b"false\0\0\0", 5) };
        // SAFETY: `room(8)`: the eight bytes at `cur` are writable; only `n` of them are kept
        unsafe {
            std::ptr::write_unaligned(self.cur as *mut [u8; 8], word);
            self.cur = self.cur.add(n);
        }
    }

    /// Bytes of a length known only at run time: up to 32 of them by two overlapping loads
    /// and stores (no call to `memcpy`, which costs as much as the copy on a short value).
    #[inline(always)]
    pub fn put_var(&mut self, s: &[u8]) {
        self.room(s.len());
        // SAFETY: `room` made `s.len()` bytes from `cur` writable
        unsafe { self.raw_var(s) };
    }

    /// [`Cursor::put_var`] without the room check.
    /// SAFETY: the caller made room for `s.len()` bytes.
    #[inline(always)]
    unsafe fn raw_var(&mut self, s: &[u8]) {
        let n = s.len();
        let (src, dst) = (s.as_ptr(), self.cur);
        // SAFETY: the caller made the n bytes at `dst` writable; each read below stays
        // within `s` (the second read of each pair ends at its last byte), each write within
        // the n bytes at `dst`
        unsafe {
            use std::ptr::{read_unaligned as rd, write_unaligned as wr};
            if n > 32 {
                std::ptr::copy_nonoverlapping(src, dst, n);
            } else if n >= 16 {
                let (a, b) = (rd(src as *const u128), rd(src.add(n - 16) as *const u128));
                wr(dst as *mut u128, a);
                wr(dst.add(n - 16) as *mut u128, b);
            } else if n >= 8 {
                let (a, b) = (rd(src as *const u64), rd(src.add(n - 8) as *const u64));
                wr(dst as *mut u64, a);
                wr(dst.add(n - 8) as *mut u64, b);
            } else if n >= 4 {
                let (a, b) = (rd(src as *const u32), rd(src.add(n - 4) as *const u32));
                wr(dst as *mut u32, a);
                wr(dst.add(n - 4) as *mut u32, b);
            } else if n > 0 {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            self.cur = self.cur.add(n);
        }
    }

    /// [`push_json_body`]: a string's JSON text without its quotes.
    #[inline(always)]
    pub fn json_body(&mut self, s: &str) {
        let b = s.as_bytes();
        if needs_any_escape(b) {
            return self.with_vec(|v| push_json_escaped(v, b));
        }
        self.put_var(b);
    }

    /// [`push_json_str`]: a string as JSON, quotes included.
    #[inline(always)]
    pub fn json_str(&mut self, s: &str) {
        self.byte(b'"');
        self.json_body(s);
        self.byte(b'"');
    }

    /// [`push_u64`]: a number's decimal digits, two a step from a table, written in place.
    #[inline(always)]
    pub fn u64(&mut self, n: u64) {
        self.room(20);
        // SAFETY: `room(20)`
        unsafe { self.raw_u64(n) };
    }

    /// [`Cursor::u64`] without the room check.
    /// SAFETY: the caller made room for 20 bytes (a u64 has at most 20 digits).
    #[inline(always)]
    unsafe fn raw_u64(&mut self, n: u64) {
        let digits = decimal_digits(n);
        // SAFETY: every write is below `cur + digits`, within the caller's 20 bytes
        unsafe {
            let mut end = self.cur.add(digits);
            let mut n = n;
            while n >= 100 {
                let r = (n % 100) as usize * 2;
                n /= 100;
                end = end.sub(2);
                std::ptr::copy_nonoverlapping(DIGITS2.as_ptr().add(r), end, 2);
            }
            if n >= 10 {
                std::ptr::copy_nonoverlapping(DIGITS2.as_ptr().add(n as usize * 2), end.sub(2), 2);
            } else {
                *end.sub(1) = b'0' + n as u8;
            }
            self.cur = self.cur.add(digits);
        }
    }

    /// [`push_ip`]: an address as `Display` writes it.
    #[inline(always)]
    pub fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                // each octet's four table bytes stored whole, the next octet over the spare
                // ones (19 bytes at most: the last octet's three digits and dot, after 15)
                self.room(20);
                let mut n = 0;
                for o in a.octets() {
                    let (d, len) = OCTETS[o as usize];
                    // SAFETY: n <= 12 before this write, its 4 bytes within the 20
                    unsafe { std::ptr::write_unaligned(self.cur.add(n) as *mut [u8; 4], d) };
                    n += len as usize;
                }
                // the last octet's dot left off (n is 8..=16)
                // SAFETY: within the 20 bytes made room for
                self.cur = unsafe { self.cur.add(n - 1) };
            }
            IpAddr::V6(_) => self.with_vec(|v| push_ip(v, ip)),
        }
    }

    /// [`push_ts`]: an EVE timestamp (the per-thread cache of the last one written).
    #[inline(always)]
    pub fn ts(&mut self, ns: Ts) {
        let (last, b) = LAST_TS.get();
        let b = if last == ns / 1000 { b } else { new_ts(ns, last, b) };
        self.put(&b);
    }
}

/// How many decimal digits `n` has (the short numbers of a line told by a few compares).
#[inline(always)]
fn decimal_digits(n: u64) -> usize {
    if n < 10 {
        1
    } else if n < 100 {
        2
    } else if n < 1000 {
        3
    } else if n < 100_000 {
        if n < 10_000 { 4 } else { 5 }
    } else {
        n.ilog10() as usize + 1
    }
}

impl Drop for Cursor<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        commit(self.v, self.cur);
    }
}

/// Does `hay` hold `needle`? For short texts (header values, names): a byte search for the
/// needle's first byte and a compare, cheaper there than building a substring searcher.
pub fn contains_short(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else { return true };
    memchr::memchr_iter(first, hay).any(|i| hay[i..].starts_with(needle))
}

/// Where `needle` first starts in `hay` (`str::find`'s answer), by a byte search for its
/// first byte and a compare: cheaper than a substring searcher on short texts.
pub fn find_short(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some(&first) = needle.first() else { return Some(0) };
    memchr::memchr_iter(first, hay).find(|&i| hay[i..].starts_with(needle))
}

/// The text before the first `;` (a media type without its parameters), or all of it.
pub fn before_semicolon(s: &str) -> &str {
    memchr::memchr(b';', s.as_bytes()).map_or(s, |i| &s[..i])
}

/// `uri.split_once('?')`, with one byte search (core's char searcher costs several times
/// more on the short targets of every transaction).
pub fn split_query(uri: &str) -> Option<(&str, &str)> {
    let i = memchr::memchr(b'?', uri.as_bytes())?;
    Some((&uri[..i], &uri[i + 1..]))
}

/// The strings one after the other, in one allocation (`format!` costs ten times more for
/// the same result on a per-transaction path).
pub fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// The path of a request target: without query or fragment, and for the absolute form
/// (`http://user:pass@host/p`, proxies) without scheme, credentials and authority.
pub fn target_path(uri: &str) -> &str {
    // RFC 9112 §3.2: origin-form (`/p?q`), absolute-form (`scheme://authority/p?q`, the scheme at
    // the very start), authority-form (`host:port`, CONNECT) and asterisk-form (`*`). A `://`
    // further in (a URL inside the query, `/fetch?url=http://h/x`) is data, not the target's
    // authority: only a target that does not start with `/` can be absolute-form.
    let p = if uri.starts_with('/') {
        uri
    } else {
        match absolute_rest(uri) {
            Some(rest) => rest.find(['/', '?', '#']).map_or("/", |i| match rest.as_bytes()[i] {
                b'/' => &rest[i..],
                _ => "/",
            }),
            None => uri,
        }
    };
    memchr::memchr2(b'?', b'#', p.as_bytes()).map_or(p, |i| &p[..i])
}

/// `scheme://rest` with an RFC 3986 scheme (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) at the
/// start: `rest`.
pub fn absolute_rest(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    let mut b = scheme.bytes();
    let first_ok = b.next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_ok && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))).then_some(rest)
}

/// `s.trim()`, with the common case told by two bytes: a value that starts and ends with a
/// visible ASCII character has nothing to trim (every whitespace `trim` removes is either
/// ASCII at most 0x20 or a multi-byte character, whose bytes are all >= 0x80).
#[inline(always)]
pub fn trim_fast(s: &str) -> &str {
    match s.as_bytes() {
        [first, .., last] if (0x21..0x80).contains(first) && (0x21..0x80).contains(last) => s,
        [one] if (0x21..0x80).contains(one) => s,
        _ => s.trim(),
    }
}

/// `example.com:8080` -> (example.com, 8080); `[::1]:80` -> ([::1], 80).
pub fn split_host_port(h: &str) -> (Option<&str>, Option<u16>) {
    let h = trim_fast(h);
    if h.starts_with('[') {
        // An IPv6 literal keeps its brackets, as in a URL (and as Suricata logs it).
        if let Some(end) = h.find(']') {
            let port = h[end + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            return (Some(&h[..=end]), port);
        }
    }
    // (byte searches: a colon is ASCII)
    match memchr::memrchr(b':', h.as_bytes()).map(|i| (&h[..i], &h[i + 1..])) {
        Some((name, port)) if memchr::memchr(b':', name.as_bytes()).is_none() => match port.parse() {
            Ok(p) => (Some(name), Some(p)),
            Err(_) => (Some(h), None),
        },
        _ => (Some(h), None),
    }
}

/// A stack whose first `N` items live inline (no allocation for the usual shallow nesting),
/// the rest in a `Vec`: what a parser keeps per open container.
pub struct InlineStack<T, const N: usize> {
    inline: [Option<T>; N],
    spill: Vec<T>,
    len: usize,
}

impl<T, const N: usize> InlineStack<T, N> {
    pub fn new() -> Self {
        InlineStack {
            inline: [const { None }; N],
            spill: Vec::new(),
            len: 0,
        }
    }

    pub fn push(&mut self, v: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = Some(v),
            None => self.spill.push(v),
        }
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get_mut(self.len) {
            Some(slot) => slot.take(),
            None => self.spill.pop(),
        }
    }

    pub fn last(&self) -> Option<&T> {
        let top = self.len.checked_sub(1)?;
        match self.inline.get(top) {
            Some(slot) => slot.as_ref(),
            None => self.spill.last(),
        }
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        let top = self.len.checked_sub(1)?;
        match self.inline.get_mut(top) {
            Some(slot) => slot.as_mut(),
            None => self.spill.last_mut(),
        }
    }
}

impl<T, const N: usize> InlineStack<T, N> {
    /// The items, bottom first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline.iter().take(self.len).flatten().chain(self.spill.iter())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: std::fmt::Debug, const N: usize> std::fmt::Debug for InlineStack<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T, const N: usize> Default for InlineStack<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod inline_stack_tests {
    use super::InlineStack;

    /// Pushes and pops in every order, across the inline/spilled boundary: the same answers
    /// as a `Vec`.
    #[test]
    fn an_inline_stack_answers_as_a_vec_does() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut st: InlineStack<u32, 4> = InlineStack::new();
        let mut model: Vec<u32> = Vec::new();
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // drift up and down through depths 0..~12
            let push = match model.len() {
                0 => true,
                n if n >= 12 => false,
                _ => !x.is_multiple_of(3) || x.is_multiple_of(2) && model.len() < 6,
            };
            if push {
                st.push(i);
                model.push(i);
            } else {
                assert_eq!(st.pop(), model.pop());
            }
            if x.is_multiple_of(5)
                && let (Some(a), Some(b)) = (st.last_mut(), model.last_mut())
            {
                *a += 1;
                *b += 1;
            }
            assert_eq!(st.last(), model.last());
            assert_eq!(st.len(), model.len());
            assert!(st.iter().eq(model.iter()));
        }
        while let Some(v) = model.pop() {
            assert_eq!(st.pop(), Some(v));
        }
        assert_eq!(st.pop(), None);
        assert_eq!(st.last(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_path_ends_at_the_first_query_or_fragment() {
        for (uri, want) in [
            ("/a/b?c#d", "/a/b"),
            ("/a/b#c?d", "/a/b"),
            ("/a?", "/a"),
            ("/#", "/"),
            ("/caf\u{e9}?q=\u{e9}", "/caf\u{e9}"),
            ("/", "/"),
            ("http://h/x?y", "/x"),
            ("*", "*"),
            ("?x", ""),
        ] {
            assert_eq!(target_path(uri), want, "{uri:?}");
            let reference = uri.split(['?', '#']).next().unwrap_or("");
            if uri.starts_with('/') {
                assert_eq!(target_path(uri), reference, "{uri:?}");
            }
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for a in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.100.255",
            "1.20.255.9",
            "::1",
            "fe80::1:2",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(ip_string(ip), ip.to_string());
        }
    }

    #[test]
    fn every_ascii_byte_at_every_place_of_short_strings_is_escaped_as_serde_json_does() {
        for len in 1..=19usize {
            for at in 0..len {
                for c in 0u8..=0x7f {
                    let mut t = vec![b'x'; len];
                    t[at] = c;
                    let s = String::from_utf8(t).unwrap();
                    let mut v = Vec::new();
                    push_json_str(&mut v, &s);
                    assert_eq!(
                        String::from_utf8(v).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain("é€😀\u{7f}\u{2028}".chars())
            .collect();
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "line\nbreak\r\t\u{8}\u{c}",
            "\u{1}\u{1f}",
            all.as_str(),
        ] {
            let mut v = Vec::new();
            push_json_str(&mut v, s);
            assert_eq!(
                String::from_utf8(v).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn numbers_and_timestamps() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        assert_eq!(fmt_ts(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456+0000");
        assert_eq!(fmt_ts(0), "1970-01-01T00:00:00.000000+0000");
        // the per-thread cache of the last second: same second, next second, back again
        for ns in [
            1_700_000_000_123_456_789u64,
            1_700_000_000_999_999_000,
            1_700_000_001_000_001_000,
            5,
        ] {
            let mut v = Vec::new();
            push_ts(&mut v, ns);
            assert_eq!(String::from_utf8(v).unwrap(), fmt_ts(ns));
        }
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    /// A small deterministic generator (no crate needed for a few thousand cases).
    fn lcg(x: &mut u64) -> u64 {
        *x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *x >> 33
    }

    #[test]
    fn word_escape_check_agrees_with_the_byte_check_on_hostile_bytes_at_every_length_and_place() {
        // bytes either side of each class edge, non-ASCII and invalid UTF-8 included: the check
        // reads raw bytes
        let hostile = [
            0x00u8, 0x01, 0x08, 0x0a, 0x1f, 0x20, 0x21, b'"', 0x23, b'\\', 0x5b, 0x5d, 0x7f, 0x80, 0x9f, 0xa0, 0xbc,
            0xdc, 0xe2, 0xff,
        ];
        for len in 0..=40usize {
            for at in 0..len.max(1) {
                for &c in &hostile {
                    for &fill in &[b'a', 0xa2u8, 0x80] {
                        let mut t = vec![fill; len];
                        if len > 0 {
                            t[at] = c;
                        }
                        let want = t.iter().any(|&b| needs_escape(b));
                        assert_eq!(needs_any_escape(&t), want, "{t:?}");
                        assert_eq!(needs_any_escape_swar(&t), want, "{t:?}");
                    }
                }
            }
        }
        // two hostile bytes anywhere in short strings (the overlapping reads of 4..8 bytes)
        for len in 2..=9usize {
            for i in 0..len {
                for j in 0..len {
                    for &c in &hostile {
                        let mut t = vec![b'm'; len];
                        t[i] = c;
                        t[j] = 0x80;
                        assert_eq!(needs_any_escape(&t), t.iter().any(|&b| needs_escape(b)), "{t:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn json_strings_of_mixed_hostile_pieces_are_escaped_as_serde_json_escapes_them() {
        let pieces = [
            "a",
            "Zz",
            "\"",
            "\\",
            "\u{0}",
            "\u{1}",
            "\u{1f}",
            " ",
            "\n",
            "\r\t",
            "\u{8}\u{c}",
            "é",
            "€",
            "\u{2028}",
            "\u{2029}",
            "😀",
            "\u{7f}",
            "/",
            "<script>",
            "0123456789abcdef",
        ];
        let mut x = 7u64;
        for _ in 0..20_000 {
            let n = lcg(&mut x) % 12;
            let s: String = (0..n).map(|_| pieces[lcg(&mut x) as usize % pieces.len()]).collect();
            let mut v = b"prefix".to_vec();
            push_json_str(&mut v, &s);
            assert_eq!(&v[..6], b"prefix");
            assert_eq!(
                std::str::from_utf8(&v[6..]).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    /// Every timestamp through [`push_ts`] (whose per-thread cache reuses the last instant or
    /// second) reads as [`fmt_ts`] (computed whole each time), in any order of values.
    fn assert_cached_ts_is_fresh(ns: u64) {
        let mut v = Vec::new();
        push_ts(&mut v, ns);
        assert_eq!(String::from_utf8(v).unwrap(), fmt_ts(ns), "{ns}");
    }

    #[test]
    fn cached_timestamps_equal_fresh_ones_across_second_day_and_year_boundaries() {
        const S: u64 = 1_000_000_000;
        // 2023-12-31T23:59:59 and the leap day 2024-02-29T00:00:00
        let new_year = 1_704_067_199 * S;
        let leap_day = 1_709_164_800 * S;
        let mut seq = vec![
            0,
            0,
            1,
            999,
            1000,
            999_999_999,
            S,
            S - 1,
            0,
            u64::MAX,
            u64::MAX,
            u64::MAX - 1_000,
            5,
        ];
        for base in [new_year, leap_day - S, 86_400 * S * 20_000 - S] {
            for d in [
                0,
                1,
                999,
                1000,
                1001,
                999_999,
                1_000_000,
                999_999_000,
                999_999_999,
                S,
                S + 1,
                2 * S - 1,
                86_400 * S,
            ] {
                seq.push(base + d);
                seq.push(base + d);
                seq.push(base);
            }
        }
        for ns in seq {
            assert_cached_ts_is_fresh(ns);
        }
        assert_eq!(fmt_ts(new_year + S), "2024-01-01T00:00:00.000000+0000");
        assert_eq!(fmt_ts(new_year + 999_999_999), "2023-12-31T23:59:59.999999+0000");
        assert_eq!(fmt_ts(leap_day + 86_399 * S + 7_000), "2024-02-29T23:59:59.000007+0000");
        // a walk of small and large steps, forwards and back
        let mut x = 3u64;
        let mut ns = 1_700_000_000 * S;
        for _ in 0..50_000 {
            let r = lcg(&mut x);
            let step = match r % 4 {
                0 => 0,
                1 => r % 1_000_000,
                2 => r % (3 * S),
                _ => r % (400 * 86_400 * S),
            };
            ns = if r & 64 == 0 {
                ns.wrapping_add(step)
            } else {
                ns.wrapping_sub(step)
            };
            assert_cached_ts_is_fresh(ns);
        }
    }

    #[test]
    fn ipv4_from_the_octet_table_is_display_for_every_octet_at_every_place() {
        for o in 0..=255u8 {
            for at in 0..4 {
                for other in [0u8, 9, 10, 99, 100, 255] {
                    let mut a = [other; 4];
                    a[at] = o;
                    let ip = IpAddr::from(a);
                    assert_eq!(ip_string(ip), ip.to_string());
                    let mut v = b"x".to_vec();
                    push_ip(&mut v, ip);
                    assert_eq!(v, format!("x{ip}").into_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::*;

    /// Strings of every length up to 80, plain or with a byte to escape or a multi-byte
    /// character at some place, and long ones.
    fn strings() -> Vec<String> {
        let mut v = Vec::new();
        for len in 0..=80usize {
            v.push("a".repeat(len));
            for (at, c) in [
                (0, "\""),
                (len / 2, "\u{1}"),
                (len.saturating_sub(1), "é"),
                (len / 3, "\\"),
            ] {
                if len > 0 {
                    let mut s = "b".repeat(len - 1);
                    s.insert_str(at.min(len - 1), c);
                    v.push(s);
                }
            }
        }
        v.push("z".repeat(10_000));
        v.push(format!("{}\n", "€".repeat(3000)));
        v
    }

    /// What the `Vec` helpers write, and what a cursor writes, into buffers of every
    /// capacity from none to plenty, after some bytes already there.
    fn same(what: &str, vec_way: impl Fn(&mut Vec<u8>), cursor_way: impl Fn(&mut Cursor)) {
        let mut want = b"before".to_vec();
        vec_way(&mut want);
        for cap in [0usize, 6, 7, 8, want.len() - 1, want.len(), want.len() + 40, 4096] {
            let mut got = Vec::with_capacity(cap);
            got.extend_from_slice(b"before");
            for reserve in [0, 1, 64] {
                got.truncate(6);
                cursor_way(&mut Cursor::new(&mut got, reserve));
                assert_eq!(got, want, "{what} cap {cap} reserve {reserve}");
            }
        }
    }

    #[test]
    fn cursor_strings_are_the_vec_helpers_strings_at_every_length_and_capacity() {
        for s in strings() {
            same(&format!("{s:?}"), |v| push_json_str(v, &s), |c| c.json_str(&s));
            same(&format!("{s:?}"), |v| push_json_body(v, &s), |c| c.json_body(&s));
            same(
                &format!("{s:?}"),
                |v| v.extend_from_slice(s.as_bytes()),
                |c| c.put_var(s.as_bytes()),
            );
            same(
                &format!("{s:?}"),
                |v| v.extend_from_slice(s.as_bytes()),
                |c| c.put(s.as_bytes()),
            );
        }
    }

    #[test]
    fn cursor_numbers_are_decimal_at_every_digit_count() {
        let mut ns = vec![0u64, u64::MAX, u64::MAX - 1];
        let mut p = 1u64;
        while let Some(next) = p.checked_mul(10) {
            ns.extend([p - 1, p, p + 1, next / 2]);
            p = next;
        }
        ns.push(p);
        for n in ns {
            same(
                &n.to_string(),
                |v| v.extend_from_slice(n.to_string().as_bytes()),
                |c| c.u64(n),
            );
            same(&n.to_string(), |v| push_u64(v, n), |c| c.u64(n));
        }
    }

    #[test]
    fn cursor_addresses_are_display_for_every_octet_at_every_place_and_for_ipv6() {
        for o in 0..=255u8 {
            for at in 0..4 {
                for other in [0u8, 9, 10, 99, 100, 255] {
                    let mut a = [other; 4];
                    a[at] = o;
                    let ip = IpAddr::from(a);
                    same(
                        &ip.to_string(),
                        |v| v.extend_from_slice(ip.to_string().as_bytes()),
                        |c| c.ip(ip),
                    );
                }
            }
        }
        for a in [
            "::",
            "::1",
            "fe80::1:2",
            "::ffff:1.2.3.4",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            same(a, |v| v.extend_from_slice(ip.to_string().as_bytes()), |c| c.ip(ip));
        }
    }

    #[test]
    fn cursor_timestamps_are_fmt_ts_in_any_order() {
        const S: u64 = 1_000_000_000;
        for ns in [
            0,
            1,
            1000,
            S - 1,
            S,
            1_700_000_000 * S + 123_456_789,
            1_704_067_199 * S + 999_999_999,
            u64::MAX,
            5,
        ] {
            for _ in 0..2 {
                same(
                    &ns.to_string(),
                    |v| v.extend_from_slice(fmt_ts(ns).as_bytes()),
                    |c| c.ts(ns),
                );
            }
        }
    }

    #[test]
    fn digit_counts_are_the_length_of_the_decimal_text() {
        let mut p = 1u64;
        loop {
            for n in [p - 1, p, p + 1, p.saturating_mul(5)] {
                assert_eq!(decimal_digits(n), n.to_string().len(), "{n}");
            }
            match p.checked_mul(10) {
                Some(q) => p = q,
                None => break,
            }
        }
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn cursor_booleans_are_true_and_false() {
        for b in [true, false] {
            same(
                &b.to_string(),
                |v| v.extend_from_slice(b.to_string().as_bytes()),
                |c| c.bool(b),
            );
        }
    }

    #[test]
    fn fused_cursor_writes_are_their_parts_written_one_after_the_other() {
        for s in strings() {
            same(
                &format!("{s:?}"),
                |v| {
                    push_json_body(v, &s);
                    v.extend_from_slice(b"\",");
                },
                |c| c.json_body_then(&s, b"\","),
            );
        }
        for n in [0u64, 9, 10, 99, 100, 65535, u64::MAX] {
            same(
                &n.to_string(),
                |v| {
                    v.extend_from_slice(b",\"k\":");
                    push_u64(v, n);
                },
                |c| c.put_u64(b",\"k\":", n),
            );
        }
        for ns in [0u64, 1_700_000_000_123_456_789, 1_700_000_000_123_999_999, u64::MAX] {
            same(
                &ns.to_string(),
                |v| {
                    v.extend_from_slice(b"\",\"t\":\"");
                    push_ts(v, ns);
                },
                |c| c.put_ts(b"\",\"t\":\"", ns),
            );
        }
        for some in [false, true] {
            same(
                &some.to_string(),
                |v| v.extend_from_slice(if some { b",\"k\":" } else { b"\"k\":" }),
                |c| {
                    let mut s = some;
                    c.key(&mut s, b",\"k\":");
                    assert!(s);
                },
            );
        }
    }

    #[test]
    fn a_cursor_mixing_every_write_keeps_them_in_order() {
        let mut v = Vec::new();
        {
            let mut c = Cursor::new(&mut v, 0);
            c.byte(b'[');
            c.u64(42);
            c.put(b",");
            c.json_str("a\"b");
            c.put(b",\"");
            c.ip("10.0.0.1".parse().unwrap());
            c.put(b"\",\"");
            c.ts(0);
            c.put(b"\",");
            c.bool(true);
            c.put(b",");
            c.bool(false);
            c.put_var(b"]");
        }
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#"[42,"a\"b","10.0.0.1","1970-01-01T00:00:00.000000+0000",true,false]"#
        );
    }
}

#[cfg(test)]
mod split_tests {
    #[test]
    fn contains_short_is_contains() {
        for (h, n) in [
            ("application/json", "json"),
            ("text/html", "json"),
            ("", ""),
            ("a", ""),
            ("jsojson", "json"),
            ("js", "json"),
        ] {
            assert_eq!(
                super::contains_short(h.as_bytes(), n.as_bytes()),
                h.contains(n),
                "{h} {n}"
            );
        }
    }

    #[test]
    fn find_short_is_str_find() {
        for (h, n) in [
            ("http://u:p@h/", "://"),
            ("/r?u=http://a:b@c/", "://"),
            ("/plain", "://"),
            (":/:://", "://"),
            ("::", "://"),
            ("", ""),
            ("ab", ""),
            ("é://x", "://"),
        ] {
            assert_eq!(super::find_short(h.as_bytes(), n.as_bytes()), h.find(n), "{h} {n}");
        }
    }

    #[test]
    fn split_query_is_split_once_and_target_path_cuts_at_query_or_fragment() {
        for u in ["/a?b=1", "/a", "?", "/a??b", "", "/p#f?x", "/é?ü=1"] {
            assert_eq!(super::split_query(u), u.split_once('?'), "{u}");
        }
        assert_eq!(super::target_path("/a/b?x=1#y"), "/a/b");
        assert_eq!(super::target_path("/a/b#y?x"), "/a/b");
        assert_eq!(super::target_path("http://h.example/p?q"), "/p");
        assert_eq!(super::target_path("/plain"), "/plain");
    }
}
