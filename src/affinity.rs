//! Pinning a replay's threads to CPUs (`pin_threads`).
//!
//! A replay is a pipeline: the capture thread reads, decodes and parses, each worker analyses
//! what it is handed, the output threads write the workers' lines. Left to the scheduler, with
//! more threads than CPUs, threads are moved between CPUs, and every move leaves a thread's
//! working set (the read buffer, the flow table, the allocator's pages) in the other CPU's
//! cache. Pinned, the capture thread and the output threads (light: they only write) share the
//! first CPU and each worker has one of its own. On the 2-CPU benchmark machine the 1.6 GB
//! mixed capture replayed in 0.49-0.51 s pinned so against 0.62-0.64 s unpinned (5 interleaved
//! runs each, same binary), with 25% less CPU time; pinning the capture thread and the worker
//! but leaving the output thread to the scheduler gained nothing (0.62-0.76 s against
//! 0.61-0.78 s). Suricata (`threading.cpu-affinity`) and Zeek (`pin_cpus`) pin the same way.
//!
//! `auto` pins only when every pipeline thread can have a CPU of its own among those the
//! process may use (its affinity mask: `taskset`, a cgroup cpuset, systemd's `CPUAffinity=`),
//! so a pinned thread never shares its CPU with another of ours; `on` pins whenever two CPUs
//! are allowed (workers beyond them share); `off` never pins. Only replays pin: a live
//! sensor's capture threads are the capture method's own. The thread that ran the replay gets
//! its mask back when the replay ends, so a second replay in the same process starts afresh.

use std::str::FromStr;

/// The `pin_threads` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinThreads {
    #[default]
    Auto,
    On,
    Off,
}

impl FromStr for PinThreads {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err(format!("{s:?}: must be auto, on or off")),
        }
    }
}

/// The CPU of each pipeline thread: the capture thread's, then worker `i`'s at `workers[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub capture: usize,
    pub workers: Vec<usize>,
}

/// Where `workers` worker threads and the capture thread go among the `allowed` CPUs, or
/// `None` to leave them to the scheduler (see the module text).
pub fn plan(mode: PinThreads, allowed: &[usize], workers: usize) -> Option<Plan> {
    let fits = match mode {
        PinThreads::Off => false,
        PinThreads::Auto => workers >= 1 && allowed.len() > workers,
        PinThreads::On => workers >= 1 && allowed.len() >= 2,
    };
    fits.then(|| Plan {
        capture: allowed[0],
        workers: (0..workers).map(|i| allowed[(1 + i) % allowed.len()]).collect(),
    })
}

/// The CPUs this process may run on (its affinity mask), in order; empty if unknown.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // `size_of::<cpu_set_t>()` bytes into it, and CPU_ISSET reads within it (i < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&i| libc::CPU_ISSET(i, &set))
            .collect()
    }
}

/// Pin the calling thread to `cpu`; false if the kernel refused (the thread runs where it was
/// allowed to before).
pub fn pin_current(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: as in `allowed_cpus`; `cpu` is below CPU_SETSIZE, and pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Pin the calling thread to `cpu` as [`pin_current`] does; the returned guard puts the
/// thread's mask as it was before back when dropped (on that thread; dropped on another it
/// does nothing), so a second replay in the same process (a bench, a library user) sees the
/// whole mask again and its threads do not inherit the pin.
pub fn pin_current_restoring(cpu: usize) -> Option<Restore> {
    // SAFETY: as in `allowed_cpus`.
    let mask = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    pin_current(cpu).then(|| Restore {
        mask,
        thread: std::thread::current().id(),
    })
}

/// See [`pin_current_restoring`].
pub struct Restore {
    mask: libc::cpu_set_t,
    thread: std::thread::ThreadId,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if std::thread::current().id() == self.thread {
            // SAFETY: `mask` is a cpu_set_t read by sched_getaffinity; pid 0 is this thread,
            // the one that was pinned.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.mask);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_when_every_thread_has_a_cpu_of_its_own() {
        let p = |mode, allowed: &[usize], w| plan(mode, allowed, w);
        // two CPUs, one worker: capture on the first, the worker on the second
        assert_eq!(
            p(PinThreads::Auto, &[0, 1], 1),
            Some(Plan {
                capture: 0,
                workers: vec![1]
            })
        );
        // the mask's CPUs, not 0..n (taskset -c 2,5)
        assert_eq!(
            p(PinThreads::Auto, &[2, 5], 1),
            Some(Plan {
                capture: 2,
                workers: vec![5]
            })
        );
        // more workers than CPUs left, one CPU, no worker (analysis on the capture thread),
        // an unknown mask: not pinned
        assert_eq!(p(PinThreads::Auto, &[0, 1], 2), None);
        assert_eq!(p(PinThreads::Auto, &[3], 1), None);
        assert_eq!(p(PinThreads::Auto, &[0, 1, 2, 3], 0), None);
        assert_eq!(p(PinThreads::Auto, &[], 1), None);
        assert_eq!(p(PinThreads::Off, &[0, 1, 2, 3], 1), None);
        // on: workers beyond the CPUs share them, round robin after the capture thread's
        assert_eq!(
            p(PinThreads::On, &[0, 1], 3),
            Some(Plan {
                capture: 0,
                workers: vec![1, 0, 1]
            })
        );
        assert_eq!(p(PinThreads::On, &[7], 1), None);
        assert_eq!("auto".parse(), Ok(PinThreads::Auto));
        assert!("yes".parse::<PinThreads>().is_err());
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let allowed = allowed_cpus();
        assert!(!allowed.is_empty(), "the affinity mask is readable");
        let last = *allowed.last().unwrap_or(&0);
        // in a thread of its own, so the test harness's threads keep their mask
        let seen = std::thread::spawn(move || {
            assert!(pin_current(last));
            allowed_cpus()
        })
        .join()
        .unwrap_or_default();
        assert_eq!(seen, vec![last]);
        assert!(!pin_current(libc::CPU_SETSIZE as usize));
    }

    #[test]
    fn a_restoring_pin_gives_the_thread_its_mask_back() {
        let (before, during, after) = std::thread::spawn(|| {
            let before = allowed_cpus();
            let guard = pin_current_restoring(before[0]);
            let during = allowed_cpus();
            drop(guard);
            (before, during, allowed_cpus())
        })
        .join()
        .unwrap_or_default();
        assert_eq!(during, vec![before[0]]);
        assert_eq!(after, before);
    }
}
