//! Secrets never leave the sensor in the clear.
//!
//! Credentials are either dropped or replaced by a keyed hash (`h:` + 16 hex digits of
//! HMAC-SHA256 under the sensor's key), so the same token maps to the same value in every event
//! (useful for linking an attacker's requests) without being recoverable. This covers the
//! Authorization and Proxy-Authorization headers, Cookie and Set-Cookie values, API-key headers,
//! and query parameters whose names say they hold a secret.

use std::borrow::Cow;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::http::Message;

/// Query/body parameter names whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "session_id",
    "sid",
    "jwt",
    "signature",
    "sig",
    "otp",
    "code",
    "x-api-key",
    "credentials",
    "private_key",
];

/// Headers carrying an API key or token (besides Authorization/Cookie).
const KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-auth-token",
    "x-access-token",
    "x-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
];

pub fn is_secret_param(name: &str) -> bool {
    // Most names are none of them, and say so by their length and first letter (a scan of
    // the list cost ~140 instructions per query parameter); the others are compared.
    let n = name.as_bytes();
    let Some(&f) = n.first() else { return false };
    // (`| 0x20` lowercases a letter, and maps no other byte into a..=z)
    let f = f | 0x20;
    if n.len() >= SECRET_BY_LEN_FIRST.len() || !f.is_ascii_lowercase() {
        return false;
    }
    // only the names of this length and first letter compared (`page` against `pass` alone,
    // not the whole list: the scan was most of a query's redaction)
    let mut m = SECRET_BY_LEN_FIRST[n.len()][(f - b'a') as usize];
    while m != 0 {
        if SECRET_PARAMS[m.trailing_zeros() as usize].eq_ignore_ascii_case(name) {
            return true;
        }
        m &= m - 1;
    }
    false
}

/// Per length and first letter, one bit per [`SECRET_PARAMS`] entry that has them (all of
/// them lowercase ASCII, starting with a letter, at most 15 bytes, at most 32 entries:
/// checked when this is built).
const SECRET_BY_LEN_FIRST: [[u32; 26]; 16] = {
    let mut t = [[0u32; 26]; 16];
    assert!(SECRET_PARAMS.len() <= 32);
    let mut i = 0;
    while i < SECRET_PARAMS.len() {
        let p = SECRET_PARAMS[i].as_bytes();
        assert!(p.len() < 16 && p[0].is_ascii_lowercase());
        t[p.len()][(p[0] - b'a') as usize] |= 1 << i;
        i += 1;
    }
    t
};

pub fn is_key_header(name: &str) -> bool {
    KEY_HEADERS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// [`is_key_header`] of a name already lowercased.
pub fn is_key_header_lower(name: &[u8]) -> bool {
    KEY_HEADERS.iter().any(|p| p.as_bytes() == name)
}

/// How a request authenticated, without the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `none`, `basic`, `bearer`, `api_key` or `cookie`.
    pub scheme: &'static str,
    pub principal: Option<String>,
}

impl Auth {
    /// The principal's buffer back to `buf` (see [`Redactor::auth_in`]); one grown by a
    /// hostile principal (a 60 KB Basic user name) is dropped, not kept for every call.
    pub fn give_back(self, buf: &mut String) {
        if let Some(p) = self.principal
            && p.capacity() <= 1024
        {
            *buf = p;
        }
    }
}

