//! What comes before (or instead of) HTTP on a connection: a SOCKS handshake, whose tunnel is
//! then analysed like a direct connection, and TLS, whose handshake is read for a `tls` event
//! (nothing after it can be read without keys).
//!
//! A connection's first bytes decide: a SOCKS greeting from the client starts [`Socks`]; a
//! ClientHello (or, picked up late, a ServerHello) starts [`TlsState`]; anything else goes to
//! the HTTP parser untouched, and from then on every chunk does (one branch on the hot path).
//! After a SOCKS handshake the tunnel's first bytes decide again (HTTPS through SOCKS is TLS).
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

pub struct Preface {
    client: Option<usize>,
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

    /// Bytes of direction `dir`; what belongs to HTTP is handed to `pass`.
    pub fn data(&mut self, dir: usize, b: &[u8], ts: Ts, pass: &mut dyn FnMut(&[u8])) {
        let dir = dir & 1;
        if b.is_empty() {
            return;
        }
        if self.socks.is_none()
            && matches!(self.inner, Inner::Detect)
            && self.client == Some(dir)
            && self.stripped == [0, 0]
            && socks::looks_like_socks(b)
        {
            self.socks = Some(Box::new(Socks::new(dir, b[0])));
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

    fn inner_data(&mut self, dir: usize, b: &[u8], ts: Ts, pass: &mut dyn FnMut(&[u8])) {
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
            Inner::Pass | Inner::Detect => pass(b),
        }
    }

    /// `n` bytes of direction `dir` were lost; `pass` hands a gap to the HTTP parser.
    pub fn gap(&mut self, dir: usize, n: u64, pass: &mut dyn FnMut(u64)) {
        let dir = dir & 1;
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
