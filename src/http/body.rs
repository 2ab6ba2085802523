//! Bounded decoding of content-encoded bodies for inspection.
//!
//! Only the inspected prefix of a body (at most `body_depth` bytes) is decoded, and the output
//! is capped at `cap` bytes: a decompression bomb costs at most `cap` bytes of memory and the
//! work to produce them. A prefix cut mid-stream decodes as far as it goes.
//!
//! The decoders read the body slice directly (`flate2::bufread`: no 32 KiB copy buffer per
//! body) into a per-thread scratch buffer that is zeroed once and reused, and only the decoded
//! bytes are copied out (no growing output vector per body, zeroed and copied at every doubling).

use std::cell::RefCell;
use std::io::{ErrorKind, Read};

pub enum Decoded {
    NotEncoded,
    Done(Vec<u8>),
    Failed,
}

pub fn decode(encoding: &str, input: &[u8], cap: usize) -> Decoded {
    let enc = encoding.trim();
    let out = if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        read_capped(flate2::bufread::MultiGzDecoder::new(input), cap)
    } else if enc.eq_ignore_ascii_case("deflate") {
        // "deflate" is zlib-wrapped per RFC 9110, but raw deflate is common in the wild.
        if input.first().is_some_and(|b| b & 0x0f == 8) {
            read_capped(flate2::bufread::ZlibDecoder::new(input), cap)
        } else {
            read_capped(flate2::bufread::DeflateDecoder::new(input), cap)
        }
    } else {
        return Decoded::NotEncoded;
    };
    match out {
        Some(v) => Decoded::Done(v),
        None => Decoded::Failed,
    }
}

thread_local! {
    /// Decoded bytes land here first; it grows (zeroed once) up to the largest `cap` asked on
    /// this thread and is kept: at most `cap` bytes per worker, the bound a body already had.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The first scratch size: most decoded bodies fit, and a larger one doubles up to `cap`.
const SCRATCH_START: usize = 64 << 10;

/// Read up to `cap` bytes; a stream that fails after producing output keeps what it produced
/// (a body prefix cut mid-stream), one that fails at once is `None`. A read that fails keeps
/// none of its own output (as `read_to_end` did). Whole and cut streams decode exactly as with
/// miniz_oxide; a stream corrupt inside its deflate data may keep less or more: zlib-rs hands
/// out all it decoded in one read, so such a body now usually fails whole (an anomaly) where
/// miniz_oxide's 32 KiB rounds sometimes kept a prefix, or kept nothing where this keeps one.
fn read_capped(mut r: impl Read, cap: usize) -> Option<Vec<u8>> {
    SCRATCH.with_borrow_mut(|buf| {
        let mut n = 0;
        let failed = loop {
            if n == cap {
                break false;
            }
            if n == buf.len() {
                let grown = buf.len().saturating_mul(2).max(SCRATCH_START).min(cap);
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
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
}