/// Where a request's credential is, and its raw value.
#[derive(Debug, PartialEq, Eq)]
enum Cred<'a> {
    /// `Authorization: Basic <base64>`
    Basic(&'a str),
    /// `Authorization: Bearer <token>`
    Bearer(&'a str),
    /// Any other Authorization value, an API-key header, or an API-key query parameter.
    ApiKey(&'a str),
    /// The session cookie (or, without one, the first cookie).
    Cookie(&'a str),
}

/// The request's credential, looked for in this order: Authorization, API-key headers,
/// API-key query parameters, cookies.
fn credential(req: &Message) -> Option<Cred<'_>> {
    if let Some(v) = req.header("authorization") {
        // The usual `Bearer <token>`: the scheme and its space told by one compare of a word,
        // its letters folded to lowercase (an OR of 0x20 makes a letter of either case the
        // lowercase one and no other byte a letter; the space is compared as it is).
        if let Some(head) = v.as_bytes().first_chunk::<7>() {
            const FOLD: u64 = u64::from_le_bytes([0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0, 0]);
            let mut w = [0u8; 8];
            w[..7].copy_from_slice(head);
            if u64::from_le_bytes(w) | FOLD == u64::from_le_bytes(*b"bearer \0") {
                // (seven ASCII bytes: index 7 is a character boundary)
                return Some(Cred::Bearer(crate::util::trim_fast(&v[7..])));
            }
        }
        // (the scheme is a short word: a byte loop finds its end sooner than a memchr call)
        let space = v.bytes().position(|c| c == b' ');
        let (scheme, cred) = space.map_or((v, ""), |i| (&v[..i], &v[i + 1..]));
        // (a token has no space at its ends, which two byte compares tell)
        let cred = crate::util::trim_fast(cred);
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Cred::Basic(cred));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(Cred::Bearer(cred));
        }
        return Some(Cred::ApiKey(v));
    }
    if let Some((_, v)) = req.headers.iter().find(|(n, _)| is_key_header(n)) {
        return Some(Cred::ApiKey(v));
    }
    if let Some(q) = crate::util::split_query(&req.uri).map(|(_, q)| q) {
        for (k, v) in query_pairs(q) {
            if ["api_key", "apikey", "key", "access_token"]
                .iter()
                .any(|x| k.eq_ignore_ascii_case(x))
            {
                return Some(Cred::ApiKey(v));
            }
        }
    }
    let c = req.header("cookie")?;
    // The session cookie is the principal; without one, any cookie still identifies.
    let mut best: Option<&str> = None;
    for (name, val) in cookie_pairs(c) {
        let n = name.to_ascii_lowercase();
        if n.contains("sess") || n.contains("sid") || n.contains("token") || n.contains("auth") || n.contains("jwt") {
            best = Some(val);
            break;
        }
        best = best.or(Some(val));
    }
    best.map(Cred::Cookie)
}

#[derive(Clone)]
pub struct Redactor {
    /// HMAC-SHA256 state already keyed: each hash clones it instead of re-keying.
    mac: Hmac<Sha256>,
    /// Tells this redactor's entries in the per-thread cache from another key's.
    id: u64,
}

/// Entries of the per-thread cache of recent hashes (two candidate slots per value).
const HASH_CACHE: usize = 4096;

/// (redactor id, value, its hash): a client sends the same token with every call, and an
/// HMAC costs two SHA-256 compressions. Per thread, so the worker shards never contend;
/// bounded (values over 256 bytes are not kept).
type HashCache = Vec<Option<(u64, Box<str>, Box<str>)>>;

