//! Bounded decoding of content-encoded bodies for inspection.
//!
//! Only the inspected prefix of a body (at most `body_depth` bytes) is decoded, and the output
//! is capped at `cap` bytes: a decompression bomb costs at most `cap` bytes of memory and the
//! work to produce them. A prefix cut mid-stream decodes as far as it goes.
//!
//! Each worker thread keeps its inflate states (zlib-rs through flate2's `Decompress`, reset per
//! body): a body's decoding reads its slice directly and writes the decoded bytes straight into
//! the vector it returns, never zeroed (no decoder, 32 KiB read buffer or zeroed output buffer
//! allocated per body, and no copy of the output).

use flate2::{Crc, Decompress, FlushDecompress, Status};
use std::cell::RefCell;

pub enum Decoded {
    NotEncoded,
    Done(Vec<u8>),
    Failed,
}

pub fn decode(encoding: &str, input: &[u8], cap: usize) -> Decoded {
    let enc = encoding.trim();
    let kind = if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        Kind::Gzip
    } else if enc.eq_ignore_ascii_case("deflate") {
        // "deflate" is zlib-wrapped per RFC 9110, but raw deflate is common in the wild.
        if input.first().is_some_and(|b| b & 0x0f == 8) {
            Kind::Zlib
        } else {
            Kind::Raw
        }
    } else {
        return Decoded::NotEncoded;
    };
    match INFLATER.with_borrow_mut(|inf| inf.run(kind, input, cap)) {
        Some(v) => Decoded::Done(v),
        None => Decoded::Failed,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Gzip,
    Zlib,
    Raw,
}

thread_local! {
    static INFLATER: RefCell<Inflater> = const { RefCell::new(Inflater { raw: None, zlib: None }) };
}

/// One worker's inflate states, reset per body (a new one allocates and zeroes ~40 KiB).
struct Inflater {
    raw: Option<Decompress>,
    zlib: Option<Decompress>,
}

/// The first output size when nothing tells the decoded size: most decoded bodies fit, and a
/// larger one doubles up to `cap`.
const SCRATCH_START: usize = 64 << 10;

/// Room past a gzip member's decoded length in the first output vector: zlib-rs's fast loop
/// stops 260 bytes before the end of the room it writes to and decodes the rest one symbol at
/// a time (about four times the instructions per byte), and one byte of room more lets the
/// stream's end be seen without growing.
const ROOM_PAST_END: usize = 512;

/// The output vector's first capacity: a whole gzip member ends with its decoded length (mod
/// 2^32), and [`ROOM_PAST_END`] more; otherwise [`SCRATCH_START`]; never past `cap`. Only a
/// guess: a cut or hostile body's last bytes say anything, and the output grows or is trimmed
/// either way.
fn first_capacity(kind: Kind, input: &[u8], cap: usize) -> usize {
    let hint = match input.len().checked_sub(4).and_then(|at| input.get(at..)) {
        Some(t) if kind == Kind::Gzip => Some(u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize),
        _ => None,
    };
    // (deflate makes at most 1032 bytes of one: a larger length is not this stream's)
    match hint.filter(|h| *h <= input.len().saturating_mul(1032)) {
        Some(h) => h.saturating_add(ROOM_PAST_END).min(cap),
        None => SCRATCH_START.min(cap),
    }
}

