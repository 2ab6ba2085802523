//! Live capture through AF_PACKET TPACKET_V3 rings, several per interface joined in one fanout
//! group (Linux only).
//!
//! Each ring is a memory map of `block_count` blocks of `block_size` bytes that the kernel
//! fills with packets and hands over whole (when full, or after `block_timeout` ms). The
//! rings of one interface share a `PACKET_FANOUT_HASH` group with the defrag flag: the kernel
//! hashes each packet's flow (symmetrically: both directions of a TCP connection hash alike;
//! fragments are reassembled first so they hash as their datagram) and gives it to one ring.
//! So each ring's reader can own its flows, reassembly and HTTP state without locks.
//!
//! The frames are read in place (no copy), except those whose VLAN tag the kernel stripped
//! into `tp_vlan_tci`: the tag is put back in a scratch buffer so the decoder sees the frame as
//! it was on the wire. Drops come from the socket's statistics (`tp_drops`, `tp_freeze_q_cnt`),
//! which the kernel resets on each read: they are added up here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

use super::{Frame, Ts};

/// How a ring is laid out (validated by the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    pub block_size: u32,
    pub block_count: u32,
    pub block_timeout_ms: u32,
    pub snaplen: u32,
    pub promiscuous: bool,
}

/// LINKTYPE_ETHERNET and LINKTYPE_RAW (IP without a link header).
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;

/// One TPACKET_V3 ring on one interface.
pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    cur: usize,
    pub linktype: u32,
    scratch: Vec<u8>,
    /// Totals from PACKET_STATISTICS (which resets on each read).
    pub packets: u64,
    pub drops: u64,
    pub freezes: u64,
}

// SAFETY: the map belongs to the ring alone; a ring is used by one thread at a time.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the map was returned by mmap with this length and is unmapped once.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.map_len);
        }
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T) -> Result<(), ()> {
    // SAFETY: v points to a live T of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(()) }
}

/// The capture link type of an interface, from its ARPHRD type: Ethernet-like devices
/// (Ethernet, loopback, veth) give Ethernet frames, tun devices bare IP.
fn linktype_of(iface: &str) -> Result<u32, String> {
    let t = std::fs::read_to_string(format!("/sys/class/net/{iface}/type"))
        .map_err(|_| format!("interface {iface}: no such interface"))?;
    match t.trim().parse::<u32>() {
        // ARPHRD_ETHER, ARPHRD_LOOPBACK
        Ok(1) | Ok(772) => Ok(LINKTYPE_ETHERNET),
        // ARPHRD_NONE (tun)
        Ok(65534) => Ok(LINKTYPE_RAW),
        _ => Err(format!(
            "interface {iface}: link type {} is not supported by af_packet (use capture.method = \"pcap\")",
            t.trim()
        )),
    }
}

/// Compile a BPF filter for `linktype` with libpcap and attach it to the socket.
fn attach_filter(fd: i32, linktype: u32, filter: &str) -> Result<(), String> {
    let dead = pcap::Capture::dead(pcap::Linktype(linktype as i32)).map_err(|e| e.to_string())?;
    let prog = dead.compile(filter, true).map_err(|e| e.to_string())?;
    let ins = prog.get_instructions();
    let fprog = libc::sock_fprog {
        len: ins.len() as u16,
        // SAFETY (layout): pcap's BpfInstruction is a transparent bpf_insn, the same layout as
        // the kernel's sock_filter (u16 code, u8 jt, u8 jf, u32 k).
        filter: ins.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog).map_err(|_| os_err("SO_ATTACH_FILTER"))
}