thread_local! {
    static RECENT: std::cell::RefCell<HashCache> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Redactor {
    pub fn new(key: &[u8]) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Cannot fail: HMAC accepts keys of any length (long ones are hashed first).
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
        Redactor {
            mac,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Keyed hash of a secret: `h:` and 16 hex digits.
    pub fn hash(&self, v: &str) -> String {
        let mut s = String::new();
        self.hash_into(v, &mut s);
        s
    }

    /// [`Redactor::hash`] appended to `out` (a buffer the caller keeps: no allocation once it
    /// has room).
    pub fn hash_into(&self, v: &str, out: &mut String) {
        if v.len() > 256 {
            out.push_str(&self.hash_uncached(v));
            return;
        }
        // Slots, not a defence (a colliding value only evicts an entry): foldhash reads
        // eight bytes at a time, where FNV's byte loop cost more than the lookup on long
        // tokens. Two candidate slots per value: a few hundred clients' tokens rarely push
        // each other out.
        let f = slot_hash(v, self.id);
        let slots = [f as usize % HASH_CACHE, (f >> 32) as usize % HASH_CACHE];
        RECENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize(HASH_CACHE, None);
            }
            for s in slots {
                if let Some((id, k, h)) = &c[s]
                    && *id == self.id
                    && &**k == v
                {
                    out.push_str(h);
                    return;
                }
            }
            let h = self.hash_uncached(v);
            out.push_str(&h);
            // an empty candidate first, else the one this value's hash picks
            let s = slots
                .into_iter()
                .find(|s| c[*s].is_none())
                .unwrap_or(slots[(f >> 16) as usize & 1]);
            c[s] = Some((self.id, v.into(), h.into_boxed_str()));
        })
    }

    fn hash_uncached(&self, v: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut m = self.mac.clone();
        m.update(v.as_bytes());
        let d = m.finalize().into_bytes();
        let mut s = String::with_capacity(18);
        s.push_str("h:");
        for b in &d[..8] {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// [`Redactor::hash`] of a value that may be empty: an empty secret stays empty (there is
    /// nothing to hide, and `h:...` would claim a value was sent).
    pub fn hash_nonempty(&self, v: &str) -> String {
        if v.is_empty() { String::new() } else { self.hash(v) }
    }

    /// Does the request carry credentials (where [`Redactor::auth`] finds them), without
    /// hashing anything.
    pub fn has_credentials(req: &Message) -> bool {
        // (an Authorization header is always a credential: the common case ends at the lookup)
        req.header("authorization").is_some() || credential(req).is_some()
    }

    pub fn auth(&self, req: &Message) -> Auth {
        self.auth_in(req, &mut String::new())
    }

    /// [`Redactor::auth`] with the principal written into `buf`, a buffer the caller keeps from
    /// call to call: the principal is `buf`'s text (taken, `buf` left empty), to be handed
    /// back with [`Auth::give_back`] once the call is done (no allocation per call then).
    pub fn auth_in(&self, req: &Message, buf: &mut String) -> Auth {
        buf.clear();
        let scheme = match credential(req) {
            None => {
                return Auth {
                    scheme: "none",
                    principal: None,
                };
            }
            Some(Cred::Basic(cred)) => {
                let user = base64::engine::general_purpose::STANDARD
                    .decode(cred)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                match user {
                    Some(s) => buf.push_str(s.split(':').next().unwrap_or("")),
                    None => self.hash_into(cred, buf),
                }
                "basic"
            }
            Some(Cred::Bearer(cred)) => {
                match jwt_sub_cached(cred) {
                    Some(sub) => *buf = sub,
                    None => self.hash_into(cred, buf),
                }
                "bearer"
            }
            Some(Cred::ApiKey(v)) => {
                self.hash_into(v, buf);
                "api_key"
            }
            Some(Cred::Cookie(v)) => {
                self.hash_into(v, buf);
                "cookie"
            }
        };
        Auth {
            scheme,
            principal: Some(std::mem::take(buf)),
        }
    }

    /// The request target with secret query values replaced by their keyed hash.
    pub fn url<'a>(&self, uri: &'a str) -> Cow<'a, str> {
        // Absolute form with credentials (`http://user:pass@host/`): keep the user, hash the rest.
        if let Some(rest) = crate::util::find_short(uri.as_bytes(), b"://").map(|i| &uri[i + 3..]) {
            let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if let Some(at) = rest[..auth_end].rfind('@') {
                let scheme_len = uri.len() - rest.len();
                let userinfo = &rest[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let cleaned = format!(
                    "{}{}:{}@{}",
                    &uri[..scheme_len],
                    user,
                    self.hash(userinfo),
                    &rest[at + 1..]
                );
                return Cow::Owned(self.query(&cleaned).into_owned());
            }
        }
        self.query(uri)
    }

    /// `uri` with the values of secret query parameters hashed.
    fn query<'a>(&self, uri: &'a str) -> Cow<'a, str> {
        let Some((path, q)) = crate::util::split_query(uri) else {
            return Cow::Borrowed(uri);
        };
        if !any_secret_key(q) {
            return Cow::Borrowed(uri);
        }
        let mut s = String::with_capacity(uri.len());
        s.push_str(path);
        s.push('?');
        for (i, part) in q.split('&').enumerate() {
            if i > 0 {
                s.push('&');
            }
            match part.split_once('=') {
                Some((k, v)) if is_secret_key(k) => {
                    s.push_str(k);
                    s.push('=');
                    s.push_str(&self.hash_nonempty(v));
                }
                _ => s.push_str(part),
            }
        }
        Cow::Owned(s)
    }

    /// A header value as it may appear in an event.
    pub fn header<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization") {
            let scheme = value.split(' ').next().unwrap_or("");
            return Cow::Owned(format!("{scheme} {}", self.hash(value)));
        }
        if is_key_header(name) {
            return Cow::Owned(self.hash_nonempty(value.trim()));
        }
        if name.eq_ignore_ascii_case("cookie") {
            let v: Vec<String> = cookie_pairs(value)
                .map(|(n, v)| format!("{n}={}", self.hash_nonempty(v)))
                .collect();
            return Cow::Owned(v.join("; "));
        }
        if name.eq_ignore_ascii_case("set-cookie") {
            let (first, attrs) = value.split_once(';').unwrap_or((value, ""));
            let (n, v) = first.split_once('=').unwrap_or((first, ""));
            let mut s = format!("{}={}", n.trim(), self.hash_nonempty(v.trim()));
            if !attrs.is_empty() {
                s.push(';');
                s.push_str(attrs);
            }
            return Cow::Owned(s);
        }
        Cow::Borrowed(value)
    }
}

