//! What a TLS connection shows without keys: the handshake (RFC 8446 / RFC 5246).
//!
//! [`TlsState`] takes one connection's bytes per direction, rebuilds handshake messages from
//! handshake records (a message may span records, a record may hold several), and reads the
//! ClientHello (SNI, ALPN, JA3, JA4), the ServerHello (negotiated version, JA3S) and, up to
//! TLS 1.2, the server's first certificate (subject, issuer, serial, validity, SHA-1
//! fingerprint). Messages are decoded by `tls-parser` and certificates by `x509-parser`
//! (both maintained by the Rusticata project and used by Suricata's Rust side): a hand-rolled
//! DER parser is where sensors get owned. Extension lists are walked here too, in wire order,
//! because JA3/JA4 need every extension id, known to the crate or not.
//!
//! Bounded: at most [`MAX_HANDSHAKE`] bytes of handshake messages are held per direction; a
//! record or message larger than that, or bytes that are not TLS, end the parsing of that
//! direction (counted as `malformed`). Nothing here panics on any input.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use serde::Serialize;
use sha2::Sha256;

use crate::capture::Ts;

/// Most bytes of one direction's handshake held (a certificate chain fits).
pub const MAX_HANDSHAKE: usize = 64 << 10;
/// Longest TLS record (2^14 plus the expansion TLS 1.2 allows).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Caps of the strings and lists written.
const MAX_STR: usize = 512;
const MAX_ALPNS: usize = 8;

/// The server certificate (TLS 1.2 and below, where it travels in the clear).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuerdn: String,
    pub serial: String,
    pub fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notbefore: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notafter: Option<String>,
}

/// A JA3 or JA3S fingerprint: the string and its MD5.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ja3 {
    pub hash: String,
    pub string: String,
}

impl Ja3 {
    fn of(s: String) -> Self {
        Ja3 {
            hash: hex(&Md5::digest(s.as_bytes())),
            string: s,
        }
    }
}

/// One connection's handshake as Suricata's EVE `tls` object writes it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TlsInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub cert: Option<CertInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<Ja3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<Ja3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub client_alpns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_alpns: Vec<String>,
}

/// Server names tracked for `stats` (past it, new names count under "(other)").
pub const MAX_NAMES: usize = 1024;
/// Names listed in `stats.tls.by_sni`, most connections first.
pub const TOP_NAMES: usize = 20;

/// TLS connections counted by server name (SNI), bounded.
#[derive(Debug, Default)]
pub struct NameCounts {
    names: std::collections::HashMap<String, u64>,
    other: u64,
    none: u64,
}

impl NameCounts {
    pub fn add(&mut self, sni: Option<&str>) {
        match sni {
            None => self.none += 1,
            Some(n) => {
                if let Some(c) = self.names.get_mut(n) {
                    *c += 1;
                } else if self.names.len() < MAX_NAMES {
                    self.names.insert(n.to_string(), 1);
                } else {
                    self.other += 1;
                }
            }
        }
    }

    /// The `n` names with most connections (ties by name), then "(no sni)" and "(other)".
    pub fn top(&self, n: usize) -> serde_json::Value {
        let mut v: Vec<(&String, &u64)> = self.names.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut m = serde_json::Map::new();
        let mut rest = self.other;
        for (i, (k, c)) in v.into_iter().enumerate() {
            if i < n {
                m.insert(k.clone(), (*c).into());
            } else {
                rest += c;
            }
        }
        if self.none > 0 {
            m.insert("(no sni)".into(), self.none.into());
        }
        if rest > 0 {
            m.insert("(other)".into(), rest.into());
        }
        serde_json::Value::Object(m)
    }
}

/// Does `b` start like a TLS handshake record holding a ClientHello (1) or ServerHello (2)?
pub fn hello_kind(b: &[u8]) -> Option<u8> {
    match b {
        [0x16, 3, minor, _, _, t @ (1 | 2), ..] if *minor <= 4 => Some(*t),
        _ => None,
    }
}

/// One direction's record and message reassembly.
#[derive(Default)]
struct Side {
    rec: Vec<u8>,
    msgs: Vec<u8>,
    done: bool,
}

