//! Path templating: which path segments are parameters.
//!
//! Rules, in order, for one segment (percent-encoded as on the wire):
//! - `v1`, `v2`, ... `v99` (API versions) stay literal;
//! - all digits (up to 19) -> `{id}` (integer);
//! - 8-4-4-4-12 hex -> `{uuid}`;
//! - 24 hex digits -> `{objectId}` (MongoDB ObjectId);
//! - 16 or more hex digits with at least one digit -> `{hex}`;
//! - `YYYY-MM-DD` (optionally with a time) -> `{date}`;
//! - something `@` something with a dot after it -> `{email}`;
//! - 16 or more characters of `[A-Za-z0-9_-]` mixing letters and digits -> `{token}`;
//! - anything else is a literal (words, slugs, file names).
//!
//! Positions that show many distinct literal values under the same prefix (user names) are
//! learned as `{param}` by the catalog (see `Catalog::endpoints`), not here.

/// The type of a path parameter, as OpenAPI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamKind {
    Integer,
    Uuid,
    ObjectId,
    Hex,
    Date,
    Email,
    Token,
    /// Learned from cardinality: a string.
    Word,
}

impl ParamKind {
    /// The placeholder name used in templates.
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Integer => "id",
            ParamKind::Uuid => "uuid",
            ParamKind::ObjectId => "objectId",
            ParamKind::Hex => "hex",
            ParamKind::Date => "date",
            ParamKind::Email => "email",
            ParamKind::Token => "token",
            ParamKind::Word => "param",
        }
    }

    /// OpenAPI (type, format).
    pub fn openapi(self) -> (&'static str, Option<&'static str>) {
        match self {
            ParamKind::Integer => ("integer", None),
            ParamKind::Uuid => ("string", Some("uuid")),
            ParamKind::Date => ("string", Some("date")),
            ParamKind::Email => ("string", Some("email")),
            _ => ("string", None),
        }
    }

    pub fn from_placeholder(p: &str) -> Option<ParamKind> {
        [
            ParamKind::Integer,
            ParamKind::Uuid,
            ParamKind::ObjectId,
            ParamKind::Hex,
            ParamKind::Date,
            ParamKind::Email,
            ParamKind::Token,
            ParamKind::Word,
        ]
        .into_iter()
        .find(|k| {
            p.strip_prefix('{')
                .and_then(|x| x.strip_suffix('}'))
                .is_some_and(|n| n.trim_end_matches(char::is_numeric) == k.name())
        })
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The parameter type of one path segment, or `None` for a literal.
pub fn classify(seg: &str) -> Option<ParamKind> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= 3 && (b[0] == b'v' || b[0] == b'V') && b.len() > 1 && b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        return Some(ParamKind::Integer);
    }
    if b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') && seg.split('-').all(is_hex) {
        return Some(ParamKind::Uuid);
    }
    if b.len() == 24 && is_hex(seg) {
        return Some(ParamKind::ObjectId);
    }
    if b.len() >= 16 && is_hex(seg) && b.iter().any(u8::is_ascii_digit) {
        return Some(ParamKind::Hex);
    }
    if b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
    {
        return Some(ParamKind::Date);
    }
    // (`%40` is the only encoding of `@` worth decoding; most segments have neither)
    let decoded = if memchr::memchr2(b'@', b'%', b).is_some() && (seg.contains('@') || seg.contains("%40")) {
        std::borrow::Cow::Owned(seg.replace("%40", "@"))
    } else {
        std::borrow::Cow::Borrowed("")
    };
    if let Some((user, domain)) = decoded.split_once('@')
        && !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
    {
        return Some(ParamKind::Email);
    }
    if b.len() >= 16
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
    {
        return Some(ParamKind::Token);
    }
    None
}

/// The rule-based template of a path (query and fragment removed), and its parameters.
pub fn template(path: &str) -> (String, Vec<ParamKind>) {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    let mut params = Vec::new();
    for seg in path.split('/').skip(1) {
        out.push('/');
        match classify(seg) {
            Some(k) => {
                let n = params.iter().filter(|p| **p == k).count();
                params.push(k);
                out.push('{');
                out.push_str(k.name());
                if n > 0 {
                    use std::fmt::Write;
                    let _ = write!(out, "{}", n + 1);
                }
                out.push('}');
            }
            None => out.push_str(seg),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    (out, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_become_typed_parameters() {
        assert_eq!(template("/api/v1/users/42").0, "/api/v1/users/{id}");
        assert_eq!(
            template("/orders/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01?x=1").0,
            "/orders/{uuid}"
        );
        assert_eq!(template("/u/507f1f77bcf86cd799439011").0, "/u/{objectId}");
        assert_eq!(template("/blob/9f86d081884c7d659a2feaa0c55ad015").0, "/blob/{hex}");
        assert_eq!(template("/reports/2026-11-29").0, "/reports/{date}");
        assert_eq!(template("/lookup/alice%40example.com").0, "/lookup/{email}");
        assert_eq!(template("/reset/aB3dE5fG7hJ9kL1mN3pQ").0, "/reset/{token}");
        assert_eq!(template("/users/7/orders/9").0, "/users/{id}/orders/{id2}");
        assert_eq!(template("/").0, "/");
        assert_eq!(template("").0, "/");
    }

    #[test]
    fn words_slugs_and_versions_stay_literal() {
        for s in [
            "users",
            "v2",
            "static",
            "app-64k.js",
            "index.html",
            "deadbeef",
            "main-menu",
            "favicon.ico",
        ] {
            assert_eq!(classify(s), None, "{s}");
        }
        assert_eq!(ParamKind::from_placeholder("{id2}"), Some(ParamKind::Integer));
        assert_eq!(ParamKind::from_placeholder("users"), None);
    }
}