/// `is_secret_param(&percent_decode_lossy(k))` of a query key: most keys are short and hold
/// no `%` or `+`, which a byte loop tells sooner than the decoder's memchr call.
fn is_secret_key(k: &str) -> bool {
    if k.bytes().any(|c| c == b'%' || c == b'+') {
        is_secret_param(&percent_decode_lossy(k))
    } else {
        is_secret_param(k)
    }
}

/// `query_pairs(q).any(|(k, _)| is_secret_key(k))`, walking the bytes once (the splitting
/// iterators cost more than the check on the short queries of API calls).
fn any_secret_key(q: &str) -> bool {
    let b = q.as_bytes();
    let mut start = 0;
    while start <= b.len() {
        let rest = b.get(start..).unwrap_or_default();
        let len = rest.iter().position(|&c| c == b'&').unwrap_or(rest.len());
        let klen = rest[..len].iter().position(|&c| c == b'=').unwrap_or(len);
        // (`&` and `=` are ASCII: the key is whole characters)
        if len > 0 && is_secret_key(q.get(start..start + klen).unwrap_or_default()) {
            return true;
        }
        start += len + 1;
    }
    false
}

pub fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn cookie_pairs(c: &str) -> impl Iterator<Item = (&str, &str)> {
    c.split(';').filter_map(|p| {
        let p = p.trim();
        if p.is_empty() {
            None
        } else {
            Some(p.split_once('=').map(|(n, v)| (n.trim(), v.trim())).unwrap_or((p, "")))
        }
    })
}

/// Percent-decoding (and `+` as space), invalid escapes kept as they are.
pub fn percent_decode_lossy(s: &str) -> Cow<'_, str> {
    // (a query name or value is short: a byte loop tells it holds neither sooner than the
    // vector search's setup, some 100 instructions a call)
    let plain = if s.len() <= 32 {
        !s.bytes().any(|c| c == b'%' || c == b'+')
    } else {
        memchr::memchr2(b'%', b'+', s.as_bytes()).is_none()
    };
    if plain {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                if let (Some(h), Some(l)) = (h, l) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The `sub` claim of a JWT (not verified: we only name the caller).
/// [`jwt_sub`], remembered per thread for recent tokens: a client sends its token with every
/// call, and decoding and parsing it costs more than the rest of the redaction. Direct-mapped,
/// 1024 slots, tokens up to 4 KiB, compared whole (a colliding token evicts the slot).
/// A cache slot's hash of `v` (the caches' answers do not depend on it: a lookup compares the
/// value whole).
fn slot_hash(v: &str, seed: u64) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(seed).hash_one(v)
}

fn jwt_sub_cached(tok: &str) -> Option<String> {
    const SLOTS: usize = 1024;
    type Subs = Vec<Option<(Box<str>, Option<Box<str>>)>>;
    thread_local! {
        static SUBS: std::cell::RefCell<Subs> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // not three dot-separated parts: no subject (`jwt_sub` needs three), nothing to keep
    memchr::memchr_iter(b'.', tok.as_bytes()).nth(1)?;
    if tok.len() > 4096 {
        return jwt_sub(tok);
    }
    let slot = slot_hash(tok, 0) as usize % SLOTS;
    SUBS.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_empty() {
            c.resize(SLOTS, None);
        }
        if let Some((k, sub)) = &c[slot]
            && &**k == tok
        {
            return sub.as_deref().map(str::to_string);
        }
        let sub = jwt_sub(tok);
        c[slot] = Some((tok.into(), sub.as_deref().map(Box::from)));
        sub
    })
}