/// A TLS connection being watched. `client`: the direction index of the client.
pub struct TlsState {
    pub client: usize,
    pub info: TlsInfo,
    /// Packet time of the ClientHello (else of the first handshake bytes).
    pub ts: Ts,
    sides: [Side; 2],
    /// A ClientHello or ServerHello was read: something to report.
    pub seen: bool,
    pub emitted: bool,
    /// Bytes that were not TLS or broke a limit.
    pub malformed: bool,
}

impl TlsState {
    pub fn new(client: usize, ts: Ts) -> Self {
        TlsState {
            client: client & 1,
            info: TlsInfo::default(),
            ts,
            sides: [Side::default(), Side::default()],
            seen: false,
            emitted: false,
            malformed: false,
        }
    }

    /// Both sides said what they will say in the clear (the event can be written).
    pub fn complete(&self) -> bool {
        self.sides[0].done && self.sides[1].done
    }

    /// Bytes of direction `dir`.
    pub fn data(&mut self, dir: usize, b: &[u8], ts: Ts) {
        let dir = dir & 1;
        if self.sides[dir].done {
            return;
        }
        if self.sides[dir].rec.len() + b.len() > MAX_RECORD + 5 {
            // Only whole records are kept: take what completes them, piece by piece.
            let mut rest = b;
            while !rest.is_empty() && !self.sides[dir].done {
                let room = (MAX_RECORD + 5).saturating_sub(self.sides[dir].rec.len()).max(1);
                let (a, r) = rest.split_at(room.min(rest.len()));
                self.sides[dir].rec.extend_from_slice(a);
                self.records(dir, ts);
                rest = r;
            }
            return;
        }
        self.sides[dir].rec.extend_from_slice(b);
        self.records(dir, ts);
    }

    /// A hole in direction `dir`: its handshake cannot be followed any further.
    pub fn gap(&mut self, dir: usize) {
        let s = &mut self.sides[dir & 1];
        s.done = true;
        s.rec = Vec::new();
        s.msgs = Vec::new();
    }

    fn stop(&mut self, dir: usize, malformed: bool) {
        self.malformed |= malformed;
        self.gap(dir);
    }

    fn records(&mut self, dir: usize, ts: Ts) {
        loop {
            let s = &mut self.sides[dir];
            if s.done || s.rec.len() < 5 {
                return;
            }
            let (ty, major) = (s.rec[0], s.rec[1]);
            let len = u16::from_be_bytes([s.rec[3], s.rec[4]]) as usize;
            if major != 3 || !(20..=24).contains(&ty) || len > MAX_RECORD {
                self.stop(dir, true);
                return;
            }
            if s.rec.len() < 5 + len {
                return;
            }
            if ty != 22 {
                // change_cipher_spec, alert, application data: the clear part is over.
                self.stop(dir, false);
                return;
            }
            if s.msgs.len() + len > MAX_HANDSHAKE {
                self.stop(dir, true);
                return;
            }
            s.msgs.extend_from_slice(&s.rec[5..5 + len]);
            s.rec.drain(..5 + len);
            self.messages(dir, ts);
        }
    }

    fn messages(&mut self, dir: usize, ts: Ts) {
        loop {
            let s = &mut self.sides[dir];
            if s.done || s.msgs.len() < 4 {
                return;
            }
            let mlen = u32::from_be_bytes([0, s.msgs[1], s.msgs[2], s.msgs[3]]) as usize;
            if mlen + 4 > MAX_HANDSHAKE {
                self.stop(dir, true);
                return;
            }
            if s.msgs.len() < 4 + mlen {
                return;
            }
            let msg: Vec<u8> = s.msgs.drain(..4 + mlen).collect();
            self.message(dir, &msg, ts);
        }
    }

