//! gRPC over HTTP/2: the length-prefixed messages of one direction of a call, and the call's
//! summary (`api.grpc`). Payloads are protobuf without a schema: counted and sized, never decoded.

/// A call's summary, as SPEC §4b writes it under `api.grpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grpc {
    /// `pkg.Service` from the path `/pkg.Service/Method`.
    pub service: String,
    pub method: String,
    /// `grpc-status` from the trailers (or a trailers-only response); `None` when never seen.
    pub status: Option<u32>,
    /// `grpc-message`, percent-decoded.
    pub message: Option<String>,
    pub request_messages: u64,
    pub response_messages: u64,
    /// Bytes of the messages (prefixes excluded), each way.
    pub request_message_bytes: u64,
    pub response_message_bytes: u64,
    /// Some message had its compressed flag set.
    pub compressed: bool,
}

impl Grpc {
    /// A gRPC error: any status but OK (0).
    pub fn is_error(&self) -> bool {
        self.status.is_some_and(|s| s != 0)
    }

    /// The HTTP status a failed call's code maps to (google.rpc.Code's documented mapping, as
    /// grpc-gateway uses it); `None` for OK or no status.
    pub fn http_status(&self) -> Option<u16> {
        Some(match self.status? {
            0 => return None,
            1 => 499,
            3 | 9 | 11 => 400,
            4 => 504,
            5 => 404,
            6 | 10 => 409,
            7 => 403,
            8 => 429,
            12 => 501,
            14 => 503,
            16 => 401,
            _ => 500,
        })
    }
}

/// Is this a gRPC content type (`application/grpc`, `application/grpc+proto`, `;...`)?
pub fn is_grpc(content_type: &str) -> bool {
    let ct = content_type.trim_start().as_bytes();
    ct.len() >= 16
        && ct[..16].eq_ignore_ascii_case(b"application/grpc")
        && ct.get(16).is_none_or(|c| matches!(c, b'+' | b';' | b' '))
}

/// `/pkg.Service/Method` into its two parts.
pub fn split_path(path: &str) -> (String, String) {
    let p = path.split('?').next().unwrap_or(path);
    let p = p.strip_prefix('/').unwrap_or(p);
    match p.rsplit_once('/') {
        Some((s, m)) => (s.to_string(), m.to_string()),
        None => (p.to_string(), String::new()),
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The message framing of one direction of a call: 1 byte compressed flag, 4 bytes length,
/// then the message. Survives a loss inside a message (the length says where the next starts);
/// a loss across a prefix stops the count (`lost`).
#[derive(Debug, Clone, Default)]
pub struct Framer {
    prefix: [u8; 5],
    have: u8,
    /// Message bytes still to come.
    left: u64,
    pub messages: u64,
    pub bytes: u64,
    pub compressed: bool,
    pub lost: bool,
}

impl Framer {
    pub fn data(&mut self, mut d: &[u8]) {
        if self.lost {
            return;
        }
        while !d.is_empty() {
            if self.left > 0 {
                let n = (d.len() as u64).min(self.left);
                self.left -= n;
                d = &d[n as usize..];
                continue;
            }
            let n = (5 - self.have as usize).min(d.len());
            self.prefix[self.have as usize..self.have as usize + n].copy_from_slice(&d[..n]);
            self.have += n as u8;
            d = &d[n..];
            if self.have == 5 {
                self.have = 0;
                self.messages += 1;
                self.compressed |= self.prefix[0] & 1 != 0;
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                self.left = len as u64;
                self.bytes += len as u64;
            }
        }
    }

    /// `n` bytes of this direction's data were lost.
    pub fn gap(&mut self, n: u64) {
        if self.have == 0 && n <= self.left {
            self.left -= n;
        } else {
            self.lost = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_counted_across_frames_and_losses() {
        let mut f = Framer::default();
        let msg = |c: u8, body: &[u8]| {
            let mut v = vec![c];
            v.extend_from_slice(&(body.len() as u32).to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        let mut all = msg(0, b"hello");
        all.extend(msg(1, b""));
        all.extend(msg(0, &[7; 300]));
        for b in all.chunks(3) {
            f.data(b);
        }
        assert_eq!((f.messages, f.bytes, f.compressed, f.lost), (3, 305, true, false));
        // 8 of 15 bytes, then the other 7 lost: the next message is still found
        f.data(&msg(0, &[1; 10])[..8]);
        f.gap(7);
        f.data(&msg(0, b"x"));
        assert_eq!((f.messages, f.lost), (5, false));
        f.data(&[0, 0]);
        f.gap(10);
        assert!(f.lost);
    }

    #[test]
    fn grpc_content_types_and_paths() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("Application/GRPC; charset=x"));
        assert!(!is_grpc("application/grpc-web"));
        assert!(!is_grpc("application/json"));
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            ("helloworld.Greeter".into(), "SayHello".into())
        );
        assert_eq!(percent_decode("not%20found%zz"), "not found%zz");
    }
}
