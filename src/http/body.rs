//! Bounded decoding of content-encoded bodies for inspection.
//!
//! Only the inspected prefix of a body (at most `body_depth` bytes) is decoded, and the output
//! is capped at `cap` bytes: a decompression bomb costs at most `cap` bytes of memory and the
//! work to produce them. A prefix cut mid-stream decodes as far as it goes.

use std::io::Read;

pub enum Decoded {
    NotEncoded,
    Done(Vec<u8>),
    Failed,
}

pub fn decode(encoding: &str, input: &[u8], cap: usize) -> Decoded {
    let enc = encoding.trim();
    let out = if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") {
        read_capped(flate2::read::MultiGzDecoder::new(input), cap)
    } else if enc.eq_ignore_ascii_case("deflate") {
        // "deflate" is zlib-wrapped per RFC 9110, but raw deflate is common in the wild.
        if input.first().is_some_and(|b| b & 0x0f == 8) {
            read_capped(flate2::read::ZlibDecoder::new(input), cap)
        } else {
            read_capped(flate2::read::DeflateDecoder::new(input), cap)
        }
    } else {
        return Decoded::NotEncoded;
    };
    match out {
        Some(v) => Decoded::Done(v),
        None => Decoded::Failed,
    }
}

/// Read up to `cap` bytes; a stream that fails after producing output keeps what it produced
/// (a body prefix cut mid-stream), one that fails at once is `None`.
fn read_capped(r: impl Read, cap: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut lim = r.take(cap as u64);
    match lim.read_to_end(&mut out) {
        Ok(_) => Some(out),
        Err(_) if !out.is_empty() => Some(out),
        Err(_) => None,
    }
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
}
