//! What comes before (or instead of) HTTP on a connection: a SOCKS handshake, whose tunnel is
//! then analysed like a direct connection, and TLS, whose handshake is read for a `tls` event
//! (nothing after it can be read without keys).
//!
//! A connection's first bytes decide: a SOCKS greeting from the client starts [`Socks`]; a
//! ClientHello (or, picked up late, a ServerHello) starts [`TlsState`]; anything else goes to
//! the HTTP parser untouched, and from then on every chunk does (one branch on the hot path).
//! After a SOCKS handshake the tunnel's first bytes decide again (HTTPS through SOCKS is TLS).
//! Reverse SOCKS (an agent connects out, sends a few bytes of its own, and the side it reached
//! then opens SOCKS5 as the client): a short first chunk with binary bytes from the connecting side is held
//! back (at most [`MAX_HELD`] bytes) until the other side speaks; a SOCKS5 greeting then makes
//! that side the client ([`Preface::take_switch`]), anything else gets the held bytes replayed
//! first, so the HTTP parser sees exactly what it would have.
//! Bytes kept from the HTTP parser are counted per direction ([`Preface::stripped`]), so
//! acknowledgement numbers still map onto the offsets the parser sees.

use super::socks::{self, Socks};
use crate::capture::Ts;
use crate::tls::{self, TlsInfo, TlsState};

enum Inner {
    /// Nothing seen yet (or just the SOCKS handshake).
    Detect,
    Tls(Box<TlsState>),
    /// Everything goes to the HTTP parser.
    Pass,
    /// A refused or broken SOCKS handshake: nothing after it is analysed.
    Opaque,
}

/// Longest first chunk held back as a possible reverse-SOCKS preamble.
pub const MAX_HELD: usize = 16;

pub struct Preface {
    client: Option<usize>,
    /// A short binary first chunk of the connecting side (direction, bytes).
    held: Option<(usize, Vec<u8>)>,
    /// The client turned out to be the other side (reverse SOCKS): the HTTP parser must be
    /// made anew with this client direction before it gets the tunnel's bytes.
    switch: Option<usize>,
    socks: Option<Box<Socks>>,
    inner: Inner,
    /// Bytes per direction not handed to the HTTP parser.
    pub stripped: [u64; 2],
}

/// A `tls` event ready to be written: packet time, client direction, what was seen.
pub struct TlsReady {
    pub ts: Ts,
    pub client: usize,
    pub info: TlsInfo,
}

impl Preface {
    pub fn new(client: Option<usize>) -> Self {
        Preface {
            client,
            held: None,
            switch: None,
            socks: None,
            inner: Inner::Detect,
            stripped: [0, 0],
        }
    }

    /// Every byte goes to the HTTP parser from now on.
    #[inline]
    pub fn passthrough(&self) -> bool {
        matches!(self.inner, Inner::Pass) && self.socks.is_none()
    }

    /// The SOCKS target ("host[:port]") of a granted tunnel.
    pub fn socks_target(&self) -> Option<&str> {
        self.socks
            .as_ref()
            .filter(|s| s.granted)
            .and_then(|s| s.target.as_deref())
    }

    /// SOCKS version of a granted tunnel.
    pub fn socks_version(&self) -> Option<u8> {
        self.socks.as_ref().filter(|s| s.granted).map(|s| s.version)
    }