    fn message(&mut self, dir: usize, msg: &[u8], ts: Ts) {
        use tls_parser::{TlsMessage, TlsMessageHandshake as H};
        let from_client = dir == self.client;
        let parsed = tls_parser::parse_tls_message_handshake(msg);
        match parsed {
            Ok((_, TlsMessage::Handshake(H::ClientHello(ch)))) if from_client => {
                self.seen = true;
                self.ts = ts;
                self.client_hello(
                    ch.version.0,
                    &ch.ciphers.iter().map(|c| c.0).collect::<Vec<_>>(),
                    ch.ext,
                );
                // Nothing more of interest from the client.
                self.stop(dir, false);
            }
            Ok((_, TlsMessage::Handshake(H::ServerHello(sh)))) if !from_client => {
                self.seen = true;
                let tls13 = self.server_hello(sh.version.0, sh.cipher.0, sh.ext);
                if tls13 {
                    // The rest of a TLS 1.3 handshake (certificate included) is encrypted.
                    self.stop(dir, false);
                }
            }
            Ok((_, TlsMessage::Handshake(H::Certificate(c)))) if !from_client => {
                if let Some(first) = c.cert_chain.first() {
                    self.info.cert = cert_info(first.data);
                }
                self.stop(dir, false);
            }
            Ok((_, TlsMessage::Handshake(H::ServerDone(_)))) => self.stop(dir, false),
            Ok(_) => {}
            Err(_) => {
                if !self.seen {
                    self.stop(dir, true);
                }
            }
        }
    }

    fn client_hello(&mut self, legacy: u16, ciphers: &[u16], ext: Option<&[u8]>) {
        let exts = walk_extensions(ext.unwrap_or(&[]));
        let mut groups = Vec::new();
        let mut formats = Vec::new();
        let mut sigs = Vec::new();
        let mut versions = Vec::new();
        for (ty, data) in &exts {
            match ty {
                0 => self.info.sni = sni(data),
                10 => groups = u16_list(data.get(2..).unwrap_or(&[])),
                11 => formats = data.get(1..).unwrap_or(&[]).iter().map(|b| *b as u16).collect(),
                13 => sigs = u16_list(data.get(2..).unwrap_or(&[])),
                16 => self.info.client_alpns = alpns(data),
                43 => versions = u16_list(data.get(1..).unwrap_or(&[])),
                _ => {}
            }
        }
        let ids: Vec<u16> = exts.iter().map(|(t, _)| *t).collect();
        let dec = |v: &[u16]| {
            v.iter()
                .filter(|x| !grease(**x))
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("-")
        };
        self.info.ja3 = Some(Ja3::of(format!(
            "{legacy},{},{},{},{}",
            dec(ciphers),
            dec(&ids),
            dec(&groups),
            dec(&formats)
        )));
        let best = versions.iter().copied().filter(|v| !grease(*v)).max().unwrap_or(legacy);
        if self.info.version.is_none() {
            self.info.version = Some(version_name(best));
        }
        self.info.ja4 = Some(ja4(
            best,
            self.info.sni.is_some(),
            ciphers,
            &ids,
            &sigs,
            &self.info.client_alpns,
        ));
    }

    /// Returns true for TLS 1.3.
    fn server_hello(&mut self, legacy: u16, cipher: u16, ext: Option<&[u8]>) -> bool {
        let exts = walk_extensions(ext.unwrap_or(&[]));
        let mut version = legacy;
        for (ty, data) in &exts {
            match ty {
                43 if data.len() == 2 => version = u16::from_be_bytes([data[0], data[1]]),
                16 => self.info.server_alpns = alpns(data),
                _ => {}
            }
        }
        let ids: Vec<String> = exts
            .iter()
            .filter(|(t, _)| !grease(*t))
            .map(|(t, _)| t.to_string())
            .collect();
        self.info.ja3s = Some(Ja3::of(format!("{legacy},{cipher},{}", ids.join("-"))));
        self.info.version = Some(version_name(version));
        version == 0x0304
    }
}

/// GREASE values (RFC 8701): 0x?A?A with both bytes equal.
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// (type, data) of each extension, in wire order; stops at the first malformed one.
fn walk_extensions(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 && v.len() < 256 {
        let ty = u16::from_be_bytes([b[0], b[1]]);
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        let Some(data) = b.get(4..4 + len) else { break };
        v.push((ty, data));
        b = &b[4 + len..];
    }
    v
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.len() > MAX_STR {
        let mut cut = MAX_STR;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// server_name extension: the first host_name entry.
fn sni(d: &[u8]) -> Option<String> {
    let mut b = d.get(2..)?;
    while b.len() >= 3 {
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        let name = b.get(3..3 + len)?;
        if b[0] == 0 {
            return Some(text(name));
        }
        b = &b[3 + len..];
    }
    None
}

fn alpns(d: &[u8]) -> Vec<String> {
    let mut v = Vec::new();
    let mut b = d.get(2..).unwrap_or(&[]);
    while let Some((&n, rest)) = b.split_first() {
        let Some(p) = rest.get(..n as usize) else { break };
        if v.len() < MAX_ALPNS {
            v.push(text(p));
        }
        b = &rest[n as usize..];
    }
    v
}

/// "TLS 1.2" etc., as Suricata writes versions.
fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        _ => format!("0x{v:04x}"),
    }
}

