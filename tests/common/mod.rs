//! Helpers shared by integration tests: a streaming pcap writer, frame builders, and a runner
//! that records a child's peak anonymous memory.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Ethernet/IPv4/TCP frame; checksums zero (a sensor never verifies them).
pub fn tcp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let total = 40 + payload.len();
    let mut f = Vec::with_capacity(14 + total);
    f.extend([0u8; 12]);
    f.extend([
        0x08,
        0x00,
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend(src);
    f.extend(dst);
    f.extend(sp.to_be_bytes());
    f.extend(dp.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.extend(ack.to_be_bytes());
    f.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// Classic pcap (Ethernet), written as it goes; one millisecond between packets.
pub struct PcapWriter {
    w: BufWriter<File>,
    t_us: u64,
}

impl PcapWriter {
    pub fn create(p: &Path) -> Self {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(p).expect("create pcap"));
        w.write_all(&[
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
        ])
        .expect("write");
        PcapWriter {
            w,
            t_us: 1_700_000_000_000_000,
        }
    }

    pub fn frame(&mut self, f: &[u8]) {
        self.t_us += 1000;
        let (s, us) = ((self.t_us / 1_000_000) as u32, (self.t_us % 1_000_000) as u32);
        for v in [s, us, f.len() as u32, f.len() as u32] {
            self.w.write_all(&v.to_le_bytes()).expect("write");
        }
        self.w.write_all(f).expect("write");
    }

    pub fn finish(mut self) {
        self.w.flush().expect("flush");
    }
}

/// A client/server conversation on one connection, with the handshake done.
pub struct Conv {
    pub c: [u8; 4],
    pub s: [u8; 4],
    pub cp: u16,
    pub sp: u16,
    pub cseq: u32,
    pub sseq: u32,
}

impl Conv {
    pub fn open(w: &mut PcapWriter, c: [u8; 4], s: [u8; 4], cp: u16, sp: u16) -> Conv {
        let mut v = Conv {
            c,
            s,
            cp,
            sp,
            cseq: 1000,
            sseq: 500_000,
        };
        w.frame(&tcp_frame(c, s, cp, sp, v.cseq, 0, 0x02, b""));
        w.frame(&tcp_frame(s, c, sp, cp, v.sseq, v.cseq + 1, 0x12, b""));
        v.cseq += 1;
        v.sseq += 1;
        w.frame(&tcp_frame(c, s, cp, sp, v.cseq, v.sseq, 0x10, b""));
        v
    }

    pub fn client(&mut self, w: &mut PcapWriter, d: &[u8]) {
        w.frame(&tcp_frame(
            self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, 0x18, d,
        ));
        self.cseq = self.cseq.wrapping_add(d.len() as u32);
    }

    pub fn server(&mut self, w: &mut PcapWriter, d: &[u8]) {
        w.frame(&tcp_frame(
            self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, 0x18, d,
        ));
        self.sseq = self.sseq.wrapping_add(d.len() as u32);
    }
}

fn rss_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Run apitap with `args`; returns (status, stdout, stderr, peak anonymous RSS in KiB): what
/// apitap allocates, not the executable's file-backed pages.
pub fn run_measured(args: &[&str]) -> (ExitStatus, String, String, u64) {
    run_peak(args, "RssAnon:")
}

/// [`run_measured`] with the peak of another `/proc/PID/status` line (`RssFile:`: resident
/// file-backed pages, the executable's and any file apitap maps).
pub fn run_peak(args: &[&str], key: &str) -> (ExitStatus, String, String, u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let out_p = dir.path().join("out");
    let err_p = dir.path().join("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_apitap"))
        .args(args)
        .stdout(Stdio::from(File::create(&out_p).expect("out")))
        .stderr(Stdio::from(File::create(&err_p).expect("err")))
        .spawn()
        .expect("apitap");
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = rss_kb(child.id(), key) {
            peak = peak.max(kb);
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    (
        status,
        std::fs::read_to_string(out_p).unwrap_or_default(),
        std::fs::read_to_string(err_p).unwrap_or_default(),
        peak,
    )
}

/// The final `stats` object of an output.
pub fn final_stats(out: &str) -> serde_json::Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event_type"] == "stats")
        .last()
        .map(|e| e["stats"].clone())
        .expect("a stats event")
}

/// Is `cmd` on the PATH? (Tests that need a tool say SKIPPED when it is not.)
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null 2>&1"))
        .status()
        .is_ok_and(|s| s.success())
}