    /// The client direction a TLS handshake showed (for a flow picked up without one).
    pub fn tls_client(&self) -> Option<usize> {
        match &self.inner {
            Inner::Tls(t) => Some(t.client),
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// A new client direction for the HTTP parser (reverse SOCKS), once.
    pub fn take_switch(&mut self) -> Option<usize> {
        self.switch.take()
    }

    /// Bytes of direction `dir`; what belongs to HTTP is handed to `pass` with its direction.
    pub fn data(&mut self, dir: usize, b: &[u8], ts: Ts, pass: &mut dyn FnMut(usize, &[u8])) {
        let dir = dir & 1;
        if b.is_empty() {
            return;
        }
        if self.socks.is_none() && matches!(self.inner, Inner::Detect) {
            if let Some((hd, held)) = self.held.take() {
                if hd != dir && b[0] == 5 && socks::looks_like_socks(b) {
                    // Reverse SOCKS: the held bytes were the agent's own preamble.
                    self.client = Some(dir);
                    self.switch = Some(dir);
                    self.socks = Some(Box::new(Socks::new(dir, 5)));
                } else {
                    self.stripped[hd] -= held.len() as u64;
                    self.inner = Inner::Pass;
                    pass(hd, &held);
                }
            } else if self.client == Some(dir) && self.stripped == [0, 0] {
                if socks::looks_like_socks(b) {
                    self.socks = Some(Box::new(Socks::new(dir, b[0])));
                } else if b.len() <= MAX_HELD && b.iter().any(|c| !(c.is_ascii_graphic() || b" \r\n".contains(c))) {
                    self.stripped[dir] += b.len() as u64;
                    self.held = Some((dir, b.to_vec()));
                    return;
                }
            }
        }
        if let Some(s) = self.socks.as_mut() {
            if s.failed {
                self.stripped[dir] += b.len() as u64;
                return;
            }
            if !s.done(dir) {
                self.stripped[dir] += b.len() as u64;
                let rest = s.data(dir, b);
                if s.failed {
                    self.inner = Inner::Opaque;
                    return;
                }
                if let Some(r) = rest {
                    self.stripped[dir] -= r.len() as u64;
                    self.inner_data(dir, &r, ts, pass);
                }
                return;
            }
        }
        self.inner_data(dir, b, ts, pass);
    }

    fn inner_data(&mut self, dir: usize, b: &[u8], ts: Ts, pass: &mut dyn FnMut(usize, &[u8])) {
        if matches!(self.inner, Inner::Detect) {
            self.inner = match tls::hello_kind(b) {
                Some(k) => Inner::Tls(Box::new(TlsState::new(if k == 1 { dir } else { dir ^ 1 }, ts))),
                None => Inner::Pass,
            };
        }
        match &mut self.inner {
            Inner::Tls(t) => {
                self.stripped[dir] += b.len() as u64;
                t.data(dir, b, ts);
            }
            Inner::Opaque => self.stripped[dir] += b.len() as u64,
            Inner::Pass | Inner::Detect => pass(dir, b),
        }
    }

    /// `n` bytes of direction `dir` were lost; `pass` hands a gap to the HTTP parser.
    pub fn gap(&mut self, dir: usize, n: u64, pass: &mut dyn FnMut(u64)) {
        let dir = dir & 1;
        // Held preamble bytes before a hole stay out (at most MAX_HELD bytes, counted).
        self.held = None;
        if let Some(s) = self.socks.as_ref()
            && !s.done(dir)
            && !s.failed
        {
            // The handshake cannot be followed: what comes next is left to the HTTP parser.
            self.socks = None;
            self.inner = Inner::Pass;
        }
        if self.socks.as_ref().is_some_and(|s| s.failed) {
            self.stripped[dir] += n;
            return;
        }
        match &mut self.inner {
            Inner::Tls(t) => {
                self.stripped[dir] += n;
                t.gap(dir);
            }
            Inner::Opaque => self.stripped[dir] += n,
            Inner::Detect => {
                self.inner = Inner::Pass;
                pass(n);
            }
            Inner::Pass => pass(n),
        }
    }

    /// A `tls` event, once per connection: when the handshake's clear part is over, or with
    /// `end` (the connection ends) whatever was seen.
    pub fn take_tls(&mut self, end: bool) -> Option<TlsReady> {
        let Inner::Tls(t) = &mut self.inner else {
            return None;
        };
        if t.emitted || !t.seen || !(end || t.complete()) {
            return None;
        }
        t.emitted = true;
        Some(TlsReady {
            ts: t.ts,
            client: t.client,
            info: std::mem::take(&mut t.info),
        })
    }

    /// The TLS bytes seen broke a limit or were not TLS after all.
    pub fn tls_malformed(&self) -> bool {
        matches!(&self.inner, Inner::Tls(t) if t.malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut Preface, dir: usize, b: &[u8]) -> Vec<(usize, Vec<u8>)> {
        let mut got = Vec::new();
        p.data(dir, b, 1, &mut |d, x| got.push((d, x.to_vec())));
        got
    }

    #[test]
    fn reverse_socks5_makes_the_answering_side_the_client() {
        let mut p = Preface::new(Some(0));
        assert!(feed(&mut p, 0, &[0x4e, 0x5a, 0x8d, 0x08, 0x87, 0x4e]).is_empty());
        assert!(feed(&mut p, 1, &[5, 1, 0]).is_empty());
        assert_eq!(p.take_switch(), Some(1));
        assert!(feed(&mut p, 0, &[5, 0]).is_empty());
        assert!(feed(&mut p, 1, &[5, 1, 0, 1, 74, 125, 131, 103, 0, 80]).is_empty());
        assert!(feed(&mut p, 0, &[5, 0, 0, 1, 74, 125, 131, 103, 0, 80]).is_empty());
        assert_eq!(
            feed(&mut p, 1, b"GET / HTTP/1.1\r\n"),
            vec![(1, b"GET / HTTP/1.1\r\n".to_vec())]
        );
        assert_eq!(p.socks_target(), Some("74.125.131.103"));
        assert_eq!(p.stripped, [6 + 2 + 10, 3 + 10]);
    }

    #[test]
    fn held_first_bytes_are_replayed_when_no_socks_follows() {
        let mut p = Preface::new(Some(0));
        assert!(feed(&mut p, 0, &[0, 1, 2]).is_empty());
        assert_eq!(p.stripped, [3, 0]);
        assert_eq!(feed(&mut p, 1, b"xyz"), vec![(0, vec![0, 1, 2]), (1, b"xyz".to_vec())]);
        assert_eq!(p.stripped, [0, 0]);
        assert!(p.passthrough() && p.take_switch().is_none());
        // HTTP is never held
        let mut p = Preface::new(Some(0));
        assert_eq!(
            feed(&mut p, 0, b"GET / HTTP/1.0\r\n"),
            vec![(0, b"GET / HTTP/1.0\r\n".to_vec())]
        );
    }
}
