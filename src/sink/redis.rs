//! Redis Stream output: each event is appended with `XADD STREAM MAXLEN ~ N * event JSON`, as
//! Suricata's redis output does in stream mode, for Logstash, Vector or a consumer group.
//!
//! A batch (up to 256 lines) goes out as one pipeline: one round trip per batch. The sink thread
//! around it (see [`super::run`]) does the queueing, the drop counting and the reconnects with
//! backoff. A failed pipeline is not sent again: Redis may have applied part of it, and sending
//! it again would duplicate events; its events are counted as dropped.
//!
//! URL: `redis://[[USER]:PASSWORD@]HOST:PORT/STREAM[?maxlen=N]` (`rediss://` is not supported).
//! The password never shows in logs or stats.

use std::io;
use std::time::Duration;

use super::Sink;

/// Stream length kept by default (`MAXLEN ~`): about 100,000 events.
pub const DEFAULT_MAXLEN: u64 = 100_000;

/// A parsed Redis sink address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSpec {
    /// `redis://[auth@]host:port/` as the client takes it (holds the password, if any).
    pub url: String,
    /// `host:port`, for messages.
    pub addr: String,
    pub stream: String,
    pub maxlen: u64,
    has_auth: bool,
}

impl RedisSpec {
    /// Parse what follows `redis://`.
    pub fn parse(rest: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("redis output: {why} (use redis://HOST:PORT/STREAM[?maxlen=N])"));
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let Some((authority, stream)) = main.split_once('/') else {
            return bad("no stream name");
        };
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, authority),
        };
        match hostport.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return bad(&format!("address {hostport:?} is not HOST:PORT")),
        }
        if stream.is_empty() {
            return bad("no stream name");
        }
        if stream.len() > 256 || !stream.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return bad(&format!(
                "stream name {:?} must be 1 to 256 printable characters without '/'",
                stream.chars().take(64).collect::<String>()
            ));
        }
        let mut maxlen = DEFAULT_MAXLEN;
        for kv in query.into_iter().flat_map(|q| q.split('&')).filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("maxlen", v)) => match v.parse::<u64>() {
                    Ok(n) if n >= 1 => maxlen = n,
                    _ => return bad(&format!("maxlen {v:?} must be a whole number of at least 1")),
                },
                _ => {
                    let key = kv.split('=').next().unwrap_or(kv);
                    return bad(&format!("unknown option {key:?} (only maxlen)"));
                }
            }
        }
        let url = match auth {
            Some(a) => format!("redis://{a}@{hostport}/"),
            None => format!("redis://{hostport}/"),
        };
        // Let the client check what we did not (e.g. a bracketed IPv6 address).
        if redis::Client::open(url.as_str()).is_err() {
            return bad(&format!("address {hostport:?} is not a valid Redis address"));
        }
        Ok(RedisSpec {
            url,
            addr: hostport.to_string(),
            stream: stream.to_string(),
            maxlen,
            has_auth: auth.is_some(),
        })
    }
}

impl std::fmt::Display for RedisSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = if self.has_auth { "***@" } else { "" };
        write!(f, "redis://{auth}{}/{}", self.addr, self.stream)?;
        if self.maxlen != DEFAULT_MAXLEN {
            write!(f, "?maxlen={}", self.maxlen)?;
        }
        Ok(())
    }
}

fn io_err(e: redis::RedisError) -> io::Error {
    let kind = if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else if e.is_connection_dropped() || e.is_io_error() {
        io::ErrorKind::ConnectionReset
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

pub struct RedisSink {
    con: redis::Connection,
    stream: String,
    maxlen: String,
    pipe: redis::Pipeline,
    queued: usize,
}

impl RedisSink {
    pub fn connect(spec: &RedisSpec) -> io::Result<Self> {
        let client = redis::Client::open(spec.url.as_str()).map_err(io_err)?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(3))
            .map_err(io_err)?;
        con.set_write_timeout(Some(Duration::from_secs(5))).map_err(io_err)?;
        con.set_read_timeout(Some(Duration::from_secs(5))).map_err(io_err)?;
        Ok(RedisSink {
            con,
            stream: spec.stream.clone(),
            maxlen: spec.maxlen.to_string(),
            pipe: redis::pipe(),
            queued: 0,
        })
    }
}

/// Commands sent per round trip at most.
const PIPE_MAX: usize = 512;

impl Sink for RedisSink {
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.pipe
                .cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(&self.maxlen)
                .arg("*")
                .arg("event")
                .arg(line)
                .ignore();
            self.queued += 1;
            if self.queued >= PIPE_MAX {
                self.flush()?;
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        self.queued = 0;
        pipe.exec(&mut self.con).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_parse_with_maxlen_and_hide_the_password() {
        let s = RedisSpec::parse("127.0.0.1:6379/apitap").unwrap();
        assert_eq!((s.stream.as_str(), s.maxlen), ("apitap", DEFAULT_MAXLEN));
        assert_eq!(s.url, "redis://127.0.0.1:6379/");
        let s = RedisSpec::parse(":s3cret@cache:6380/eve?maxlen=500").unwrap();
        assert_eq!((s.stream.as_str(), s.maxlen), ("eve", 500));
        assert_eq!(s.to_string(), "redis://***@cache:6380/eve?maxlen=500");
        assert!(!format!("{s}").contains("s3cret"));
        for bad in [
            "127.0.0.1:6379",
            "127.0.0.1:6379/",
            "127.0.0.1/eve",
            "127.0.0.1:99999/eve",
            ":6379/eve",
            "h:1/eve?maxlen=0",
            "h:1/eve?maxlen=x",
            "h:1/eve?count=3",
            "h:1/a b",
        ] {
            assert!(RedisSpec::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
