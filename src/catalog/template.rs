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

#[cfg(test)]
fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `b.len() == 36`, a `-` at bytes 8, 13, 18 and 23, and every part between `-`s non-empty
/// hex (what `split('-').all(is_hex)` says), for a segment whose bytes are all in the classes
/// `all`: every byte hex or `-` is told by the classes, and with those four `-` alone the
/// parts are 8, 4, 4, 4 and 12 hex digits; the split is taken only when another `-` stands
/// elsewhere (a part may then be empty). The split's searcher cost some 500 instructions per
/// UUID (a path segment, a JSON string). Held to the split by `uuid_like_is_the_split_test`.
fn uuid_like(b: &[u8], all: u8) -> bool {
    if b.len() != 36 || all & HEX_DASH == 0 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return false;
    }
    b.iter().filter(|c| **c == b'-').count() == 4 || b.split(|c| *c == b'-').all(|p| !p.is_empty())
}

/// Byte classes for [`classify`], read in one pass over a segment.
const DIGIT: u8 = 1;
const HEX: u8 = 2;
/// `[A-Za-z0-9_-]`
const TOK: u8 = 4;
const ALPHA: u8 = 8;
/// `@` or `%`
const AT: u8 = 16;
/// A hex digit or `-`
const HEX_DASH: u8 = 32;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut k = 0;
        if c.is_ascii_digit() {
            k |= DIGIT | HEX | TOK;
        }
        if c.is_ascii_hexdigit() {
            k |= HEX;
        }
        if c.is_ascii_alphabetic() {
            k |= ALPHA | TOK;
        }
        if c == b'_' || c == b'-' {
            k |= TOK;
        }
        if c == b'@' || c == b'%' {
            k |= AT;
        }
        if c.is_ascii_hexdigit() || c == b'-' {
            k |= HEX_DASH;
        }
        t[i] = k;
        i += 1;
    }
    t
};

/// The parameter type of one path segment, or `None` for a literal.
pub fn classify(seg: &str) -> Option<ParamKind> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= 3 && (b[0] == b'v' || b[0] == b'V') && b.len() > 1 && b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // what every byte is (`all`) and what some byte is (`any`)
    let (all, any) = b.iter().fold((0xffu8, 0u8), |(all, any), c| {
        let k = CLASS[*c as usize];
        (all & k, any | k)
    });
    classify_with(seg, all, any)
}

