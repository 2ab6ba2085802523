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
    let textual = m.header("content-type").is_none_or(|ct| {
        let ct: std::borrow::Cow<'_, str> = if ct.bytes().any(|b| b.is_ascii_uppercase()) {
            ct.to_ascii_lowercase().into()
        } else {
            ct.into()
        };
        ["json", "text", "xml", "csv", "form", "javascript"]
            .iter()
            .any(|t| crate::util::contains_short(ct.as_bytes(), t.as_bytes()))
    });
    if !textual {
        return BTreeSet::new();
    }
    scan(&m.body[..m.body.len().min(SCAN_CAP)])
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
pub fn scan(body: &[u8]) -> BTreeSet<Sensitive> {
    let mut found = BTreeSet::new();
    let n = body.len();
    let mut i = 0;
    while i < n {
        let c = body[i];
        // Inside a word only an '@' can start something; at a word start, only these bytes.
        if !STARTS[c as usize] || (c != b'@' && i > 0 && body[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
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
                if area != b"000"
                    && area != b"666"
                    && area[0] != b'9'
                    && &digits[3..5] != b"00"
                    && &digits[5..] != b"0000"
                {
                    found.insert(Sensitive::UsSsn);
                }
            }
            if i > 0 && body[i - 1] == b'+' && (10..=15).contains(&digits.len()) && bounded {
                found.insert(Sensitive::Phone);
            }
            i = e.max(i + 1);
            continue;
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
            i = e;
            continue;
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
            if key_like(b"sk_live_", 16)
                || key_like(b"rk_live_", 16)
                || key_like(b"ghp_", 30)
                || key_like(b"xoxb-", 20)
                || key_like(b"AIza", 30)
                || (rest.starts_with(b"AKIA")
                    && rest.len() >= 20
                    && rest[4..20].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
            {
                found.insert(Sensitive::ApiKey);
            }
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