impl Ring {
    /// Open a ring on `iface` and join fanout group `group` (all rings of one interface share
    /// one group). Errors name the interface and the step that failed.
    pub fn open(iface: &str, cfg: &RingConfig, bpf: &str, group: u16) -> Result<Ring, String> {
        let e = |s: String| format!("interface {iface}: af_packet: {s}");
        let linktype = linktype_of(iface)?;
        let cname = std::ffi::CString::new(iface).map_err(|_| format!("interface {iface:?}: bad name"))?;
        // SAFETY: plain system calls on a socket this function owns.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("interface {iface}: no such interface"));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
        if raw < 0 {
            return Err(e(os_err("socket")));
        }
        // SAFETY: raw is a fresh descriptor owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let v3 = libc::tpacket_versions::TPACKET_V3 as i32;
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_VERSION, &v3).map_err(|_| e(os_err("PACKET_VERSION v3")))?;
        // The filter goes on before the socket is bound, so no unfiltered packet gets in.
        if !bpf.is_empty() {
            attach_filter(s, linktype, bpf).map_err(|x| e(format!("BPF filter {bpf:?}: {x}")))?;
        }
        // Frames are variable-sized in V3; frame_size/frame_nr only have to be consistent.
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: (cfg.block_size / frame_size) * cfg.block_count,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|_| e(os_err("PACKET_RX_RING")))?;
        let map_len = cfg.block_size as usize * cfg.block_count as usize;
        // SAFETY: maps the ring the kernel just set up, of exactly that size.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(e(os_err("mmap of the ring")));
        }
        let ring = Ring {
            fd,
            map: map as *mut u8,
            map_len,
            block_size: cfg.block_size as usize,
            block_count: cfg.block_count as usize,
            cur: 0,
            linktype,
            scratch: Vec::with_capacity(cfg.snaplen as usize + 4),
            packets: 0,
            drops: 0,
            freezes: 0,
        };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                s,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(e(os_err("bind")));
        }
        if cfg.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as i32,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|_| e(os_err("promiscuous mode")))?;
        }
        let arg: u32 = group as u32 | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
        setsockopt(s, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(|_| e(os_err("PACKET_FANOUT")))?;
        Ok(ring)
    }

    fn block(&self, i: usize) -> *mut u8 {
        // SAFETY (bounds): i < block_count, so the block lies inside the map.
        unsafe { self.map.add(i * self.block_size) }
    }

    fn status_ptr(&self, i: usize) -> *mut u32 {
        let bd = self.block(i) as *mut libc::tpacket_block_desc;
        // SAFETY: the block descriptor heads every block.
        unsafe { std::ptr::addr_of_mut!((*bd).hdr.bh1.block_status) }
    }

    fn ready(&self) -> bool {
        // SAFETY: the kernel writes this word; read it fresh each time.
        let st = unsafe { std::ptr::read_volatile(self.status_ptr(self.cur)) };
        st & libc::TP_STATUS_USER != 0
    }

    /// Hand the frames of the next full block to `f`, waiting up to `timeout_ms` for one.
    /// Returns the number of frames (0: none ready in time).
    pub fn next_block(&mut self, timeout_ms: i32, f: &mut dyn FnMut(&Frame<'_>)) -> usize {
        if !self.ready() {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe {
                libc::poll(&mut pfd, 1, timeout_ms);
            }
            if !self.ready() {
                return 0;
            }
        }
        fence(Ordering::Acquire);
        let base = self.block(self.cur);
        let bd = base as *const libc::tpacket_block_desc;
        // SAFETY: the block is ours until its status goes back to the kernel.
        let (num, first) = unsafe { ((*bd).hdr.bh1.num_pkts, (*bd).hdr.bh1.offset_to_first_pkt) };
        let bs = self.block_size;
        let mut off = first as usize;
        let mut n = 0;
        let hlen = std::mem::size_of::<libc::tpacket3_hdr>();
        for _ in 0..num {
            if off + hlen > bs {
                break;
            }
            // SAFETY: the header lies inside the block (checked above); unaligned read.
            let h: libc::tpacket3_hdr = unsafe { std::ptr::read_unaligned(base.add(off) as *const libc::tpacket3_hdr) };
            let start = off + h.tp_mac as usize;
            let len = h.tp_snaplen as usize;
            if start + len > bs {
                break;
            }
            // SAFETY: the frame lies inside the block (checked above).
            let data = unsafe { std::slice::from_raw_parts(base.add(start), len) };
            let ts = h.tp_sec as Ts * 1_000_000_000 + h.tp_nsec as Ts;
            let vlan = h.tp_status & libc::TP_STATUS_VLAN_VALID != 0;
            if vlan && self.linktype == LINKTYPE_ETHERNET && len >= 12 {
                let tpid = if h.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    h.hv1.tp_vlan_tpid
                } else {
                    0x8100
                };
                let sc = &mut self.scratch;
                sc.clear();
                sc.extend_from_slice(&data[..12]);
                sc.extend_from_slice(&tpid.to_be_bytes());
                sc.extend_from_slice(&(h.hv1.tp_vlan_tci as u16).to_be_bytes());
                sc.extend_from_slice(&data[12..]);
                f(&Frame {
                    ts,
                    linktype: self.linktype,
                    data: &self.scratch,
                    orig_len: h.tp_len.saturating_add(4),
                });
            } else {
                f(&Frame {
                    ts,
                    linktype: self.linktype,
                    data,
                    orig_len: h.tp_len,
                });
            }
            n += 1;
            if h.tp_next_offset == 0 {
                break;
            }
            off += h.tp_next_offset as usize;
        }
        fence(Ordering::Release);
        // SAFETY: give the block back to the kernel.
        unsafe { std::ptr::write_volatile(self.status_ptr(self.cur), libc::TP_STATUS_KERNEL) };
        self.cur = (self.cur + 1) % self.block_count;
        n
    }

    /// Read the socket's statistics (reset by the kernel on each read) into the totals;
    /// returns (packets, drops, freezes) since the last call.
    pub fn read_stats(&mut self) -> (u64, u64, u64) {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st is a valid tpacket_stats_v3 and len its size.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if r != 0 {
            return (0, 0, 0);
        }
        let d = (st.tp_packets as u64, st.tp_drops as u64, st.tp_freeze_q_cnt as u64);
        self.packets += d.0;
        self.drops += d.1;
        self.freezes += d.2;
        d
    }
}

