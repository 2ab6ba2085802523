//! Capture layer: where packets come from.
//!
//! `file` walks classic pcap and pcapng files held in memory (a read-only memory map for plain
//! files, an owned buffer for gzip'd captures and stdin) and yields [`Frame`]s that borrow the
//! packet bytes: no packet is copied at this layer. Live capture (libpcap) lands here too.

pub mod afpacket;
pub mod file;
pub mod filter;
pub mod live;

/// Packet time in nanoseconds since the Unix epoch. All windows and timeouts run on it.
pub use crate::util::Ts;

/// One captured frame. Borrowed from the capture buffer; never leaves the capture thread.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub ts: Ts,
    /// libpcap LINKTYPE_* value of the interface the frame was captured on.
    pub linktype: u32,
    /// Bytes captured (may be shorter than `orig_len` when cut by the snap length).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}
