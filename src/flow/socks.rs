//! The SOCKS handshake (SOCKS4, SOCKS4a, SOCKS5 with RFC 1929 user/password), read passively
//! so that what the tunnel carries after it can be analysed as if it were a direct connection.
//!
//! Each direction is read on its own (a mirror delivers them interleaved anyhow): the client
//! sends greeting, optional authentication and request; the server answers each. Messages are
//! parsed from the start of a small per-direction buffer ([`MAX_MSG`]); the bytes after a
//! direction's last handshake message are the tunnel's. User names and passwords are skipped,
//! never kept.

/// Longest handshake message accepted (a SOCKS4 user id or a SOCKS5 user/password message is at
/// most a few hundred bytes).
pub const MAX_MSG: usize = 1024;

/// Where one message parse stands.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Need,
    /// Bytes consumed.
    Took(usize),
    Bad,
}

/// One SOCKS connection's handshake.
#[derive(Debug, Default)]
pub struct Socks {
    pub version: u8,
    /// "host:port" the client asked for.
    pub target: Option<String>,
    /// Stage per direction (client 0..=2, server 0..=2); `DONE` when its handshake is over.
    stage: [u8; 2],
    client: usize,
    buf: [Vec<u8>; 2],
    /// The server refused, or a message was not SOCKS: the rest is not analysed.
    pub failed: bool,
    /// The server granted the request.
    pub granted: bool,
}

const DONE: u8 = 9;

/// Could `b`, the client's first bytes, open a SOCKS handshake?
pub fn looks_like_socks(b: &[u8]) -> bool {
    match b {
        // SOCKS4 CONNECT or BIND: version, command, port, address, a NUL-terminated user id.
        [4, 1 | 2, _, _, _, _, _, _, ..] => true,
        // SOCKS5 greeting: version, n methods, exactly n methods (nothing else yet).
        [5, n, rest @ ..] => *n >= 1 && rest.len() == *n as usize,
        _ => false,
    }
}

impl Socks {
    pub fn new(client: usize, version: u8) -> Self {
        Socks {
            version,
            client: client & 1,
            ..Socks::default()
        }
    }

    /// Is direction `dir`'s handshake over (its later bytes are the tunnel's)?
    pub fn done(&self, dir: usize) -> bool {
        self.stage[dir & 1] == DONE
    }