impl Inflater {
    /// Decode up to `cap` bytes; a stream that fails after producing output keeps what it
    /// produced (a body prefix cut mid-stream), one that fails at once is `None`. Output as
    /// flate2's `bufread` decoders read to the end: gzip members one after the other (each
    /// checked against its trailer). Whole and cut streams decode exactly as with miniz_oxide
    /// before. A stream corrupt inside its deflate data keeps all that inflated before the
    /// decoder saw the damage (zlib-rs writes it out before it fails): miniz_oxide's 32 KiB
    /// rounds kept only the rounds before the failing one, so a damaged tail could hide the
    /// whole body from inspection.
    ///
    /// The decoder writes straight into the vector returned, never zeroed (its spare capacity,
    /// through flate2's `decompress_vec`): copying the output out of a scratch buffer cost
    /// about one instruction per 16 decoded bytes. The vector's capacity is exact (built by
    /// `Vec::with_capacity`, which the standard library documents as exact), so a read never
    /// goes past the `cap` it was given; one far larger than its output is trimmed.
    fn run(&mut self, kind: Kind, mut input: &[u8], cap: usize) -> Option<Vec<u8>> {
        if cap == 0 {
            return Some(Vec::new()); // nothing is read, not even a header
        }
        let Inflater { raw, zlib } = self;
        let d = match kind {
            Kind::Zlib => zlib.get_or_insert_with(|| Decompress::new(true)),
            Kind::Gzip | Kind::Raw => raw.get_or_insert_with(|| Decompress::new(false)),
        };
        d.reset(kind == Kind::Zlib);
        let gzip = kind == Kind::Gzip;
        let mut out = Vec::with_capacity(first_capacity(kind, input, cap));
        let mut member = 0; // where the current gzip member's output starts in `out`
        let mut failed = gzip && gz_header(&mut input).is_none();
        while !failed && out.len() < cap {
            if out.len() == out.capacity() {
                let mut grown = Vec::with_capacity(out.capacity().saturating_mul(2).max(SCRATCH_START).min(cap));
                grown.extend_from_slice(&out);
                out = grown;
            }
            match inflate(d, &mut input, &mut out) {
                // a gzip member's end: its trailer, then the next member if more follows
                Ok(0) if gzip => {
                    let Some(trailer) = input.get(..8) else {
                        failed = true;
                        break;
                    };
                    input = &input[8..];
                    // A wrong CRC or length fails the read after this member's output was
                    // handed out: it decides something only when another member follows (stop
                    // there) or nothing decoded (a failure, not an empty body). Otherwise the
                    // output is kept either way, and its CRC is not computed.
                    if (!input.is_empty() || out.is_empty()) && !gz_trailer_matches(trailer, &out[member..]) {
                        failed = true;
                        break;
                    }
                    if input.is_empty() {
                        break;
                    }
                    failed = gz_header(&mut input).is_none();
                    member = out.len();
                    d.reset(false);
                }
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => failed = true,
            }
        }
        if failed && out.is_empty() {
            return None;
        }
        // (a vector at most half full gives its room back: as much as the output copied)
        if out.len() <= out.capacity() / 2 {
            out.shrink_to_fit();
        }
        Some(out)
    }
}

/// One read of inflated bytes onto the end of `out` (which has room), as flate2's `zio::read`:
/// all the input is offered, `Finish` once it is used up; `Ok(0)` at the stream's end. `Err(k)`
/// on corrupt data (`k`: the bytes written before the decoder saw it), at the end of input
/// inside the stream, or when the decoder makes no progress.
fn inflate(d: &mut Decompress, input: &mut &[u8], out: &mut Vec<u8>) -> Result<usize, usize> {
    loop {
        let eof = input.is_empty();
        let flush = if eof {
            FlushDecompress::Finish
        } else {
            FlushDecompress::None
        };
        let (in0, len0) = (d.total_in(), out.len());
        let ret = d.decompress_vec(input, out, flush);
        let read = out.len() - len0;
        let used = (d.total_in() - in0) as usize;
        *input = input.get(used..).unwrap_or_default();
        match ret {
            Ok(Status::Ok | Status::BufError) if read == 0 && !eof => {
                if used == 0 {
                    return Err(0);
                }
            }
            // the input ended inside the stream (a cut body)
            Ok(Status::Ok | Status::BufError) if read == 0 => return Err(0),
            Ok(_) => return Ok(read),
            Err(_) => return Err(read),
        }
    }
}

const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
/// flate2's limit on a gzip header's name or comment
const MAX_HEADER_FIELD: usize = 65535;

/// Skip a gzip member's header (RFC 1952) as flate2 reads it: `None` if it is not one, is cut
/// short, sets a reserved flag, has a name or comment over 64 KiB or a wrong header CRC.
fn gz_header(input: &mut &[u8]) -> Option<()> {
    let s = *input;
    let fixed = s.get(..10)?;
    if fixed[..3] != [0x1f, 0x8b, 8] || fixed[3] & 0xe0 != 0 {
        return None;
    }
    let flags = fixed[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let xlen = s.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
        s.get(..at)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let nul = memchr::memchr(0, s.get(at..)?)?;
            if nul > MAX_HEADER_FIELD {
                return None;
            }
            at += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = s.get(at..at + 2)?;
        let mut crc = Crc::new();
        crc.update(&s[..at]);
        if crc.sum() as u16 != u16::from_le_bytes([stored[0], stored[1]]) {
            return None;
        }
        at += 2;
    }
    *input = &s[at..];
    Some(())
}

