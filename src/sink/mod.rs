//! Sinks: where JSON lines go (stdout, a file, syslog over UDP or TCP, a Redis Stream).
//!
//! Each sink runs on its own thread behind a bounded queue of formatted batches (whole lines
//! only, shared between sinks, never split). In a live run a full queue never blocks the
//! producer: the batch is dropped for that sink and counted. A sink that fails drops what it
//! holds, counts it, and reconnects with exponential backoff (100 ms doubling to 30 s). A file
//! sink reopens its path when the reopen generation changes (SIGHUP), so logrotate's rename
//! works without losing or splitting a line.

pub mod redis;
pub mod syslog;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use tracing::{info, warn};

/// Where a sink writes. Parsed from `-`, `PATH`, `file:PATH`, `syslog+udp://HOST:PORT`,
/// `syslog+tcp://HOST:PORT`, `redis://HOST:PORT/STREAM[?maxlen=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Stdout,
    File(PathBuf),
    SyslogUdp(String),
    SyslogTcp(String),
    /// The forensic HTML report (`--report PATH`), written when the run ends; never parsed
    /// from an output string.
    Report(PathBuf, Vec<String>),
    Redis(redis::RedisSpec),
}

impl std::str::FromStr for SinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty sink".into());
        }
        if s == "-" || s == "stdout" {
            return Ok(SinkSpec::Stdout);
        }
        if let Some(a) = s.strip_prefix("syslog+udp://") {
            return check_addr(a).map(|_| SinkSpec::SyslogUdp(a.to_string()));
        }
        if let Some(a) = s.strip_prefix("syslog+tcp://").or_else(|| s.strip_prefix("syslog://")) {
            return check_addr(a).map(|_| SinkSpec::SyslogTcp(a.to_string()));
        }
        if let Some(a) = s.strip_prefix("redis://") {
            return redis::RedisSpec::parse(a).map(SinkSpec::Redis);
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(format!(
                "unknown sink scheme {scheme:?} (use -, PATH, syslog+udp://HOST:PORT, syslog+tcp://HOST:PORT or redis://HOST:PORT/STREAM)"
            ));
        }
        Ok(SinkSpec::File(PathBuf::from(s.strip_prefix("file:").unwrap_or(s))))
    }
}

fn check_addr(a: &str) -> Result<(), String> {
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("syslog address {a:?} is not HOST:PORT")),
    }
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::Stdout => write!(f, "stdout"),
            SinkSpec::File(p) => write!(f, "file:{}", p.display()),
            SinkSpec::SyslogUdp(a) => write!(f, "syslog+udp://{a}"),
            SinkSpec::SyslogTcp(a) => write!(f, "syslog+tcp://{a}"),
            SinkSpec::Report(p, _) => write!(f, "report:{}", p.display()),
            SinkSpec::Redis(r) => write!(f, "{r}"),
        }
    }
}

/// A batch of whole JSON lines and how many events it holds.
#[derive(Debug)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub events: u64,
    /// Where the emptied buffer goes once every sink has written it (the worker that filled
    /// it): reused, a batch's buffer is not allocated, page-faulted in and given back to the
    /// system again for every batch.
    pub back: Option<crossbeam_channel::Sender<Vec<u8>>>,
}

/// Buffers larger than this are not handed back (a rare huge batch is not kept).
pub const REUSE_MAX: usize = 4 << 20;

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(back) = self.back.take()
            && self.bytes.capacity() <= REUSE_MAX
        {
            let mut v = std::mem::take(&mut self.bytes);
            v.clear();
            let _ = back.try_send(v);
        }
    }
}

/// Per-sink counters, shared with the stats.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    pub reconnects: AtomicU64,
}