/// JA4 (FoxIO, JA4 spec): `t`, version, `d`/`i` (SNI or not), cipher and extension counts,
/// first and last character of the first ALPN, `_`, the truncated SHA-256 of the sorted
/// cipher list, `_`, that of the sorted extensions (without SNI and ALPN) and the signature
/// algorithms in wire order. GREASE values are left out everywhere.
pub fn ja4(version: u16, has_sni: bool, ciphers: &[u16], exts: &[u16], sigs: &[u16], alpns: &[String]) -> String {
    let v = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let mut c: Vec<u16> = ciphers.iter().copied().filter(|x| !grease(*x)).collect();
    let mut e: Vec<u16> = exts.iter().copied().filter(|x| !grease(*x)).collect();
    let alpn = match alpns.first().map(|a| a.as_bytes()) {
        Some([f, .., l]) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() => {
            format!("{}{}", *f as char, *l as char)
        }
        Some([f]) if f.is_ascii_alphanumeric() => format!("{}{}", *f as char, *f as char),
        Some([f, .., l]) => {
            let h = hex(&[*f, *l]);
            format!("{}{}", &h[..1], &h[3..])
        }
        _ => "00".into(),
    };
    let a = format!(
        "t{v}{}{:02}{:02}{alpn}",
        if has_sni { 'd' } else { 'i' },
        c.len().min(99),
        e.len().min(99)
    );
    c.sort_unstable();
    e.retain(|x| *x != 0 && *x != 16);
    e.sort_unstable();
    let list = |v: &[u16]| v.iter().map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(",");
    let trunc = |s: &str| {
        if s.is_empty() {
            "000000000000".to_string()
        } else {
            hex(&Sha256::digest(s.as_bytes()))[..12].to_string()
        }
    };
    let b = trunc(&list(&c));
    let mut cs = list(&e);
    let sig: Vec<u16> = sigs.iter().copied().filter(|x| !grease(*x)).collect();
    if !sig.is_empty() {
        cs.push('_');
        cs.push_str(&list(&sig));
    }
    let cpart = if e.is_empty() {
        "000000000000".to_string()
    } else {
        trunc(&cs)
    };
    format!("{a}_{b}_{cpart}")
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let fp = sha1_smol::Sha1::from(der).digest().bytes();
    let fingerprint = fp.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let v = c.validity();
    Some(CertInfo {
        subject: text(c.subject().to_string().as_bytes()),
        issuerdn: text(c.issuer().to_string().as_bytes()),
        serial: text(c.raw_serial_as_string().to_ascii_uppercase().as_bytes()),
        fingerprint,
        notbefore: tls_date(v.not_before.timestamp()),
        notafter: tls_date(v.not_after.timestamp()),
    })
}

