//! Replay filters, as Zeek and Suricata have them for files: a BPF expression (compiled by
//! libpcap per link type, run on each frame as libpcap would on the wire) and a time range.
//! Frames left out are counted (`stats.capture.filtered`), never decoded.

use std::collections::HashMap;

use super::{Frame, Ts};

pub struct FrameFilter {
    expr: String,
    bpf: HashMap<u32, Option<pcap::BpfProgram>>,
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    pub filtered: u64,
}

/// Compile `expr` for a link type; the error is libpcap's own text.
fn compile(expr: &str, linktype: u32) -> Result<pcap::BpfProgram, String> {
    let dead = pcap::Capture::dead(pcap::Linktype(linktype as i32)).map_err(|e| e.to_string())?;
    dead.compile(expr, true).map_err(|e| e.to_string())
}

impl FrameFilter {
    /// None when there is nothing to filter. A bad expression is an error now (checked
    /// against Ethernet), not halfway through a capture.
    pub fn new(expr: &str, since: Option<Ts>, until: Option<Ts>) -> Result<Option<Self>, String> {
        if expr.trim().is_empty() && since.is_none() && until.is_none() {
            return Ok(None);
        }
        let mut bpf = HashMap::new();
        if !expr.trim().is_empty() {
            bpf.insert(1, Some(compile(expr, 1).map_err(|e| format!("--bpf {expr:?}: {e}"))?));
        }
        Ok(Some(FrameFilter {
            expr: expr.trim().to_string(),
            bpf,
            since,
            until,
            filtered: 0,
        }))
    }

    /// Does the frame pass? A link type the expression cannot be compiled for (it names
    /// fields that link type lacks) passes nothing, as libpcap would refuse the capture.
    pub fn pass(&mut self, f: &Frame<'_>) -> bool {
        let ok = self.since.is_none_or(|s| f.ts >= s)
            && self.until.is_none_or(|u| f.ts <= u)
            && (self.expr.is_empty() || {
                let expr = &self.expr;
                let p = self.bpf.entry(f.linktype).or_insert_with(|| {
                    compile(expr, f.linktype)
                        .inspect_err(|e| tracing::warn!("--bpf: link type {}: {e}; its frames are skipped", f.linktype))
                        .ok()
                });
                p.as_ref().is_some_and(|p| p.filter(f.data))
            });
        if !ok {
            self.filtered += 1;
        }
        ok
    }
}

/// A time for `--since`/`--until`: Unix seconds (`1764400000`, `1764400000.5`) or an
/// RFC 3339 / EVE time (`2026-11-29T09:05:00Z`, `2026-11-29 09:05:00`, `...+0100`; UTC
/// when no offset is given). Returns nanoseconds.
pub fn parse_time(s: &str) -> Result<Ts, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a time (use 2026-11-29T09:05:00Z or Unix seconds)");
    if let Ok(x) = s.parse::<f64>() {
        if !(0.0..1e11).contains(&x) {
            return Err(bad());
        }
        return Ok((x * 1e9) as Ts);
    }
    let t = s.replacen(' ', "T", 1);
    let secs = crate::report::parse_ts(&t).ok_or_else(bad)?;
    // Day, month, time must be in range (parse_ts only reads digits).
    let n = |r: std::ops::Range<usize>| t.get(r).and_then(|x| x.parse::<u32>().ok()).unwrap_or(99);
    if n(5..7) == 0 || n(5..7) > 12 || n(8..10) == 0 || n(8..10) > 31 || n(11..13) > 23 || n(14..16) > 59 {
        return Err(bad());
    }
    let frac = t
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| r.chars().take_while(|c| c.is_ascii_digit()).collect::<String>())
        .filter(|d| !d.is_empty())
        .map_or(0, |d| {
            let d: String = d.chars().chain(std::iter::repeat('0')).take(9).collect();
            d.parse::<u64>().unwrap_or(0)
        });
    u64::try_from(secs).map(|s| s * 1_000_000_000 + frac).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_until_take_rfc3339_eve_and_unix_times() {
        let t = 1_795_937_100 * 1_000_000_000; // 2026-11-29T07:25:00Z
        assert_eq!(parse_time("2026-11-29T07:25:00Z"), Ok(t));
        assert_eq!(parse_time("2026-11-29 07:25:00"), Ok(t));
        assert_eq!(parse_time("2026-11-29T08:25:00+0100"), Ok(t));
        assert_eq!(parse_time("2026-11-29T07:25:00.5+0000"), Ok(t + 500_000_000));
        assert_eq!(parse_time("1795937100"), Ok(t));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-29T07:25:00Z").is_err());
        assert!(parse_time("-5").is_err());
    }

    #[test]
    fn bpf_filters_frames_and_a_bad_expression_is_an_error() {
        assert!(FrameFilter::new("tcp port", None, None).is_err());
        let mut f = FrameFilter::new("tcp port 80", None, None).unwrap().unwrap();
        let mut frame = vec![0u8; 12];
        frame.extend([
            0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        frame.extend(1234u16.to_be_bytes());
        frame.extend(80u16.to_be_bytes());
        frame.extend([0u8; 16]);
        fn fr(data: &[u8], ts: Ts) -> Frame<'_> {
            Frame {
                ts,
                linktype: 1,
                data,
                orig_len: data.len() as u32,
            }
        }
        assert!(f.pass(&fr(&frame, 5)));
        let mut other = frame.clone();
        other[36..38].copy_from_slice(&8080u16.to_be_bytes());
        assert!(!f.pass(&fr(&other, 5)));
        assert_eq!(f.filtered, 1);
        let mut t = FrameFilter::new("", Some(10), Some(20)).unwrap().unwrap();
        assert!(!t.pass(&fr(&frame, 9)) && t.pass(&fr(&frame, 10)) && t.pass(&fr(&frame, 20)));
        assert!(!t.pass(&fr(&frame, 21)));
    }
}