/// The writing end of one sink.
pub trait Sink: Send {
    /// Write whole lines (each `\n`-terminated).
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Reopen (files, after logrotate's rename). Default: nothing to do.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The run is over: write what is left. Default: flush.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }
}

pub struct SinkOptions {
    pub sensor_name: String,
    /// Syslog facility number (local0 = 16).
    pub facility: u8,
    /// Batches queued per sink. Default 64.
    pub queue: usize,
    /// Failures are fatal (replay to a file or stdout) rather than dropped and retried (live).
    pub fatal_errors: bool,
    /// Start files empty (replay) instead of appending (live).
    pub truncate_files: bool,
}

pub fn open(spec: &SinkSpec, o: &SinkOptions) -> io::Result<Box<dyn Sink>> {
    Ok(match spec {
        SinkSpec::Stdout => Box::new(StdoutSink(BufWriter::with_capacity(1 << 20, io::stdout()))),
        SinkSpec::File(p) => Box::new(FileSink::open(p.clone(), o.truncate_files)?),
        SinkSpec::SyslogUdp(a) => Box::new(syslog::Syslog::udp(a, &o.sensor_name, o.facility)?),
        SinkSpec::SyslogTcp(a) => Box::new(syslog::Syslog::tcp(a, &o.sensor_name, o.facility)?),
        SinkSpec::Report(p, src) => Box::new(crate::report::ReportSink::create(p, src)?),
        SinkSpec::Redis(r) => Box::new(redis::RedisSink::connect(r)?),
    })
}

struct StdoutSink(BufWriter<io::Stdout>);

impl Sink for StdoutSink {
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        write_through(&mut self.0, lines)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A batch at least this large is written straight from its own buffer (after what the
/// writer holds), not copied through the writer's: a replay's batches are 256 KiB, and the
/// copy was the sink thread's whole cost (~0.9k instructions per API call).
const WRITE_THROUGH: usize = 64 << 10;

/// Write `lines` after what `w` holds: large batches without the copy into `w`'s buffer.
fn write_through<W: Write>(w: &mut BufWriter<W>, lines: &[u8]) -> io::Result<()> {
    if lines.len() < WRITE_THROUGH {
        return w.write_all(lines);
    }
    w.flush()?;
    w.get_mut().write_all(lines)
}

/// Appends to a file; reopens the path on demand (logrotate renames the old file first).
pub struct FileSink {
    path: PathBuf,
    w: BufWriter<File>,
}

impl FileSink {
    pub fn open(path: PathBuf, truncate: bool) -> io::Result<Self> {
        let f = if truncate {
            File::create(&path)?
        } else {
            OpenOptions::new().create(true).append(true).open(&path)?
        };
        Ok(FileSink {
            path,
            w: BufWriter::with_capacity(1 << 20, f),
        })
    }
}

impl Sink for FileSink {
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        write_through(&mut self.w, lines)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
    fn reopen(&mut self) -> io::Result<()> {
        self.w.flush()?;
        let f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.w = BufWriter::with_capacity(1 << 20, f);
        Ok(())
    }
}

/// A running sink: its queue, its counters, its thread.
pub struct SinkHandle {
    pub name: String,
    tx: Sender<Arc<Batch>>,
    /// A second receiving end, to count what is still queued if the sink is abandoned.
    rx: Receiver<Arc<Batch>>,
    pub stats: Arc<SinkStats>,
    thread: JoinHandle<io::Result<()>>,
}

impl SinkHandle {
    /// Start a sink thread. The sink is opened here so a bad path fails the start.
    pub fn start(spec: &SinkSpec, o: &SinkOptions, reopen_gen: Arc<AtomicU64>) -> io::Result<Self> {
        let first = open(spec, o);
        let first = match first {
            Ok(s) => Some(s),
            // A syslog or Redis server that is down at start is retried; a bad file path is an error.
            Err(e)
                if matches!(
                    spec,
                    SinkSpec::SyslogTcp(_) | SinkSpec::SyslogUdp(_) | SinkSpec::Redis(_)
                ) && !o.fatal_errors =>
            {
                warn!("sink {spec}: {e}; retrying in the background");
                None
            }
            Err(e) => return Err(e),
        };
        let (tx, rx) = bounded::<Arc<Batch>>(o.queue.max(1));
        let rx_keep = rx.clone();
        let stats = Arc::new(SinkStats::default());
        let st = stats.clone();
        let spec2 = spec.clone();
        // Reconnects append: the first open already truncated what had to be.
        let opts = SinkOptions {
            sensor_name: o.sensor_name.clone(),
            facility: o.facility,
            queue: o.queue,
            fatal_errors: o.fatal_errors,
            truncate_files: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("apitap-sink-{spec}"))
            .spawn(move || run(spec2, opts, first, rx, st, reopen_gen))?;
        Ok(SinkHandle {
            name: spec.to_string(),
            tx,
            rx: rx_keep,
            stats,
            thread,
        })
    }

    /// Batches waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Queue a batch; in a live run (`block` false) a full queue drops it, counted.
    pub fn send(&self, b: &Arc<Batch>, block: bool) -> bool {
        if block {
            return self.tx.send(b.clone()).is_ok();
        }
        match self.tx.try_send(b.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(b.events, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queue a batch, waiting at most `t` for room (shutdown of a live run).
    pub fn send_timeout(&self, b: &Arc<Batch>, t: Duration) -> bool {
        match self.tx.send_timeout(b.clone(), t) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped.fetch_add(b.events, Ordering::Relaxed);
                false
            }
        }
    }

    /// Close the queue, wait for the thread to write what it holds. With a deadline (live), a
    /// sink stuck in a write is abandoned rather than holding the process hostage.
    pub fn finish(self, deadline: Option<Instant>) -> io::Result<()> {
        drop(self.tx);
        if let Some(d) = deadline {
            while !self.thread.is_finished() {
                if Instant::now() >= d {
                    let lost: u64 = self.rx.try_iter().map(|b| b.events).sum();
                    self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("still blocked in a write at shutdown; abandoned with {lost} events queued"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("sink thread panicked")))
    }
}

fn run(
    spec: SinkSpec,
    o: SinkOptions,
    mut sink: Option<Box<dyn Sink>>,
    rx: Receiver<Arc<Batch>>,
    st: Arc<SinkStats>,
    reopen_gen: Arc<AtomicU64>,
) -> io::Result<()> {
    let mut gen_seen = reopen_gen.load(Ordering::Relaxed);
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    loop {
        let b = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let g = reopen_gen.load(Ordering::Relaxed);
        if g != gen_seen {
            gen_seen = g;
            if let Some(s) = sink.as_mut() {
                match s.reopen() {
                    Ok(()) => info!("sink {spec}: reopened"),
                    Err(e) => {
                        warn!("sink {spec}: reopen failed: {e}");
                        sink = None;
                    }
                }
            }
        }
        if sink.is_none() && Instant::now() >= retry_at {
            match open(&spec, &o) {
                Ok(s) => {
                    info!("sink {spec}: connected");
                    st.reconnects.fetch_add(1, Ordering::Relaxed);
                    sink = Some(s);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    warn!("sink {spec}: {e}; next try in {backoff:?}");
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let Some(b) = b else {
            if let Some(s) = sink.as_mut() {
                let _ = s.flush();
            }
            continue;
        };
        let Some(s) = sink.as_mut() else {
            st.dropped.fetch_add(b.events, Ordering::Relaxed);
            continue;
        };
        let r = s
            .write_lines(&b.bytes)
            .and_then(|_| if rx.is_empty() { s.flush() } else { Ok(()) });
        match r {
            Ok(()) => {
                st.written.fetch_add(b.events, Ordering::Relaxed);
            }
            Err(e) => {
                if o.fatal_errors {
                    return Err(e);
                }
                st.errors.fetch_add(1, Ordering::Relaxed);
                // A TCP peer that went away is only noticed on a later write: the server may
                // already be back. Reconnect at once and write this batch again, once.
                // Only for a connection the peer closed: after a timeout part of the batch may
                // have gone out, and writing it again would duplicate it. (Lines written into
                // the dead connection before its failure showed are lost, uncounted: TCP gives
                // no way to know.)
                let closed = matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::NotConnected
                );
                let again = (closed && matches!(spec, SinkSpec::SyslogTcp(_)))
                    .then(|| open(&spec, &o).ok())
                    .flatten()
                    .and_then(|mut s2| s2.write_lines(&b.bytes).and_then(|_| s2.flush()).ok().map(|_| s2));
                match again {
                    Some(s2) => {
                        info!("sink {spec}: write failed ({e}); reconnected and wrote the batch again");
                        st.reconnects.fetch_add(1, Ordering::Relaxed);
                        st.written.fetch_add(b.events, Ordering::Relaxed);
                        sink = Some(s2);
                        backoff = Duration::from_millis(100);
                    }
                    None => {
                        st.dropped.fetch_add(b.events, Ordering::Relaxed);
                        warn!("sink {spec}: write failed: {e}; dropping events and reconnecting");
                        sink = None;
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
        }
    }
    match sink.as_mut() {
        Some(s) => {
            let r = s.finish();
            if o.fatal_errors { r } else { Ok(()) }
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("-".parse::<SinkSpec>(), Ok(SinkSpec::Stdout));
        assert_eq!(
            "/var/log/x.json".parse::<SinkSpec>(),
            Ok(SinkSpec::File("/var/log/x.json".into()))
        );
        assert_eq!(
            "syslog+udp://127.0.0.1:514".parse::<SinkSpec>(),
            Ok(SinkSpec::SyslogUdp("127.0.0.1:514".into()))
        );
        assert_eq!(
            "syslog+tcp://[::1]:601".parse::<SinkSpec>(),
            Ok(SinkSpec::SyslogTcp("[::1]:601".into()))
        );
        assert!("syslog+udp://nohostport".parse::<SinkSpec>().is_err());
        assert!("kafka://x:1".parse::<SinkSpec>().is_err());
        assert!(matches!(
            "redis://127.0.0.1:6379/eve".parse::<SinkSpec>(),
            Ok(SinkSpec::Redis(r)) if r.stream == "eve"
        ));
        assert!("redis://127.0.0.1:6379".parse::<SinkSpec>().is_err());
    }

    #[test]
    fn a_batch_hands_its_emptied_buffer_back_once_every_holder_dropped_it() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let b = std::sync::Arc::new(Batch {
            bytes: b"{}\n".repeat(100),
            events: 100,
            back: Some(tx.clone()),
        });
        let second = b.clone();
        drop(b);
        assert!(rx.try_recv().is_err(), "a sink still holds it");
        drop(second);
        let v = rx.try_recv().expect("handed back");
        assert!(v.is_empty() && v.capacity() >= 300);
        // a huge buffer is not kept, and a full queue drops it instead of blocking
        drop(Batch {
            bytes: Vec::with_capacity(REUSE_MAX + 1),
            events: 0,
            back: Some(tx.clone()),
        });
        assert!(rx.try_recv().is_err());
        tx.send(Vec::new()).unwrap();
        drop(Batch {
            bytes: vec![1],
            events: 1,
            back: Some(tx),
        });
        assert_eq!(rx.try_recv().unwrap().capacity(), 0);
    }

    #[test]
    fn batches_written_through_keep_their_place_among_buffered_ones() {
        // Small batches are buffered, large ones go straight to the file after what the
        // buffer holds: the file must hold every batch, in order, whatever the sizes.
        let dir = std::env::temp_dir().join(format!("apitap-sink-through-{}", std::process::id()));
        let mut s = FileSink::open(dir.clone(), true).unwrap();
        let mut want = Vec::new();
        for (i, n) in [10, WRITE_THROUGH, 3, 1, WRITE_THROUGH * 3 + 7, WRITE_THROUGH - 1, 5]
            .into_iter()
            .enumerate()
        {
            let mut line = vec![b'a' + i as u8; n];
            line.push(b'\n');
            s.write_lines(&line).unwrap();
            want.extend_from_slice(&line);
        }
        s.finish().unwrap();
        let got = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "batches out of order or lost");
    }
}