/// Unix seconds as EVE's tls dates write them (`2026-11-29T05:50:07`, UTC); years 1000-2999.
fn tls_date(t: i64) -> Option<String> {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    if !(1000..=2999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grease_values_are_recognised() {
        assert!(grease(0x0a0a) && grease(0xfafa) && grease(0x3a3a));
        assert!(!grease(0x0a1a) && !grease(0x1301) && !grease(0x000a));
    }

    #[test]
    fn tls_dates_are_civil_utc() {
        assert_eq!(tls_date(0).as_deref(), Some("1970-01-01T00:00:00"));
        assert_eq!(tls_date(1_796_002_207).as_deref(), Some("2026-11-30T01:30:07"));
        assert_eq!(tls_date(253_402_300_799), None); // 9999-12-31: outside EVE's date pattern
        assert_eq!(tls_date(-1).as_deref(), Some("1969-12-31T23:59:59"));
    }

    #[test]
    fn ja4_of_the_spec_example_parts() {
        // Counts, SNI flag and ALPN characters; the hashes of empty lists are zeros.
        let j = ja4(
            0x0304,
            true,
            &[0x1301, 0x0a0a],
            &[0, 16, 43, 0x1a1a],
            &[],
            &["h2".into()],
        );
        assert!(j.starts_with("t13d0103h2_"), "{j}");
        let j = ja4(0x0303, false, &[], &[], &[], &[]);
        assert_eq!(j, "t12i000000_000000000000_000000000000");
    }

    /// A ClientHello split over two records and three chunks, then a ServerHello: both read.
    #[test]
    fn hello_messages_spanning_records_are_read() {
        let mut ext = Vec::new();
        // SNI "api.example"
        let name = b"api.example";
        ext.extend(0u16.to_be_bytes());
        ext.extend(((name.len() + 5) as u16).to_be_bytes());
        ext.extend(((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend((name.len() as u16).to_be_bytes());
        ext.extend(name);
        // supported groups 29, 23; point formats 0
        ext.extend([0, 10, 0, 6, 0, 4, 0, 29, 0, 23, 0, 11, 0, 2, 1, 0]);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend([0, 4, 0xc0, 0x2f, 0x0a, 0x0a]);
        body.extend([1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(&ext);
        let mut msg = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        msg.extend(&body);
        let (m1, m2) = msg.split_at(20);
        let mut wire = Vec::new();
        for part in [m1, m2] {
            wire.extend([22, 3, 1]);
            wire.extend((part.len() as u16).to_be_bytes());
            wire.extend(part);
        }
        assert_eq!(hello_kind(&wire), Some(1));
        let mut t = TlsState::new(0, 5);
        for c in wire.chunks(17) {
            t.data(0, c, 7);
        }
        assert!(!t.malformed);
        assert_eq!(t.info.sni.as_deref(), Some("api.example"));
        let ja3 = t.info.ja3.clone().expect("ja3");
        assert_eq!(ja3.string, "771,49199,0-10-11,29-23,0");
        assert_eq!(ja3.hash, hex(&Md5::digest(b"771,49199,0-10-11,29-23,0")));
        assert_eq!(t.info.version.as_deref(), Some("TLS 1.2"));
        // ServerHello TLS 1.2, cipher c02f, no extensions
        let mut sb = vec![3, 3];
        sb.extend([9u8; 32]);
        sb.extend([0, 0xc0, 0x2f, 0]);
        let mut sm = vec![2, 0, 0, sb.len() as u8];
        sm.extend(&sb);
        let mut rec = vec![22, 3, 3, 0, sm.len() as u8];
        rec.extend(&sm);
        t.data(1, &rec, 8);
        assert_eq!(t.info.ja3s.as_ref().map(|j| j.string.as_str()), Some("771,49199,"));
        assert!(!t.complete()); // the certificate may still come
        t.data(1, &[20, 3, 3, 0, 1, 1], 9);
        assert!(t.complete());
    }

    /// Random bytes after a valid record header, split at random points: never a panic, and
    /// never more held than the caps.
    #[test]
    fn random_handshake_bytes_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let n = (rnd() % 3000) as usize;
            let mut b: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
            if round % 2 == 0 && b.len() > 9 {
                // a plausible start: handshake record, ClientHello/ServerHello/Certificate
                b[..6].copy_from_slice(&[22, 3, 3, (n >> 8) as u8, n as u8, [1, 2, 11][round % 3]]);
            }
            let mut t = TlsState::new(round % 2, 0);
            let mut rest = &b[..];
            while !rest.is_empty() {
                let k = ((rnd() % 200) as usize + 1).min(rest.len());
                t.data((rnd() % 2) as usize, &rest[..k], 1);
                rest = &rest[k..];
                assert!(
                    t.sides
                        .iter()
                        .all(|s| s.rec.len() <= MAX_RECORD + 5 && s.msgs.len() <= MAX_HANDSHAKE)
                );
            }
            if round % 7 == 0 {
                t.gap(0);
            }
        }
    }

    #[test]
    fn garbage_and_oversized_records_stop_parsing_without_panic() {
        let mut t = TlsState::new(0, 0);
        t.data(0, &[22, 3, 1, 0xff, 0xff, 1, 2, 3], 0);
        assert!(t.malformed && !t.complete());
        let mut t = TlsState::new(0, 0);
        t.data(0, &[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff], 0);
        assert!(t.malformed);
        let mut t = TlsState::new(0, 0);
        let mut junk = vec![22u8, 3, 3, 0x40, 0x00];
        junk.extend(vec![0xAB; 20_000]);
        t.data(0, &junk, 0);
        assert!(t.malformed);
    }
}