/// [`classify`] of a segment whose byte classes are known: `all`, the classes every byte is
/// in; `any`, those some byte is in.
fn classify_with(seg: &str, all: u8, any: u8) -> Option<ParamKind> {
    let b = seg.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b.len() <= 3 && (b[0] == b'v' || b[0] == b'V') && b.len() > 1 && b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let all_hex = all & HEX != 0;
    if b.len() <= 19 && all & DIGIT != 0 {
        return Some(ParamKind::Integer);
    }
    if uuid_like(b, all) {
        return Some(ParamKind::Uuid);
    }
    if b.len() == 24 && all_hex {
        return Some(ParamKind::ObjectId);
    }
    if b.len() >= 16 && all_hex && any & DIGIT != 0 {
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
    // (`%40` is the only encoding of `@` worth decoding; most segments have neither, and
    // without `@` or `%` there is no address to look for)
    if any & AT != 0 && (seg.contains('@') || seg.contains("%40")) {
        let decoded = seg.replace("%40", "@");
        if let Some((user, domain)) = decoded.split_once('@')
            && !user.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
        {
            return Some(ParamKind::Email);
        }
    }
    if b.len() >= 16 && all & TOK != 0 && any & DIGIT != 0 && any & ALPHA != 0 {
        return Some(ParamKind::Token);
    }
    None
}

/// [`classify_with`]'s answer for the two segments an API path is made of besides words, when
/// `seg` is one: an id (all digits) or a version (`v1`); None to ask it. Settled here without
/// the call (a version holds a letter, so it is never all digits: the order of the two tests
/// does not matter). `seg` is not empty.
#[inline(always)]
fn classify_common(seg: &[u8], all: u8) -> Option<Option<ParamKind>> {
    if seg.len() <= 19 && all & DIGIT != 0 {
        return Some(Some(ParamKind::Integer));
    }
    if seg.len() <= 3 && seg.len() > 1 && (seg[0] == b'v' || seg[0] == b'V') && seg[1..].iter().all(u8::is_ascii_digit)
    {
        return Some(None);
    }
    None
}

/// The rule-based template of a path (query and fragment removed), and its parameters.
pub fn template(path: &str) -> (String, Vec<ParamKind>) {
    let mut params = Vec::new();
    let out = template_with(path, |k| params.push(k));
    (out, params)
}

/// The rule-based template of a path (query and fragment removed).
pub fn template_path(path: &str) -> String {
    template_with(path, |_| {})
}

/// [`template_path`] of a path known to hold no `?` or `#` (what
/// [`crate::util::target_path`] returns): the same template, without looking for them.
#[cfg(test)]
pub(crate) fn template_clean_path(path: &str) -> String {
    template_segments(path, |_| {})
}

/// [`template_clean_path`] appended to `out`.
pub(crate) fn template_clean_path_into(path: &str, out: &mut String) {
    template_segments_into(path, |_| {}, out)
}

/// The template, telling `param` each parameter in order. Bytes, not chars: `/`, `?` and `#`
/// are ASCII, so a segment's bounds are character boundaries.
fn template_with(path: &str, param: impl FnMut(ParamKind)) -> String {
    let b = path.as_bytes();
    template_segments(
        &path[..b.iter().position(|c| *c == b'?' || *c == b'#').unwrap_or(b.len())],
        param,
    )
}

/// The template of a path already cut before any `?` or `#`.
fn template_segments(path: &str, param: impl FnMut(ParamKind)) -> String {
    // (a parameter name can be longer than its segment, `/1` -> `/{id}`: room for that)
    let mut out = String::with_capacity(path.len() + 8);
    template_segments_into(path, param, &mut out);
    out
}

/// [`template_segments`] appended to `out`.
fn template_segments_into(path: &str, mut param: impl FnMut(ParamKind), out: &mut String) {
    let start = out.len();
    let b = path.as_bytes();
    // (paths are short: a byte loop beats a vector search's setup)
    let slash = |from: usize| b[from..].iter().position(|c| *c == b'/').map(|j| from + j);
    // the next `/` at or after `from`, and the classes of the bytes before it (one pass)
    let segment = |from: usize| {
        let (mut all, mut any) = (0xffu8, 0u8);
        for (j, c) in b[from..].iter().enumerate() {
            if *c == b'/' {
                return (Some(from + j), all, any);
            }
            let k = CLASS[*c as usize];
            all &= k;
            any |= k;
        }
        (None, all, any)
    };
    // parameters of each kind so far (the second `{id}` is `{id2}`)
    let mut seen = [0usize; 8];
    // as `path.split('/').skip(1)`: the segments after each `/`
    let mut at = slash(0);
    // A literal segment comes out as its `/` and its bytes, as in the path: a run of them is
    // copied at once when a parameter (or the end) comes, not segment by segment.
    let mut run = at.unwrap_or(b.len());
    while let Some(i) = at {
        let (next, all, any) = segment(i + 1);
        let end = next.unwrap_or(b.len());
        // (without a digit, `@` or `%`, only a 24- or 36-byte segment can be a parameter: a
        // hex object id or a UUID; most literal segments are settled here, without the call)
        let maybe = any & (DIGIT | AT) != 0 || matches!(end - i - 1, 24 | 36);
        if maybe
            && let Some(k) =
                classify_common(&b[i + 1..end], all).unwrap_or_else(|| classify_with(&path[i + 1..end], all, any))
        {
            out.push_str(&path[run..i]);
            run = end;
            let n = &mut seen[k as usize];
            param(k);
            out.push_str("/{");
            out.push_str(k.name());
            if *n > 0 {
                out.push_str(itoa::Buffer::new().format(*n + 1));
            }
            *n += 1;
            out.push('}');
        }
        at = next;
    }
    out.push_str(&path[run..]);
    if out.len() == start {
        out.push('/');
    }
}

/// The template as it was built before literal runs were copied whole (segment by segment):
/// the reference the equivalence test holds [`template_segments`] to.
#[cfg(test)]
fn template_segments_reference(path: &str) -> String {
    let mut out = String::new();
    let mut seen = [0usize; 8];
    for seg in path.split('/').skip(1) {
        out.push('/');
        let (mut all, mut any) = (0xffu8, 0u8);
        for c in seg.bytes() {
            all &= CLASS[c as usize];
            any |= CLASS[c as usize];
        }
        match classify_with(seg, all, any) {
            Some(k) => {
                let n = &mut seen[k as usize];
                out.push('{');
                out.push_str(k.name());
                if *n > 0 {
                    out.push_str(&(*n + 1).to_string());
                }
                *n += 1;
                out.push('}');
            }
            None => out.push_str(seg),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
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

    /// The one-pass UUID test answers as the split on `-` did, for every byte at every place
    /// of UUID-like texts, extra dashes at random, and lengths around 36.
    #[test]
    fn uuid_like_is_the_split_test() {
        let split = |s: &str| {
            let b = s.as_bytes();
            b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') && s.split('-').all(is_hex)
        };
        let all_of = |s: &str| s.bytes().fold(0xffu8, |a, c| a & CLASS[c as usize]);
        let base = "0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01";
        let mut hits = 0;
        for at in 0..36 {
            for c in 0..=127u8 {
                let mut b = base.as_bytes().to_vec();
                b[at] = c;
                let s = String::from_utf8(b).expect("ascii");
                assert_eq!(uuid_like(s.as_bytes(), all_of(&s)), split(&s), "{s:?}");
                hits += split(&s) as usize;
            }
        }
        assert!(hits > 36 * 20, "{hits}");
        let mut seed = 0x1234_5678_9abc_def1u64;
        let alphabet = b"0123456789abcdefABCDEFg-x\xc3";
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = 34 + (seed % 5) as usize;
            let mut b: Vec<u8> = (0..len)
                .map(|i| {
                    let r = (seed >> (i % 50)) as usize ^ i.wrapping_mul(2654435761);
                    // the four places mostly `-`, elsewhere now and then
                    if (matches!(i, 8 | 13 | 18 | 23) && !r.is_multiple_of(8)) || r.is_multiple_of(11) {
                        b'-'
                    } else {
                        alphabet[r % 22]
                    }
                })
                .collect();
            if seed.is_multiple_of(3) && len > 20 {
                b[(seed as usize >> 8) % len] = alphabet[(seed as usize >> 16) % alphabet.len()];
            }
            let s = String::from_utf8_lossy(&b).into_owned();
            assert_eq!(uuid_like(s.as_bytes(), all_of(&s)), split(&s), "{s:?}");
        }
        for s in [
            "",
            "-",
            "aaaaaaaa-aaaa-aaaa-aaaa-aa-aaaaaaaaa",
            "aaaaaaaa-aaaa-aaaa-aaaa--aaaaaaaaaa",
            "-aaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
            "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaa-",
        ] {
            assert_eq!(uuid_like(s.as_bytes(), all_of(s)), split(s), "{s:?}");
        }
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

    /// The templating as written before it went byte-wise: `str::split` on the path.
    fn reference(path: &str) -> (String, Vec<ParamKind>) {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut out = String::new();
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
                        out.push_str(&(n + 1).to_string());
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

    #[test]
    fn template_matches_the_split_reference() {
        let mut paths: Vec<String> = [
            "",
            "/",
            "//",
            "///x//",
            "abc",
            "abc/def/12",
            "?/1",
            "#/1",
            "/a#b/1?c/2",
            "/a?b#c/1",
            "/1/2/3/4/5/6/7/8/9/10/11/12",
            "/users/7/orders/9/items/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01/x/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e02",
            "/caf\u{e9}/\u{e9}\u{e9}/1",
            "/\u{1f600}/?/\u{1f600}",
            "/api/v1/users/97118",
            "/api/V12/x",
            "/lookup/alice%40example.com/bob@mail.example/%40/@",
            "/t/aB3dE5fG7hJ9kL1mN3pQ/aB3dE5fG7hJ9kL1mN3pR/abcdefghijklmnop/1234567890123456789/12345678901234567890",
            "/h/507f1f77bcf86cd799439011/9f86d081884c7d659a2feaa0c55ad015/deadbeefdeadbeef/DEADBEEF00000000",
            "/d/2026-11-29/2026-11-29T10:00:00Z/2026-1-29",
            "/u/aaaaaaaa-aaaa-aaaa-aaaa-aa-aaaaaaaaa/g/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaag",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seed = 3u64;
        let alphabet = [
            "/", "/", "1", "a", "F", "-", "_", "@", "%40", ".", "?", "#", "v", "\u{e9}", "0",
        ];
        for _ in 0..5000 {
            let mut p = String::new();
            let n = seed % 40;
            for _ in 0..n {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                p.push_str(alphabet[((seed >> 33) % alphabet.len() as u64) as usize]);
            }
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            paths.push(p);
        }
        for p in &paths {
            let want = reference(p);
            assert_eq!(template(p), want, "{p:?}");
            assert_eq!(template_path(p), want.0, "{p:?}");
            let cut = crate::util::target_path(p);
            if p.starts_with('/') {
                assert_eq!(template_clean_path(cut), reference(cut).0, "{p:?}");
            }
        }
    }

    /// The segment classes read in one pass give the rules' answers, byte by byte.
    #[test]
    fn classify_agrees_with_the_rules_on_every_class_of_byte() {
        let rules = |seg: &str| -> Option<ParamKind> {
            let b = seg.as_bytes();
            if b.is_empty()
                || (b.len() <= 3
                    && (b[0] == b'v' || b[0] == b'V')
                    && b.len() > 1
                    && b[1..].iter().all(u8::is_ascii_digit))
            {
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
            let decoded = seg.replace("%40", "@");
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
        };
        for base in [
            "1234567890123456",
            "abcdef0123456789",
            "aB3dE5fG7hJ9kL1m",
            "507f1f77bcf86cd799439011",
            "v1",
            "12",
        ] {
            for c in 0..=127u8 {
                for at in [0, base.len() / 2, base.len() - 1] {
                    let mut b = base.as_bytes().to_vec();
                    b[at] = c;
                    let seg = String::from_utf8(b).expect("ascii");
                    assert_eq!(classify(&seg), rules(&seg), "{seg:?}");
                }
            }
            let with_e = format!("{base}\u{e9}");
            assert_eq!(classify(&with_e), rules(&with_e), "{with_e:?}");
        }
    }

    #[test]
    fn literal_runs_copied_whole_give_the_segmentwise_template() {
        for path in [
            "",
            "/",
            "//",
            "abc",
            "abc/def/42",
            "/api/v1/users/42",
            "/api/v1/users/42/orders/7/items",
            "/a//b///",
            "/1/2/3/4",
            "/orders/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01/x/507f1f77bcf86cd799439011",
            "/lookup/alice%40example.com/",
            "/r/2026-11-29/é/ü/12/€",
            "/t/aB3dE5fG7hJ9kL1m/aB3dE5fG7hJ9kL1n",
            "/\u{0}/\u{7f}/\\x/%00",
        ] {
            assert_eq!(
                template_segments(path, |_| {}),
                template_segments_reference(path),
                "{path:?}"
            );
        }
        // every byte pattern over a small alphabet, incl. empty segments and digits
        for b in every_text(&[b'/', b'1', b'a', b'-', 0xc3], 0..=6) {
            let s = String::from_utf8_lossy(&b).into_owned();
            assert_eq!(template_segments(&s, |_| {}), template_segments_reference(&s), "{s:?}");
        }
    }

    #[test]
    fn segments_without_digit_or_at_are_literal_unless_24_or_36_long() {
        // the prefilter in `template_segments`: classify agrees on every such segment
        let letters = b"abcdefxyzABCFZ-_.~!$&'()*+,;=:";
        for len in 0..=40usize {
            for start in 0..letters.len() {
                let seg: String = (0..len)
                    .map(|j| letters[(start + j * 7) % letters.len()] as char)
                    .collect();
                if len != 24 && len != 36 {
                    assert_eq!(classify(&seg), None, "{seg:?}");
                }
                assert_eq!(
                    template_segments(&format!("/{seg}"), |_| {}),
                    template_segments_reference(&format!("/{seg}"))
                );
            }
        }
        // digit-free parameters exist only at those lengths, and stay parameters
        assert_eq!(template("/x/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee").0, "/x/{uuid}");
        assert_eq!(template("/x/abcdefabcdefabcdefabcdef").0, "/x/{objectId}");
        assert_eq!(template("/x/abcdefabcdefabcdefabcde").0, "/x/abcdefabcdefabcdefabcde");
    }

    /// The id and version answers settled before the call are the call's, for every segment
    /// of up to 4 bytes over digits, `v`, `V`, letters and `-`, and for digit runs around 19
    /// bytes long.
    /// Every text of `lens` bytes over `alpha`.
    fn every_text(alpha: &[u8], lens: std::ops::RangeInclusive<u32>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for n in lens {
            for mut code in 0..alpha.len().pow(n) {
                let mut b = Vec::new();
                for _ in 0..n {
                    b.push(alpha[code % alpha.len()]);
                    code /= alpha.len();
                }
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn ids_and_versions_settled_inline_are_what_classify_says() {
        let mut segs = every_text(&[b'0', b'7', b'v', b'V', b'a', b'-', b'@'], 1..=4);
        for n in 17..=21 {
            segs.push(vec![b'9'; n]);
        }
        let mut settled = 0;
        for seg in &segs {
            let s = std::str::from_utf8(seg).expect("ascii");
            let (mut all, mut any) = (0xffu8, 0u8);
            for c in seg {
                all &= CLASS[*c as usize];
                any |= CLASS[*c as usize];
            }
            if let Some(k) = classify_common(seg, all) {
                settled += 1;
                assert_eq!(k, classify_with(s, all, any), "{s:?}");
                assert_eq!(k, classify(s), "{s:?}");
            }
        }
        assert!(settled >= 45, "{settled}");
    }
}