/// A gzip member's trailer: the CRC-32 and length (mod 2^32) of what the member decoded to.
fn gz_trailer_matches(t: &[u8], out: &[u8]) -> bool {
    let mut crc = Crc::new();
    crc.update(out);
    u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == crc.sum()
        && u32::from_le_bytes([t[4], t[5], t[6], t[7]]) == out.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_body_damaged_near_its_end_keeps_what_inflated_before_the_damage() {
        // a damaged tail must not hide the body from inspection (a 32 KiB-round decoder kept
        // only the rounds before the failing one; here one call inflates it all)
        let data = text(100_000);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        let mut failed = 0;
        for k in 0..64usize {
            let mut t = z.clone();
            let at = z.len() * 3 / 4 + k;
            for (i, b) in t[at..at + 6].iter_mut().enumerate() {
                *b = (k as u8).wrapping_mul(37).wrapping_add(i as u8 * 91);
            }
            let out = decoded("gzip", &t, 1 << 20).expect("three quarters of the body inflated");
            if out != data {
                failed += 1;
                assert!(
                    out.len() >= data.len() / 2,
                    "damage at {at} kept only {} bytes",
                    out.len()
                );
                assert_eq!(out[..data.len() / 2], data[..data.len() / 2]);
            }
        }
        assert!(failed > 0, "no damage made the stream fail: the test tests nothing");
    }

    #[test]
    fn gzip_round_trip_and_bomb_is_capped() {
        match decode("gzip", &gz(b"{\"a\":1}"), 1024) {
            Decoded::Done(v) => assert_eq!(v, b"{\"a\":1}"),
            _ => panic!(),
        }
        let bomb = gz(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        match decode("gzip", &bomb, 64 << 10) {
            Decoded::Done(v) => assert_eq!(v.len(), 64 << 10),
            _ => panic!(),
        }
        assert!(matches!(decode("gzip", b"not gzip at all", 1024), Decoded::Failed));
        assert!(matches!(decode("br", b"x", 1024), Decoded::NotEncoded));
    }

    /// The decoder before the scratch buffer: the same stream read by `read_to_end` into a
    /// fresh vector (through `Take`), the output kept when a later read fails.
    fn reference(encoding: &str, input: &[u8], cap: usize) -> Option<Vec<u8>> {
        fn run(r: impl Read, cap: usize) -> Option<Vec<u8>> {
            let mut out = Vec::new();
            match r.take(cap as u64).read_to_end(&mut out) {
                Ok(_) => Some(out),
                Err(_) if !out.is_empty() => Some(out),
                Err(_) => None,
            }
        }
        if encoding == "gzip" {
            run(flate2::read::MultiGzDecoder::new(input), cap)
        } else if input.first().is_some_and(|b| b & 0x0f == 8) {
            run(flate2::read::ZlibDecoder::new(input), cap)
        } else {
            run(flate2::read::DeflateDecoder::new(input), cap)
        }
    }

    fn decoded(encoding: &str, input: &[u8], cap: usize) -> Option<Vec<u8>> {
        match decode(encoding, input, cap) {
            Decoded::Done(v) => Some(v),
            Decoded::Failed => None,
            Decoded::NotEncoded => panic!("{encoding} is an encoding"),
        }
    }

    /// JSON-ish text that compresses like an API body (xorshift words, the same every run).
    fn text(len: usize) -> Vec<u8> {
        let words = [
            &b"alpha"[..],
            b"\"beta\":",
            b"gamma,",
            b"{\"id\":42}",
            b" ",
            b"token",
            b"\n",
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        }
        out.truncate(len);
        out
    }

    /// (encoding, stream, what it decodes to)
    fn streams(data: &[u8]) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(data).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        raw.write_all(data).unwrap();
        let mut multi = gz(b"{\"a\":1}");
        multi.extend(gz(data));
        let two = [&b"{\"a\":1}"[..], data].concat();
        vec![
            ("gzip", gz(data), data.to_vec()),
            ("gzip", multi, two),
            ("deflate", zl.finish().unwrap(), data.to_vec()),
            ("deflate", raw.finish().unwrap(), data.to_vec()),
        ]
    }

    #[test]
    fn scratch_decoding_equals_read_to_end_on_whole_and_cut_streams() {
        // whole streams and every prefix (a body cut by body_depth or a capture gap), under
        // caps below, at and above the decoded size and across the scratch's first size
        for len in [0, 1, 700, 5000, 70_000] {
            let data = text(len);
            for (enc, s, whole) in streams(&data) {
                let step = (s.len() / 600).max(1);
                for cut in (0..=s.len()).step_by(step).chain([s.len()]) {
                    for cap in [0, 1, 100, 4096, 64 << 10, 100 << 10] {
                        let input = &s[..cut];
                        assert_eq!(
                            decoded(enc, input, cap),
                            reference(enc, input, cap),
                            "{enc} len {len} cut {cut} cap {cap}"
                        );
                    }
                }
                assert_eq!(decoded(enc, &s, 1 << 20), Some(whole), "{enc} {len}");
            }
        }
    }

    #[test]
    fn a_gzip_length_that_lies_changes_nothing_decoded() {
        // the trailer's length only sizes the first output vector: any value decodes the same
        for len in [0, 1, 700, 5000, 70_000] {
            let data = text(len);
            let z = gz(&data);
            let n = z.len();
            for size in [
                0,
                1,
                len.saturating_sub(1),
                len,
                len + 1,
                (64 << 10) - ROOM_PAST_END,
                65535,
                65536,
                1 << 20,
                u32::MAX as usize,
            ] {
                let mut t = z.clone();
                t[n - 4..].copy_from_slice(&(size as u32).to_le_bytes());
                for cap in [1, 100, 4096, 64 << 10, 100 << 10] {
                    let got = decoded("gzip", &t, cap);
                    assert_eq!(got, reference("gzip", &t, cap), "len {len} size {size} cap {cap}");
                    assert_eq!(
                        got,
                        bufread_reference("gzip", &t, cap),
                        "len {len} size {size} cap {cap}"
                    );
                }
            }
            // the true length: the whole output fits the first vector, which is not trimmed
            let v = decoded("gzip", &z, 1 << 20).expect("decodes");
            assert_eq!(v, data);
            assert_eq!(first_capacity(Kind::Gzip, &z, 1 << 20), len + ROOM_PAST_END);
        }
    }

    #[test]
    fn scratch_grows_to_a_cap_above_its_first_size_and_a_later_smaller_cap_still_caps() {
        let data = text(300 << 10);
        let z = gz(&data);
        assert_eq!(decoded("gzip", &z, 200 << 10).as_deref(), Some(&data[..200 << 10]));
        assert_eq!(decoded("gzip", &z, 1 << 20).as_deref(), Some(&data[..]));
        assert_eq!(decoded("gzip", &z, 10).as_deref(), Some(&data[..10]));
        assert_eq!(decoded("gzip", &z, 0).as_deref(), Some(&[][..]));
    }

    #[test]
    fn a_gzip_body_with_a_wrong_checksum_keeps_what_it_decoded() {
        let data = text(3000);
        let mut z = gz(&data);
        let n = z.len();
        z[n - 8] ^= 1; // CRC32 of the trailer
        assert_eq!(decoded("gzip", &z, 64 << 10).as_deref(), Some(&data[..]));
        assert_eq!(decoded("gzip", &z, 64 << 10), reference("gzip", &z, 64 << 10));
        // a header that is not gzip decodes nothing
        z[0] = 0;
        assert_eq!(decoded("gzip", &z, 64 << 10), None);
    }

    #[test]
    fn corrupt_streams_never_panic_or_exceed_the_cap() {
        // hostile bytes anywhere in the stream: what a corrupt stream keeps depends on where
        // its decoder notices (see `read_capped`), but it never panics or exceeds the cap
        let data = text(6000);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for (enc, s, _) in streams(&data) {
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut t = s.clone();
                let at = (x % t.len() as u64) as usize;
                t[at] ^= (x >> 32) as u8 | 1;
                for cap in [100, 64 << 10] {
                    if let Some(v) = decoded(enc, &t, cap) {
                        assert!(v.len() <= cap, "{enc} at {at}");
                    }
                }
            }
        }
    }

    /// The decoder of the commit before the reused states: flate2's `bufread` readers over the
    /// body, read into a fresh buffer of `cap` bytes (each read's dst the rest of the buffer).
    fn bufread_reference(encoding: &str, input: &[u8], cap: usize) -> Option<Vec<u8>> {
        fn run(mut r: impl Read, cap: usize) -> Option<Vec<u8>> {
            let mut buf = vec![0u8; cap.max(SCRATCH_START)];
            let mut n = 0;
            let failed = loop {
                if n == cap {
                    break false;
                }
                if n == buf.len() {
                    let grown = buf.len().saturating_mul(2).min(cap);
                    buf.resize(grown, 0);
                }
                let end = buf.len().min(cap);
                match r.read(&mut buf[n..end]) {
                    Ok(0) => break false,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            (!failed || n > 0).then(|| buf[..n].to_vec())
        }
        if encoding == "gzip" {
            run(flate2::bufread::MultiGzDecoder::new(input), cap)
        } else if input.first().is_some_and(|b| b & 0x0f == 8) {
            run(flate2::bufread::ZlibDecoder::new(input), cap)
        } else {
            run(flate2::bufread::DeflateDecoder::new(input), cap)
        }
    }

    /// gzip members with every optional header field, the header CRC set by hand (flate2's
    /// builder does not write one), and members after each other with and without garbage
    fn gzip_variants(data: &[u8]) -> Vec<Vec<u8>> {
        let mut e = flate2::GzBuilder::new()
            .filename("body.json")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4, 5])
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        let full = e.finish().unwrap();
        // FHCRC: the CRC-16 of the header fields goes right before the deflate data
        let hdr_len = 10 + 2 + 5 + "body.json".len() + 1 + "a comment".len() + 1;
        let mut hcrc = full.clone();
        hcrc[3] |= FHCRC;
        let mut c = Crc::new();
        c.update(&hcrc[..hdr_len]);
        let sum = (c.sum() as u16).to_le_bytes();
        hcrc.splice(hdr_len..hdr_len, sum);
        let mut bad_hcrc = hcrc.clone();
        bad_hcrc[hdr_len] ^= 1;
        let mut garbage_after = gz(data);
        garbage_after.extend_from_slice(b"trailing junk");
        let mut three = gz(b"");
        three.extend(full.clone());
        three.extend(gz(b"{\"b\":2}"));
        let mut long_name = vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 3];
        long_name.extend(std::iter::repeat_n(b'n', MAX_HEADER_FIELD + 1));
        long_name.push(0);
        long_name.extend_from_slice(&gz(data)[10..]);
        vec![full, hcrc, bad_hcrc, garbage_after, three, long_name]
    }

    #[test]
    fn reused_inflate_states_decode_as_flate2_readers_and_keep_at_least_their_prefix_of_damage() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for len in [0, 900, 20_000] {
            let data = text(len);
            let mut all: Vec<(&str, Vec<u8>)> = streams(&data).into_iter().map(|(e, s, _)| (e, s)).collect();
            all.extend(gzip_variants(&data).into_iter().map(|s| ("gzip", s)));
            for (enc, s) in all {
                let mut cases = vec![s.clone()];
                let step = (s.len() / 300).max(1);
                cases.extend((0..s.len()).step_by(step).map(|cut| s[..cut].to_vec()));
                let exact = cases.len(); // the whole stream and its cuts; then damaged copies
                for _ in 0..200 {
                    let mut t = s.clone();
                    let at = rnd(t.len());
                    t[at] ^= 1 << rnd(8);
                    if rnd(2) == 0 {
                        let at2 = rnd(t.len());
                        t[at2] = rnd(256) as u8;
                    }
                    cases.push(t);
                }
                for (i, c) in cases.iter().enumerate() {
                    for cap in [7, 4096, 64 << 10, 100 << 10] {
                        let (new, old) = (decoded(enc, c, cap), bufread_reference(enc, c, cap));
                        if i < exact {
                            assert_eq!(new, old, "{enc} len {len} case {i} cap {cap}");
                        } else {
                            // damaged: all the reader kept, and perhaps the inflated bytes of
                            // the call that saw the damage, which the reader drops
                            let kept_all = match (&new, &old) {
                                (_, None) => true,
                                (Some(n), Some(o)) => n.starts_with(o),
                                (None, Some(_)) => false,
                            };
                            assert!(kept_all, "{enc} len {len} case {i} cap {cap}: {new:?} lost {old:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gzip_header_fields_and_members_decode_or_fail_as_flate2_reads_them() {
        let data = text(2000);
        let v = gzip_variants(&data);
        let ok = |s: &[u8]| decoded("gzip", s, 1 << 20);
        assert_eq!(ok(&v[0]).as_deref(), Some(&data[..]), "name, comment, extra");
        assert_eq!(ok(&v[1]).as_deref(), Some(&data[..]), "header CRC");
        assert_eq!(ok(&v[2]), None, "a wrong header CRC");
        assert_eq!(
            ok(&v[3]).as_deref(),
            Some(&data[..]),
            "junk after a member keeps the member"
        );
        assert_eq!(ok(&v[4]), Some([&data[..], b"{\"b\":2}"].concat()), "three members");
        assert_eq!(ok(&v[5]), None, "a name over 64 KiB");
        // a wrong trailer stops at its member when another follows; on an empty output it fails
        let first = gz(b"");
        let mut middle = [first.clone(), gz(&data), gz(b"{}")].concat();
        let at = first.len() + gz(&data).len() - 8;
        middle[at] ^= 1;
        assert_eq!(ok(&middle).as_deref(), Some(&data[..]), "bad CRC of a middle member");
        let mut empty = first;
        let n = empty.len();
        empty[n - 1] ^= 1;
        assert_eq!(ok(&empty), None, "an empty member with a wrong length");
        assert_eq!(ok(&gz(b"")).as_deref(), Some(&[][..]), "an empty member");
    }
}