    /// Bytes of direction `dir` while its handshake runs; returns the tunnel bytes that follow
    /// the handshake in them (copied out of the buffer), if any.
    pub fn data(&mut self, dir: usize, b: &[u8]) -> Option<Vec<u8>> {
        let dir = dir & 1;
        if self.failed || self.done(dir) {
            return None;
        }
        self.buf[dir].extend_from_slice(b);
        loop {
            let step = if dir == self.client {
                self.client_msg()
            } else {
                self.server_msg()
            };
            match step {
                Step::Need => {
                    if self.buf[dir].len() > MAX_MSG {
                        self.failed = true;
                    }
                    return None;
                }
                Step::Bad => {
                    self.failed = true;
                    self.buf[dir] = Vec::new();
                    return None;
                }
                Step::Took(n) => {
                    self.buf[dir].drain(..n.min(self.buf[dir].len()));
                    if self.done(dir) {
                        let rest = std::mem::take(&mut self.buf[dir]);
                        return (!rest.is_empty()).then_some(rest);
                    }
                    if self.buf[dir].is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    fn client_msg(&mut self) -> Step {
        let b = &self.buf[self.client];
        let Some(&v) = b.first() else { return Step::Need };
        let st = self.stage[self.client];
        match (self.version, st, v) {
            (4, 0, 4) => {
                if b.len() < 9 {
                    return Step::Need;
                }
                let port = u16::from_be_bytes([b[2], b[3]]);
                let ip = [b[4], b[5], b[6], b[7]];
                let Some(uid_end) = b[8..].iter().position(|x| *x == 0).map(|p| 8 + p) else {
                    return Step::Need;
                };
                let mut end = uid_end + 1;
                // SOCKS4a: 0.0.0.x (x != 0) announces a host name after the user id.
                let host = if ip[..3] == [0, 0, 0] && ip[3] != 0 {
                    let Some(p) = b[end..].iter().position(|x| *x == 0) else {
                        return Step::Need;
                    };
                    let h = String::from_utf8_lossy(&b[end..end + p]).into_owned();
                    end += p + 1;
                    h
                } else {
                    std::net::Ipv4Addr::from(ip).to_string()
                };
                self.target = Some(host_port(&host, port));
                self.stage[self.client] = DONE;
                Step::Took(end)
            }
            (5, 0, 5) => {
                let Some(&n) = b.get(1) else { return Step::Need };
                if b.len() < 2 + n as usize {
                    return Step::Need;
                }
                self.stage[self.client] = 1;
                Step::Took(2 + n as usize)
            }
            (5, 1, 1) => {
                // RFC 1929: version 1, user name, password (skipped, never kept).
                let Some(&ul) = b.get(1) else { return Step::Need };
                let Some(&pl) = b.get(2 + ul as usize) else {
                    return Step::Need;
                };
                let n = 3 + ul as usize + pl as usize;
                if b.len() < n {
                    return Step::Need;
                }
                Step::Took(n)
            }
            (5, 1, 5) => {
                let Some((target, n)) = socks5_addr(b) else {
                    return if b.len() >= 4 && !matches!(b[3], 1 | 3 | 4) {
                        Step::Bad
                    } else {
                        Step::Need
                    };
                };
                self.target = Some(target);
                self.stage[self.client] = DONE;
                Step::Took(n)
            }
            _ => Step::Bad,
        }
    }

    fn server_msg(&mut self) -> Step {
        let s = self.client ^ 1;
        let b = &self.buf[s];
        let Some(&v) = b.first() else { return Step::Need };
        let st = self.stage[s];
        match (self.version, st, v) {
            (4, 0, 0) => {
                if b.len() < 8 {
                    return Step::Need;
                }
                if b[1] != 90 {
                    return Step::Bad; // 91-93: rejected
                }
                self.granted = true;
                self.stage[s] = DONE;
                Step::Took(8)
            }
            (5, 0, 5) => {
                let Some(&m) = b.get(1) else { return Step::Need };
                match m {
                    0 => self.stage[s] = 2,
                    2 => self.stage[s] = 1,
                    _ => return Step::Bad, // 0xFF: no acceptable method; GSSAPI: opaque
                }
                Step::Took(2)
            }
            (5, 1, 1) => {
                let Some(&status) = b.get(1) else { return Step::Need };
                if status != 0 {
                    return Step::Bad;
                }
                self.stage[s] = 2;
                Step::Took(2)
            }
            (5, 2, 5) => {
                let Some(&rep) = b.get(1) else { return Step::Need };
                if rep != 0 {
                    return Step::Bad;
                }
                let Some((_, n)) = socks5_addr(b) else {
                    return if b.len() >= 4 && !matches!(b[3], 1 | 3 | 4) {
                        Step::Bad
                    } else {
                        Step::Need
                    };
                };
                self.granted = true;
                self.stage[s] = DONE;
                Step::Took(n)
            }
            _ => Step::Bad,
        }
    }
}

/// A SOCKS5 request or reply: VER CMD/REP RSV ATYP ADDR PORT; (target, length).
fn socks5_addr(b: &[u8]) -> Option<(String, usize)> {
    let atyp = *b.get(3)?;
    let (host, at) = match atyp {
        1 => {
            let a = b.get(4..8)?;
            (std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(), 8)
        }
        3 => {
            let n = *b.get(4)? as usize;
            (String::from_utf8_lossy(b.get(5..5 + n)?).into_owned(), 5 + n)
        }
        4 => {
            let a: [u8; 16] = b.get(4..20)?.try_into().ok()?;
            (format!("[{}]", std::net::Ipv6Addr::from(a)), 20)
        }
        _ => return None,
    };
    let p = b.get(at..at + 2)?;
    Some((host_port(&host, u16::from_be_bytes([p[0], p[1]])), at + 2))
}

fn host_port(host: &str, port: u16) -> String {
    let host: String = host.chars().filter(|c| !c.is_control()).take(255).collect();
    if port == 80 { host } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks4a_handshake_then_tunnel_bytes() {
        let mut s = Socks::new(0, 4);
        let mut req = vec![4, 1, 0, 80, 0, 0, 0, 1];
        req.extend(b"user\0www.example.com\0GET / HTTP/1.1\r\n");
        assert!(looks_like_socks(&req));
        assert_eq!(s.data(0, &req[..10]), None);
        assert_eq!(s.data(0, &req[10..]).as_deref(), Some(&b"GET / HTTP/1.1\r\n"[..]));
        assert_eq!(s.target.as_deref(), Some("www.example.com"));
        assert_eq!(s.data(1, &[0, 90, 0, 0, 0, 0, 0, 0]), None);
        assert!(s.granted && s.done(1) && !s.failed);
    }

    #[test]
    fn socks5_with_password_then_tunnel_bytes() {
        let mut s = Socks::new(1, 5);
        assert!(looks_like_socks(&[5, 2, 0, 2]));
        assert_eq!(s.data(1, &[5, 2, 0, 2]), None);
        assert_eq!(s.data(0, &[5, 2]), None);
        assert_eq!(s.data(1, b"\x01\x03bob\x06secret"), None);
        assert_eq!(s.data(0, &[1, 0]), None);
        let mut req = vec![5, 1, 0, 3, 7];
        req.extend(b"api.lab");
        req.extend(8080u16.to_be_bytes());
        assert_eq!(s.data(1, &req), None);
        assert_eq!(s.target.as_deref(), Some("api.lab:8080"));
        let r = s.data(0, &[5, 0, 0, 1, 10, 0, 0, 1, 0x1f, 0x90, b'H', b'T']);
        assert_eq!(r.as_deref(), Some(&b"HT"[..]));
        assert!(s.granted && s.done(0) && s.done(1));
    }

    #[test]
    fn random_handshakes_never_panic_and_stay_bounded() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut s = Socks::new(round % 2, [4, 5][round % 2]);
            for _ in 0..20 {
                let n = (rnd() % 40) as usize;
                let mut b: Vec<u8> = (0..n).map(|_| rnd() as u8 % 8).collect();
                if let Some(f) = b.first_mut() {
                    *f = [0, 1, 4, 5][(rnd() % 4) as usize];
                }
                s.data((rnd() % 2) as usize, &b);
                assert!(s.buf.iter().all(|b| b.len() <= MAX_MSG + 40));
            }
        }
    }

    #[test]
    fn refusals_and_garbage_fail_without_panic() {
        let mut s = Socks::new(0, 5);
        s.data(0, &[5, 1, 0]);
        s.data(1, &[5, 0xff]);
        assert!(s.failed);
        let mut s = Socks::new(0, 4);
        s.data(0, &[4, 1, 0, 80, 1, 2, 3, 4, 0]);
        s.data(1, &[0, 91, 0, 0, 0, 0, 0, 0]);
        assert!(s.failed && !s.granted);
        // a user id that never ends
        let mut s = Socks::new(0, 4);
        s.data(0, &[4, 1, 0, 80, 1, 2, 3, 4]);
        s.data(0, &[b'a'; 2000]);
        assert!(s.failed);
        let mut s = Socks::new(0, 5);
        s.data(0, &[5, 1, 0]);
        s.data(0, &[5, 1, 0, 9, 1, 2]);
        assert!(s.failed);
    }
}
