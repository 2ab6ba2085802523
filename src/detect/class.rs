//! What kinds of bytes a value holds, in one table pass: the classifiers' cheap prefilters.
//! Each bit says "some byte of this kind is present"; a clear bit proves absence, which is
//! what lets a value skip work (normalizing, the injection patterns, the SSRF parse) with the
//! same answer the work would give. Pure functions of the bytes, nothing cached.

/// `%` or `+` (percent-decoding or the form space would change the value).
pub const ESCAPE: u16 = 1;
/// `A`..=`Z` (lowercasing would change the value).
pub const UPPER: u16 = 1 << 1;
/// A byte >= 0x80 (part of a non-ASCII character).
pub const NON_ASCII: u16 = 1 << 2;
/// Outside [`super::payload::inert`]'s set: ASCII letters, digits, `._-@:+`.
pub const NOT_INERT: u16 = 1 << 3;
/// Outside [`super::payload::words`]'s ASCII set: letters, ` .,'-`.
pub const NOT_WORDS: u16 = 1 << 4;
/// Outside `a-z 0-9 / . _ -`: a value made only of those can match an injection pattern only
/// through one of a few literals (see `payload::needs_a_literal`).
pub const NOT_PLAIN_PATH: u16 = 1 << 5;

/// `:`, `.` or `[`: a URL or host needs one (see [`super::ssrf::may_target_classed`]).
pub const TARGET: u16 = 1 << 6;

/// What [`super::normalize`] changes: nothing when none of these bits is set.
pub const NORMALIZES: u16 = ESCAPE | UPPER | NON_ASCII;

const fn table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b == b'%' || b == b'+' {
            c |= ESCAPE;
        }
        if b.is_ascii_uppercase() {
            c |= UPPER;
        }
        if b >= 0x80 {
            c |= NON_ASCII;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':' | b'+')) {
            c |= NOT_INERT;
        }
        if !(b.is_ascii_alphabetic() || matches!(b, b' ' | b'.' | b',' | b'\'' | b'-')) {
            c |= NOT_WORDS;
        }
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'/' | b'.' | b'_' | b'-')) {
            c |= NOT_PLAIN_PATH;
        }
        if matches!(b, b':' | b'.' | b'[') {
            c |= TARGET;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u16; 256] = table();

/// The union of the classes of every byte of `s`.
pub fn of(s: &[u8]) -> u16 {
    let mut c = 0;
    // four lookups per step: no branch per byte
    let mut chunks = s.chunks_exact(4);
    for q in &mut chunks {
        c |= TABLE[q[0] as usize] | TABLE[q[1] as usize] | TABLE[q[2] as usize] | TABLE[q[3] as usize];
    }
    for &b in chunks.remainder() {
        c |= TABLE[b as usize];
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_bits_are_the_byte_kinds_they_name() {
        for b in 0..=255u8 {
            let c = of(&[b]);
            assert_eq!(c & ESCAPE != 0, b == b'%' || b == b'+', "{b}");
            assert_eq!(c & UPPER != 0, b.is_ascii_uppercase(), "{b}");
            assert_eq!(c & NON_ASCII != 0, !b.is_ascii(), "{b}");
            assert_eq!(
                c & NOT_INERT != 0,
                !(b.is_ascii_alphanumeric() || b"._-@:+".contains(&b)),
                "{b}"
            );
            assert_eq!(
                c & NOT_WORDS != 0,
                !(b.is_ascii_alphabetic() || b" .,'-".contains(&b)),
                "{b}"
            );
            assert_eq!(c & TARGET != 0, b":.[".contains(&b), "{b}");
            assert_eq!(
                c & NOT_PLAIN_PATH != 0,
                !(b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b)),
                "{b}"
            );
        }
    }

    #[test]
    fn class_of_a_value_is_the_union_of_its_bytes_at_every_length() {
        // every length around the four-byte steps, the odd byte at every position
        for len in 0..12 {
            for at in 0..len {
                let mut v = vec![b'A'; len];
                v[at] = b'%';
                let others = if len > 1 { of(b"A") } else { 0 };
                assert_eq!(of(&v), others | of(b"%"), "{len} {at}");
                v[at] = 0xc3;
                assert_ne!(of(&v) & NON_ASCII, 0);
            }
            assert_eq!(of(&vec![b'A'; len]), if len == 0 { 0 } else { UPPER | NOT_PLAIN_PATH });
        }
    }
}