fn jwt_sub(tok: &str) -> Option<String> {
    let mut parts = tok.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    match v.get("sub")? {
        serde_json::Value::String(s) => Some(s.chars().take(128).collect()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], uri: &str) -> Message {
        Message {
            method: "GET".into(),
            uri: uri.into(),
            headers: headers.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Default::default()
        }
    }

    /// An Authorization value's scheme and credential as found before the one-word compare
    /// for `Bearer `: the first space ends the scheme, compared without regard to case.
    fn authorization_by_scheme_word(v: &str) -> Cred<'_> {
        let space = v.bytes().position(|c| c == b' ');
        let (scheme, cred) = space.map_or((v, ""), |i| (&v[..i], &v[i + 1..]));
        let cred = crate::util::trim_fast(cred);
        if scheme.eq_ignore_ascii_case("basic") {
            return Cred::Basic(cred);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Cred::Bearer(cred);
        }
        Cred::ApiKey(v)
    }

    /// The word compare finds `Bearer ` exactly where the scheme word did: every case of its
    /// letters, and values that differ from it in one byte (each byte flipped by each bit,
    /// so a byte that folds to a letter by its 0x20 bit, or a NUL for the space, is tried).
    #[test]
    fn bearer_by_one_word_is_bearer_by_the_scheme_word() {
        let mut values: Vec<Vec<u8>> = Vec::new();
        for case in 0..64u32 {
            let mut v = b"bearer tok-1 ".to_vec();
            for (i, b) in v.iter_mut().take(6).enumerate() {
                if case >> i & 1 != 0 {
                    b.make_ascii_uppercase();
                }
            }
            values.push(v);
        }
        for at in 0..8 {
            for bit in 0..8 {
                let mut v = b"Bearer abc".to_vec();
                v[at] ^= 1 << bit;
                values.push(v);
            }
        }
        for v in [
            "Bearer",
            "Bearer ",
            "bearer x",
            "Bearer  x ",
            "Basic YWxpY2U6cHc=",
            "Token t",
            "",
            "Bearer\tx",
        ] {
            values.push(v.as_bytes().to_vec());
        }
        for v in &values {
            let Ok(v) = std::str::from_utf8(v) else { continue };
            let q = req(&[("Authorization", v)], "/");
            // (a value the header parser would trim is compared as the message holds it)
            let Some(held) = q.header("authorization") else {
                continue;
            };
            assert_eq!(credential(&q), Some(authorization_by_scheme_word(held)), "{v:?}");
        }
    }

    #[test]
    fn a_cached_jwt_subject_is_the_decoded_one_every_time() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = |sub: &str| format!("{}.{}.sig", b64("{\"alg\":\"HS256\"}"), b64(sub));
        let toks = [
            jwt("{\"sub\":\"alice\"}"),
            jwt("{\"sub\":42}"),
            jwt("{\"nosub\":1}"),
            "not.a.jwt".to_string(),
            "opaque-token".to_string(),
            "a.b".to_string(),
        ];
        for _ in 0..3 {
            for t in &toks {
                assert_eq!(jwt_sub_cached(t), jwt_sub(t), "{t}");
            }
        }
        assert_eq!(jwt_sub_cached(&toks[0]).as_deref(), Some("alice"));
        assert_eq!(jwt_sub_cached(&toks[1]).as_deref(), Some("42"));
    }

    /// [`Redactor::auth`] as it was (a new string per call, hashes not cached): the reference
    /// for [`Redactor::auth_in`] writing into a reused buffer.
    fn auth_reference(r: &Redactor, req: &Message) -> Auth {
        let (scheme, principal) = match credential(req) {
            None => {
                return Auth {
                    scheme: "none",
                    principal: None,
                };
            }
            Some(Cred::Basic(cred)) => {
                let user = base64::engine::general_purpose::STANDARD
                    .decode(cred)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|s| s.split(':').next().unwrap_or("").to_string());
                ("basic", user.unwrap_or_else(|| r.hash_uncached(cred)))
            }
            Some(Cred::Bearer(cred)) => ("bearer", jwt_sub(cred).unwrap_or_else(|| r.hash_uncached(cred))),
            Some(Cred::ApiKey(v)) => ("api_key", r.hash_uncached(v)),
            Some(Cred::Cookie(v)) => ("cookie", r.hash_uncached(v)),
        };
        Auth {
            scheme,
            principal: Some(principal),
        }
    }

    #[test]
    fn auth_in_a_reused_buffer_is_the_auth_of_each_call() {
        let r = Redactor::new(b"k");
        let long = format!("Bearer {}", "t".repeat(300));
        let calls: Vec<Message> = vec![
            req(&[("Authorization", "Basic YWxpY2U6czNjcmV0")], "/"),
            req(&[], "/"),
            req(
                &[(
                    "authorization",
                    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.sig",
                )],
                "/",
            ),
            req(&[("Authorization", "Bearer opaque-token-1")], "/"),
            req(&[("Authorization", &long)], "/"),
            req(&[("X-API-Key", "sk_live_123")], "/"),
            req(&[("Authorization", "Basic !!notbase64")], "/"),
            req(&[("Cookie", "session=abc; x=y")], "/"),
            req(&[], "/x?api_key=zzz"),
            req(&[("Authorization", "Basic YWxpY2U6czNjcmV0")], "/"),
        ];
        let mut buf = String::new();
        for _ in 0..3 {
            for q in &calls {
                let a = r.auth_in(q, &mut buf);
                assert_eq!(a, auth_reference(&r, q), "{:?}", q.headers);
                assert_eq!(a, r.auth(q));
                a.give_back(&mut buf);
            }
        }
        // a hostile principal's buffer is not kept for the calls after it
        use base64::Engine as _;
        let huge = base64::engine::general_purpose::STANDARD.encode(format!("{}:pw", "u".repeat(60_000)));
        let a = r.auth_in(&req(&[("Authorization", &format!("Basic {huge}"))], "/"), &mut buf);
        assert_eq!(a.principal.as_ref().map(String::len), Some(60_000));
        a.give_back(&mut buf);
        assert!(buf.capacity() <= 1024);
    }

    #[test]
    fn auth_schemes_and_principals_hide_secrets() {
        let r = Redactor::new(b"k");
        let a = r.auth(&req(&[("Authorization", "Basic YWxpY2U6czNjcmV0")], "/"));
        assert_eq!(
            a,
            Auth {
                scheme: "basic",
                principal: Some("alice".into())
            }
        );
        // {"sub":"user-42"}
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.sig";
        let a = r.auth(&req(&[("authorization", &format!("Bearer {jwt}"))], "/"));
        assert_eq!(a.principal.as_deref(), Some("user-42"));
        let a = r.auth(&req(&[("X-API-Key", "sk_live_123")], "/"));
        assert_eq!(a.scheme, "api_key");
        assert!(!a.principal.unwrap().contains("sk_live"));
        let a = r.auth(&req(&[("Cookie", "theme=dark; sessionid=abc123")], "/"));
        assert_eq!((a.scheme, a.principal.unwrap()), ("cookie", r.hash("abc123")));
        assert_eq!(r.auth(&req(&[], "/")).scheme, "none");
    }

    #[test]
    fn urls_and_headers_are_redacted() {
        let r = Redactor::new(b"k");
        let u = r.url("/login?user=bob&password=hunter2&x=1");
        assert!(!u.contains("hunter2"));
        assert!(u.starts_with("/login?user=bob&password=h:"));
        assert!(u.ends_with("&x=1"));
        assert_eq!(r.url("/a?b=c"), "/a?b=c");
        let u = r.url("http://carol:pw@h/x?password=p2");
        assert!(
            u.starts_with("http://carol:h:")
                && u.contains("@h/x?password=h:")
                && !u.contains("pw@")
                && !u.contains("=p2"),
            "{u}"
        );
        assert!(!r.header("Authorization", "Bearer abc.def.ghi").contains("abc"));
        assert!(!r.header("Cookie", "a=1; sid=secretvalue").contains("secretvalue"));
        let sc = r.header("Set-Cookie", "sid=zzz; Path=/; HttpOnly");
        assert!(!sc.contains("zzz") && sc.ends_with("; Path=/; HttpOnly"));
        assert_eq!(percent_decode_lossy("pass%77ord+x%"), "password x%");
    }

    /// Short and long texts, with and without `%` and `+` at every place (either side of the
    /// 32-byte switch between the byte loop and the vector search): borrowed exactly when
    /// neither is there, and decoded as a byte-by-byte decoder does.
    #[test]
    fn percent_decoding_borrows_exactly_the_plain_texts() {
        fn by_bytes(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let hex = |c: u8| (c as char).to_digit(16);
                match b[i] {
                    b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                        out.push((hex(b[i + 1]).unwrap_or(0) * 16 + hex(b[i + 2]).unwrap_or(0)) as u8);
                        i += 3;
                        continue;
                    }
                    b'+' => out.push(b' '),
                    c => out.push(c),
                }
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        let pieces = ["a", "Z", "0", "%", "+", "%2", "%41", "%zz", "%e9", "\u{e9}", "-", "="];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut t = String::new();
            let n = (seed % 40) as usize;
            for j in 0..n {
                // mostly plain bytes: the borrowed case is common
                let p = (seed >> (j % 48)) as usize % if round % 2 == 0 { 3 } else { pieces.len() };
                t.push_str(pieces[p]);
            }
            let got = percent_decode_lossy(&t);
            let plain = !t.contains(['%', '+']);
            assert_eq!(matches!(got, Cow::Borrowed(_)), plain, "{t:?}");
            assert_eq!(got, by_bytes(&t), "{t:?}");
        }
        for n in [31, 32, 33, 64] {
            let mut t = "a".repeat(n);
            assert!(matches!(percent_decode_lossy(&t), Cow::Borrowed(_)));
            t.push('+');
            assert_eq!(percent_decode_lossy(&t), format!("{} ", "a".repeat(n)));
        }
    }

    #[test]
    fn empty_secret_values_stay_empty() {
        let r = Redactor::new(b"k");
        // Nothing was sent, so there is nothing to hash: `h:...` would claim a token.
        assert_eq!(r.url("/cb?access_token=&state=x"), "/cb?access_token=&state=x");
        assert_eq!(r.url("/cb?access_token&x=1"), "/cb?access_token&x=1");
        assert!(r.url("/cb?access_token=t0k3n").starts_with("/cb?access_token=h:"));
        assert_eq!(
            r.header("Cookie", "sid=; theme=dark"),
            format!("sid=; theme={}", r.hash("dark"))
        );
        assert_eq!(r.header("X-API-Key", ""), "");
        assert!(r.header("Set-Cookie", "sid=; Max-Age=0").starts_with("sid=;"));
    }

    /// `has_credentials` stops at an Authorization header: it must say what `auth` finds,
    /// whatever that header holds, and look further when there is none.
    #[test]
    fn has_credentials_says_what_auth_finds() {
        let r = Redactor::new(b"k");
        let cases: Vec<Message> = vec![
            req(&[("Authorization", "Bearer abc")], "/"),
            req(&[("authorization", "")], "/"),
            req(&[("AUTHORIZATION", "Digest x=1")], "/"),
            req(&[("Authorization", "Basic")], "/"),
            req(&[("X-Api-Key", "k1")], "/"),
            req(&[], "/x?api_key=1"),
            req(&[], "/x?q=1"),
            req(&[("Cookie", "theme=dark")], "/"),
            req(&[("Cookie", "")], "/"),
            req(&[("Host", "h"), ("Accept", "*/*")], "/"),
            req(&[], "/"),
        ];
        for q in &cases {
            assert_eq!(
                Redactor::has_credentials(q),
                r.auth(q).scheme != "none",
                "{:?}",
                q.headers
            );
        }
    }

    #[test]
    fn secret_param_names_match_the_list_blind_to_ascii_case_only() {
        let reference = |n: &str| SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(n));
        let mut names: Vec<String> = vec![
            "".into(),
            "k".into(),
            "KEY".into(),
            "ke\u{212a}".into(),
            "p\u{e4}ssword".into(),
            "client_secretx".into(),
            "authorizationX".into(),
            "x-api-keY".into(),
            "api key".into(),
            "tok\0n".into(),
            "\u{130}d".into(),
        ];
        for p in SECRET_PARAMS {
            names.push(p.to_string());
            names.push(p.to_ascii_uppercase());
            names.push(format!("{p}s"));
            names.push(format!("_{p}"));
            names.push(p[1..].to_string());
            names.push(p[..p.len() - 1].to_string());
        }
        for n in &names {
            assert_eq!(is_secret_param(n), reference(n), "{n:?}");
        }
    }

    #[test]
    fn query_keys_are_secret_as_their_decoded_names_are() {
        for k in [
            "token",
            "TOKEN",
            "tok%65n",
            "to%6Ben",
            "pass",
            "pa%73s",
            "api+key",
            "api_key",
            "api%2Bkey",
            "%",
            "%2",
            "+",
            "key+",
            "k%65y",
            "s%69d",
            "%73%69%64",
            "plain",
            "",
            "session_%69d",
        ] {
            assert_eq!(is_secret_key(k), is_secret_param(&percent_decode_lossy(k)), "{k:?}");
        }
    }

    #[test]
    fn secret_keys_found_walking_the_query_bytes_are_those_query_pairs_finds() {
        for q in [
            "",
            "&",
            "&&",
            "=",
            "a",
            "a=1",
            "token",
            "token=",
            "=token",
            "a=1&token=2",
            "a=1&&TOKEN",
            "x=token&y=2",
            "tok%65n=1",
            "a&b&c=d&api+key=1",
            "api%5Fkey=v",
            "p\u{e9}=1&pass=2",
            "\u{e9}&key",
            "key=a=b",
            "&sid",
            "session_id=1&",
            "a=b&c=d&e=f&g=h",
        ] {
            let want = query_pairs(q).any(|(k, _)| is_secret_param(&percent_decode_lossy(k)));
            assert_eq!(any_secret_key(q), want, "{q:?}");
        }
    }

    #[test]
    fn a_token_without_two_dots_has_no_jwt_subject_cached_or_not() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#);
        let long = format!("h.{claims}.{}", "s".repeat(5000));
        for t in [
            "",
            ".",
            "..",
            "abc",
            "a.b",
            "opaque-token-without-dots",
            &format!("h.{claims}"),
            &format!("h.{claims}.s"),
            &format!("h.{claims}.s.t"),
            &format!(".{claims}."),
            &long,
        ] {
            assert_eq!(jwt_sub_cached(t), jwt_sub(t), "{t:?}");
            assert_eq!(jwt_sub_cached(t), jwt_sub(t), "cached again: {t:?}");
        }
        assert_eq!(jwt_sub_cached(&format!("h.{claims}.s")).as_deref(), Some("alice"));
    }

    #[test]
    fn a_hash_from_the_cache_is_the_one_computed_fresh() {
        let r = Redactor::new(b"k");
        for v in ["tok", "tok", "another", "tok", "", "\u{e9}t\u{e9}"] {
            assert_eq!(r.hash(v), r.hash_uncached(v), "{v:?}");
        }
    }

    #[test]
    fn authorization_schemes_split_at_the_first_space_whatever_the_case() {
        let r = Redactor::new(b"k");
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        for (v, scheme, principal) in [
            (format!("Basic {basic}"), "basic", Some("bob".to_string())),
            (format!("bAsIc   {basic}  "), "basic", Some("bob".to_string())),
            ("Bearer abc".into(), "bearer", Some(r.hash("abc"))),
            ("BEARER  abc ".into(), "bearer", Some(r.hash("abc"))),
            ("Bearer".into(), "bearer", Some(r.hash(""))),
            ("Bearerabc".into(), "api_key", Some(r.hash("Bearerabc"))),
            ("Token x y".into(), "api_key", Some(r.hash("Token x y"))),
        ] {
            let a = r.auth(&req(&[("Authorization", &v)], "/"));
            assert_eq!((a.scheme, a.principal), (scheme, principal), "{v:?}");
        }
    }

    #[test]
    fn secret_param_names_found_by_length_and_letter_are_the_ones_the_list_holds() {
        let plain = |n: &str| SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(n));
        let mut names: Vec<String> = vec![
            "".into(),
            "page".into(),
            "category".into(),
            "_token".into(),
            "9key".into(),
            "é".into(),
            "tokens".into(),
            "x".repeat(40),
        ];
        for p in SECRET_PARAMS {
            names.push(p.to_string());
            names.push(p.to_uppercase());
            names.push(format!("{p}x"));
            names.push(p[1..].to_string());
            names.push(p[..p.len() - 1].to_string());
            // each byte changed in turn, to a neighbour and to a non-ASCII character
            for i in 0..p.len() {
                let mut b = p.as_bytes().to_vec();
                b[i] = b[i].wrapping_add(1);
                names.push(String::from_utf8_lossy(&b).into_owned());
                names.push(format!("{}é{}", &p[..i], &p[i + 1..]));
            }
        }
        // every two-letter name, and every name of up to three of the letters secrets start with
        let letters = "acdijkoprstx_-AZ";
        for a in letters.chars() {
            for b in letters.chars() {
                names.push(format!("{a}{b}"));
                for c in letters.chars() {
                    names.push(format!("{a}{b}{c}"));
                }
            }
        }
        for n in &names {
            assert_eq!(is_secret_param(n), plain(n), "{n:?}");
        }
    }
}
