//! Process-wide memory settings applied once at startup.
//!
//! mimalloc asks for transparent huge pages on its arenas (`MADV_HUGEPAGE`). apitap's heap
//! turns over fast (body buffers, events and inflate states allocated on one thread, freed on
//! another), so the allocator keeps purging freed ranges and faulting them back in: with huge
//! pages each fault zeroes 2 MiB (`clear_page_erms`: 3-7% of the samples of a replay of the
//! mixed capture), and a partly used huge page counts whole in the resident size. With them
//! off, 4 KiB faults zero what is touched. Replay of the 1.6 GB mixed capture (loaded
//! machine, 3+ runs each): clear_page_erms 40-250 ms -> 3-15 ms of samples, system time
//! 0.33-0.46 s -> 0.21-0.25 s, peak RSS 115-126 MB -> 95-98 MB; on the 300k-call API capture
//! peak RSS 90-97 MB -> 75 MB with no more CPU.

/// Turn transparent huge pages off for this process (`PR_SET_THP_DISABLE`, Linux). Checked by
/// the kernel at every page fault, so it also covers memory the allocator mapped before this
/// call. Returns whether the setting is in effect.
pub fn disable_thp() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with these integer arguments only sets a flag on this process.
        unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0,
            );
            libc::prctl(
                libc::PR_GET_THP_DISABLE,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0,
            ) == 1
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_off_after_disable_thp() {
        if !cfg!(target_os = "linux") {
            eprintln!("SKIPPED: PR_SET_THP_DISABLE is Linux only");
            return;
        }
        assert!(disable_thp());
        // The kernel's own view (Linux >= 5.0 prints it in /proc/PID/status).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        match status.lines().find(|l| l.starts_with("THP_enabled:")) {
            Some(l) => assert_eq!(l.split_whitespace().nth(1), Some("0"), "{l}"),
            None => eprintln!("SKIPPED: this kernel does not show THP_enabled in /proc/self/status"),
        }
    }
}
