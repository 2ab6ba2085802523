//! Live capture through libpcap (the `pcap` crate).
//!
//! One reader thread per interface copies packets into batches (one contiguous buffer per batch)
//! and hands them to the flow thread over a bounded channel. A full channel never blocks the
//! reader: the batch is dropped and counted (`queue_drops`), and the kernel's own drop counters
//! (from `pcap_stats`) are published for the `stats` event. Readers wake at least every 100 ms
//! to notice the stop flag.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tracing::{debug, warn};

use super::{Frame, Ts};
use crate::config::CaptureConfig;

/// Packets copied out of libpcap, in one buffer.
pub struct PacketBatch {
    pub linktype: u32,
    data: Vec<u8>,
    /// (timestamp, orig_len, start, end) per packet.
    index: Vec<(Ts, u32, usize, usize)>,
}

impl PacketBatch {
    fn new(linktype: u32) -> Self {
        PacketBatch {
            linktype,
            data: Vec::with_capacity(256 << 10),
            index: Vec::with_capacity(256),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        self.index.iter().map(|&(ts, orig_len, s, e)| Frame {
            ts,
            linktype: self.linktype,
            data: &self.data[s..e],
            orig_len,
        })
    }
}

/// Counters of one interface, shared with the stats.
#[derive(Debug, Default)]
pub struct IfaceStats {
    pub received: AtomicU64,
    pub kernel_dropped: AtomicU64,
    pub if_dropped: AtomicU64,
    pub queue_drops: AtomicU64,
    pub packets: AtomicU64,
}

pub struct Reader {
    pub name: String,
    pub stats: Arc<IfaceStats>,
    thread: JoinHandle<()>,
}

impl Reader {
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Open `iface` (errors name the interface and libpcap's reason) and start its reader.
pub fn start(
    iface: &str,
    cfg: &CaptureConfig,
    tx: Sender<PacketBatch>,
    stop: Arc<AtomicBool>,
) -> Result<Reader, String> {
    let err = |e: pcap::Error| format!("interface {iface}: {e}");
    let build = |nano: bool| -> Result<pcap::Capture<pcap::Active>, pcap::Error> {
        let mut c = pcap::Capture::from_device(iface)?
            .promisc(cfg.promiscuous)
            .snaplen(cfg.snaplen as i32)
            .buffer_size(cfg.buffer_size.min(i32::MAX as u32) as i32)
            .immediate_mode(cfg.immediate)
            .timeout(100);
        if nano {
            c = c.precision(pcap::Precision::Nano);
        }
        c.open()
    };
    // Not every platform offers nanosecond stamps.
    let (cap, nano) = match build(true) {
        Ok(c) => (c, true),
        Err(_) => (build(false).map_err(err)?, false),
    };
    // Non-blocking reads and our own poll(2) with a timeout: libpcap's blocking read on Linux
    // (TPACKET_V3) does not return on its timeout when no packet comes, so a quiet interface
    // would never let the reader see the stop flag.
    let mut cap = cap.setnonblock().map_err(err)?;
    if !cfg.bpf.is_empty() {
        cap.filter(&cfg.bpf, true)
            .map_err(|e| format!("interface {iface}: BPF filter {:?}: {e}", cfg.bpf))?;
    }
    let linktype = cap.get_datalink().0 as u32;
    let stats = Arc::new(IfaceStats::default());
    let st = stats.clone();
    let name = iface.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("apitap-cap-{iface}"))
        .spawn(move || read_loop(cap, linktype, nano, tx, stop, st))
        .map_err(|e| format!("interface {iface}: {e}"))?;
    Ok(Reader { name, stats, thread })
}

fn read_loop(
    mut cap: pcap::Capture<pcap::Active>,
    linktype: u32,
    nano: bool,
    tx: Sender<PacketBatch>,
    stop: Arc<AtomicBool>,
    st: Arc<IfaceStats>,
) {
    let mut batch = PacketBatch::new(linktype);
    let mut last_send = Instant::now();
    let mut last_stats = Instant::now();
    let send = |b: PacketBatch, st: &IfaceStats| {
        let n = b.len() as u64;
        match tx.try_send(b) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                st.queue_drops.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    };
    let mut draining = false;
    loop {
        // On stop, keep reading what the kernel already holds, then leave at the first
        // timeout: packets captured before SIGTERM are not lost.
        if !draining && stop.load(Ordering::Relaxed) {
            draining = true;
        }
        let mut idle = false;
        match cap.next_packet() {
            Ok(p) => {
                let h = p.header;
                let frac = h.ts.tv_usec as u64;
                let ts = h.ts.tv_sec as u64 * 1_000_000_000 + if nano { frac } else { frac * 1000 };
                let s = batch.data.len();
                batch.data.extend_from_slice(p.data);
                batch.index.push((ts, h.len, s, batch.data.len()));
                st.packets.fetch_add(1, Ordering::Relaxed);
            }
            // Non-blocking: nothing ready now.
            Err(pcap::Error::TimeoutExpired) if draining => break,
            Err(pcap::Error::TimeoutExpired) => {
                idle = true;
            }
            Err(e) => {
                warn!("capture stopped: {e}");
                break;
            }
        }
        if !batch.is_empty()
            && (batch.len() >= 256 || batch.data.len() >= 240 << 10 || last_send.elapsed() >= Duration::from_millis(50))
        {
            let full = std::mem::replace(&mut batch, PacketBatch::new(linktype));
            if !send(full, &st) {
                return;
            }
            last_send = Instant::now();
        }
        if idle {
            let mut pfd = libc::pollfd {
                fd: cap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            unsafe {
                libc::poll(&mut pfd, 1, 50);
            }
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            if let Ok(s) = cap.stats() {
                st.received.store(s.received as u64, Ordering::Relaxed);
                st.kernel_dropped.store(s.dropped as u64, Ordering::Relaxed);
                st.if_dropped.store(s.if_dropped as u64, Ordering::Relaxed);
            }
        }
    }
    if let Ok(s) = cap.stats() {
        st.received.store(s.received as u64, Ordering::Relaxed);
        st.kernel_dropped.store(s.dropped as u64, Ordering::Relaxed);
        st.if_dropped.store(s.if_dropped as u64, Ordering::Relaxed);
    }
    if !batch.is_empty() {
        // At shutdown the flow thread is still draining: wait for room rather than drop.
        let _ = tx.send_timeout(batch, Duration::from_secs(2));
    }
    debug!("reader done");
}
