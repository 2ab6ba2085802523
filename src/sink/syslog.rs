//! Syslog (RFC 5424) over UDP (RFC 5426, one event per datagram) or TCP with octet-counting
//! framing (RFC 6587 §3.4.1: `LEN SP MSG`), so a JSON line never splits or merges.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME apitap PROCID EVENT_TYPE - JSON` with PRI = facility * 8 + 6
//! (informational). The JSON is sent as it is; no BOM.

use std::io::{self, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Sink;

/// Largest datagram we send; longer events are cut and counted as errors by the caller.
const MAX_UDP: usize = 65_000;

enum Conn {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
}

pub struct Syslog {
    conn: Conn,
    header_tail: String,
    pri: u8,
    buf: Vec<u8>,
}

impl Syslog {
    pub fn udp(addr: &str, host: &str, facility: u8) -> io::Result<Self> {
        let target = resolve(addr)?;
        let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let s = UdpSocket::bind(bind)?;
        s.connect(target)?;
        Ok(Self::new(Conn::Udp(s), host, facility))
    }

    pub fn tcp(addr: &str, host: &str, facility: u8) -> io::Result<Self> {
        let target = resolve(addr)?;
        let s = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.set_nodelay(true)?;
        Ok(Self::new(
            Conn::Tcp(BufWriter::with_capacity(256 << 10, s)),
            host,
            facility,
        ))
    }

    fn new(conn: Conn, host: &str, facility: u8) -> Self {
        let host: String = host.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
        let host = if host.is_empty() { "-".to_string() } else { host };
        Syslog {
            conn,
            header_tail: format!("{host} apitap {}", std::process::id()),
            pri: facility.min(23) * 8 + 6,
            buf: Vec::new(),
        }
    }

    fn frame(&mut self, line: &[u8]) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let ts = crate::util::fmt_ts(now.as_nanos() as u64);
        // RFC 5424 wants RFC 3339: "+0000" becomes "Z".
        let ts = ts.strip_suffix("+0000").map(|t| format!("{t}Z")).unwrap_or(ts);
        let msgid = event_type(line);
        self.buf.clear();
        let _ = write!(self.buf, "<{}>1 {ts} {} {msgid} - ", self.pri, self.header_tail);
        self.buf.extend_from_slice(line);
    }
}

/// The `event_type` of a JSON line, as the syslog MSGID (cheap scan, no parse).
fn event_type(line: &[u8]) -> &str {
    const K: &[u8] = b"\"event_type\":\"";
    memchr::memmem::find(line, K)
        .and_then(|i| {
            let rest = &line[i + K.len()..];
            let end = memchr::memchr(b'"', rest)?;
            std::str::from_utf8(&rest[..end]).ok()
        })
        .filter(|s| !s.is_empty() && s.len() <= 32)
        .unwrap_or("-")
}

fn resolve(addr: &str) -> io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: no address")))
}

impl Sink for Syslog {
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.frame(line);
            match &mut self.conn {
                Conn::Udp(s) => {
                    let n = self.buf.len().min(MAX_UDP);
                    s.send(&self.buf[..n])?;
                }
                Conn::Tcp(w) => {
                    write!(w, "{} ", self.buf.len())?;
                    w.write_all(&self.buf)?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.conn {
            Conn::Udp(_) => Ok(()),
            Conn::Tcp(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn tcp_frames_are_octet_counted_rfc5424() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut s = Syslog::tcp(&addr, "sensor-1", 16).unwrap();
        s.write_lines(b"{\"event_type\":\"http\",\"a\":1}\n{\"event_type\":\"stats\"}\n")
            .unwrap();
        s.flush().unwrap();
        drop(s);
        let (mut c, _) = l.accept().unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        let (len, rest) = got.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        let first = &rest[..len];
        assert!(first.starts_with("<134>1 "), "{first}");
        assert!(
            first.contains(" sensor-1 apitap ") && first.contains(" http - {\"event_type\":\"http\",\"a\":1}"),
            "{first}"
        );
        assert!(rest[len..].contains("stats - {\"event_type\":\"stats\"}"));
    }
}
