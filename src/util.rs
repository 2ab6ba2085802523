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

/// [`fmt_ts`] appended to a buffer.
pub fn push_ts(out: &mut Vec<u8>, ns: Ts) {
    // The date and time to the second, per thread, for the last second written: an event's
    // five timestamps, and the next events', mostly fall in the same second.
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 31])> = const { std::cell::Cell::new((u64::MAX, [0; 31])) };
    }
    let secs = ns / 1_000_000_000;
    let (s, mut b) = LAST.get();
    if s != secs {
        b = ts_bytes(ns);
        LAST.set((secs, b));
    }
    let mut micros = ((ns % 1_000_000_000) / 1000) as u32;
    for k in (20..26).rev() {
        b[k] = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&b);
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

/// [`ip_string`] appended to a buffer.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if o >= 100 {
                    out.push(b'0' + o / 100);
                }
                if o >= 10 {
                    out.push(b'0' + (o / 10) % 10);
                }
                out.push(b'0' + o % 10);
            }
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
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // bytes < 0x20 (bytes >= 0x80 set the high bit of w itself and are masked out by !w)
    let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64)) != 0
}

/// Might any byte of `b` need escaping? Eight bytes at a time, the tail padded with a
/// plain byte (no byte that needs it is missed; a rare false alarm takes the byte loop).
fn needs_any_escape(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        if word_needs_escape(u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))) {
            return true;
        }
    }
    let tail = words.remainder();
    let mut pad = [b'a'; 8];
    pad[..tail.len()].copy_from_slice(tail);
    word_needs_escape(u64::from_le_bytes(pad))
}

/// Does this byte need escaping in a JSON string (as serde_json escapes)?
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `s` as a JSON string (quotes included), escaped exactly as serde_json escapes: `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00XX`; everything else as is.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if !needs_any_escape(b) {
        // nearly every string: checked eight bytes at a time (the tail padded), copied whole
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // eight bytes at a time while none needs escaping (most strings: all of them)
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
    out.push(b'"');
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

/// `example.com:8080` -> (example.com, 8080); `[::1]:80` -> ([::1], 80).
pub fn split_host_port(h: &str) -> (Option<&str>, Option<u16>) {
    let h = h.trim();
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