/// The fanout group id of an interface for this process: distinct per interface, and unlikely
/// to collide with another process's group on the same interface.
pub fn fanout_group(ifindex_seed: usize) -> u16 {
    let pid = std::process::id();
    ((pid.wrapping_mul(2654435761) >> 8) as u16).wrapping_add(ifindex_seed as u16 * 0x101)
}

/// A byte count as the configuration would write it: `"4MiB"`, `"3145728B"`.
fn size_text(b: u64) -> String {
    for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{unit}", b / m);
        }
    }
    format!("{b}B")
}

/// Check a ring block size (bytes, any size the configuration can write) against the range and
/// the snap length.
pub fn check_block_size(bs: u64, snaplen: u32) -> Result<(), String> {
    let bst = size_text(bs);
    if bs == 0 {
        return Err("capture.block_size: must be more than 0 (a power of two from 4KiB to 256MiB)".into());
    }
    if bs < 4096 {
        return Err(format!(
            "capture.block_size: {bst} is too small (a power of two from 4KiB to 256MiB)"
        ));
    }
    if bs > 256 << 20 {
        return Err(format!(
            "capture.block_size: {bst} is too large (a power of two from 4KiB to 256MiB)"
        ));
    }
    if !bs.is_power_of_two() {
        return Err(format!(
            "capture.block_size: {bst} is not a power of two (e.g. 1MiB, 2MiB, 4MiB)"
        ));
    }
    if bs < snaplen as u64 + 128 {
        return Err(format!(
            "capture.block_size: {bst} cannot hold a {snaplen}-byte packet (capture.snaplen) and its 128-byte header"
        ));
    }
    Ok(())
}

/// Check a ring layout; the message names the key and the allowed range, on one line.
pub fn check(cfg: &RingConfig) -> Result<(), String> {
    check_block_size(cfg.block_size as u64, cfg.snaplen)?;
    let bs = cfg.block_size;
    if !(2..=65_536).contains(&cfg.block_count) {
        return Err(format!("capture.block_count: {} is not 2 to 65536", cfg.block_count));
    }
    let ring = bs as u64 * cfg.block_count as u64;
    if ring > 4 << 30 {
        return Err(format!(
            "capture.block_size x capture.block_count: {} per ring is too large (at most 4GiB)",
            size_text(ring)
        ));
    }
    if cfg.block_timeout_ms == 0 {
        return Err("capture.block_timeout: must be more than 0 (1ms to 10s)".into());
    }
    if cfg.block_timeout_ms > 10_000 {
        return Err(format!(
            "capture.block_timeout: {}ms is too long (1ms to 10s)",
            cfg.block_timeout_ms
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layouts_are_checked() {
        let ok = RingConfig {
            block_size: 1 << 20,
            block_count: 64,
            block_timeout_ms: 10,
            snaplen: 65535,
            promiscuous: true,
        };
        assert!(check(&ok).is_ok());
        let err = |c: RingConfig| check(&c).unwrap_err();
        for (c, key, why) in [
            (
                RingConfig {
                    block_size: 3 << 20,
                    ..ok
                },
                "capture.block_size",
                "3MiB is not a power of two",
            ),
            (RingConfig { block_size: 0, ..ok }, "capture.block_size", "more than 0"),
            (
                RingConfig { block_size: 2048, ..ok },
                "capture.block_size",
                "2KiB is too small",
            ),
            (
                RingConfig {
                    block_size: 512 << 20,
                    ..ok
                },
                "capture.block_size",
                "512MiB is too large",
            ),
            (
                RingConfig {
                    block_size: u32::MAX,
                    ..ok
                },
                "capture.block_size",
                "too large",
            ),
            (
                RingConfig {
                    block_size: 32768,
                    ..ok
                },
                "capture.block_size",
                "65535-byte packet (capture.snaplen)",
            ),
            (
                RingConfig { block_count: 1, ..ok },
                "capture.block_count",
                "1 is not 2 to 65536",
            ),
            (
                RingConfig {
                    block_timeout_ms: 0,
                    ..ok
                },
                "capture.block_timeout",
                "more than 0",
            ),
            (
                RingConfig {
                    block_timeout_ms: 60_000,
                    ..ok
                },
                "capture.block_timeout",
                "60000ms is too long",
            ),
            (
                RingConfig {
                    block_size: 256 << 20,
                    block_count: 32,
                    ..ok
                },
                "capture.block_size x capture.block_count",
                "8GiB per ring",
            ),
        ] {
            let e = err(c);
            assert!(e.starts_with(key) && e.contains(why) && !e.contains('\n'), "{c:?}: {e}");
        }
        // A small snaplen fits a small block.
        assert!(
            check(&RingConfig {
                block_size: 4096,
                snaplen: 1514,
                ..ok
            })
            .is_ok()
        );
    }
}
