//! The crate side of the `handwritten` bench: each crate made to do exactly what the
//! hand-written helper does (same output on the same input), shared with
//! tests/handwritten_equivalence.rs which checks that it does.

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

/// EVE timestamp format, `time`'s description (the offset is literal: always UTC).
pub const TIME_FMT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+0000");

pub fn time_push(out: &mut Vec<u8>, ns: u64) {
    if let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128) {
        let _ = t.format_into(out, TIME_FMT);
    }
}

pub fn jiff_push(out: &mut Vec<u8>, ns: u64) {
    const P: jiff::fmt::temporal::DateTimePrinter = jiff::fmt::temporal::DateTimePrinter::new().precision(Some(6));
    if let Ok(t) = jiff::Timestamp::from_nanosecond(ns as i128) {
        let _ = P.print_datetime(&jiff::tz::Offset::UTC.to_datetime(t), &mut *out);
        out.extend_from_slice(b"+0000");
    }
}

/// `percent_decode_lossy` with the crate: `+` as a space first (the crate decodes `%` only).
pub fn pe_decode_plus(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('+') {
        percent_encoding::percent_decode_str(s).decode_utf8_lossy()
    } else {
        std::borrow::Cow::Owned(
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned(),
        )
    }
}

/// A glob as globset reads it with apitap's meaning: `*` and `?` cross `/`, everything else
/// literal (globset's `{a,b}`, `[ab]` and `\` escaped).
pub fn globset_glob(p: &str) -> globset::Glob {
    let mut s = String::with_capacity(p.len() * 2);
    for ch in p.chars() {
        if matches!(ch, '[' | ']' | '{' | '}' | '\\') {
            s.push('\\');
        }
        s.push(ch);
    }
    globset::GlobBuilder::new(&s)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .expect("escaped glob")
}

pub type Sip = BuildHasherDefault<DefaultHasher>;

/// hyperloglogplus' Flajolet HLL with 256 registers and apitap's hash (SipHash-1-3, zero key).
pub fn hllpf() -> hyperloglogplus::HyperLogLogPF<u64, Sip> {
    hyperloglogplus::HyperLogLogPF::new(8, Sip::default()).unwrap()
}

/// hyperloglogplus' HLL++ (sparse first) with 256 registers.
pub fn hllplus() -> hyperloglogplus::HyperLogLogPlus<u64, Sip> {
    hyperloglogplus::HyperLogLogPlus::new(8, Sip::default()).unwrap()
}

/// Cloudflare's estimator: exact while small, then HLL with 256 6-bit registers.
pub type Cardinality = cardinality_estimator::CardinalityEstimator<u64, DefaultHasher, 8, 6>;
