//! Prometheus metrics for the live sensor (`apitap live --metrics ADDR`, `metrics.listen`).
//!
//! The capture thread publishes the very object it writes as a `stats` event (see
//! `app::Capture::stats`) about once a second; a scrape turns the latest one into the
//! Prometheus text format through `prometheus-client`. So a counter read from Prometheus and
//! the same counter in the `stats` events can never disagree by more than that second.
//!
//! The HTTP side is a minimal server on `std::net::TcpListener`: one thread, one connection at
//! a time, `GET /metrics` only, the request head capped at 8 KiB and each connection at 3 s.
//! That bounds what a stray or hostile client can cost (an HTTP crate that spawns a thread per
//! connection does not), and a scraper needs nothing more.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

/// The latest `stats` object, shared between the capture thread and the metrics server.
#[derive(Debug, Default)]
pub struct Metrics {
    stats: Mutex<Value>,
}

impl Metrics {
    /// Replace the snapshot with the capture thread's latest stats.
    pub fn publish(&self, stats: Value) {
        if let Ok(mut g) = self.stats.lock() {
            *g = stats;
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of the latest snapshot.
    pub fn render(self: &Arc<Self>) -> String {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(StatsCollector(self.clone())));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; an encoder error would leave a partial page.
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Debug)]
struct StatsCollector(Arc<Metrics>);

fn num(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// One metric family with one sample per label set.
fn family<L: AsRef<str>>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    t: MetricType,
    keys: &[&str],
    rows: &[(Vec<L>, u64)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, t)?;
    for (vals, v) in rows {
        let labels: Vec<(&str, &str)> = keys.iter().copied().zip(vals.iter().map(|s| s.as_ref())).collect();
        let fm = m.encode_family(&labels)?;
        match t {
            MetricType::Counter => ConstCounter::new(*v).encode(fm)?,
            _ => ConstGauge::new(*v as i64).encode(fm)?,
        }
    }
    Ok(())
}

/// Counters without labels: (metric name without `_total`, help, path in the stats object).
const COUNTERS: &[(&str, &str, &[&str])] = &[
    ("apitap_capture_packets", "Packets read.", &["capture", "packets"]),
    ("apitap_capture_bytes", "Bytes of packets read.", &["capture", "bytes"]),
    (
        "apitap_decoder_fragments",
        "IP fragments seen.",
        &["decoder", "fragments"],
    ),
    (
        "apitap_decoder_fragment_memcap_drops",
        "IP fragments dropped because fragment memory was full.",
        &["decoder", "frag_memcap_drops"],
    ),
    ("apitap_flows_created", "TCP flows created.", &["flow", "created"]),
    (
        "apitap_flows_closed",
        "TCP flows closed (FIN/RST).",
        &["flow", "closed"],
    ),
    (
        "apitap_flows_timed_out",
        "TCP flows removed after the idle timeout.",
        &["flow", "timed_out"],
    ),
    (
        "apitap_flows_evicted",
        "TCP flows evicted because the flow table was full.",
        &["flow", "evicted"],
    ),
    (
        "apitap_flows_midstream",
        "TCP flows picked up without their handshake.",
        &["flow", "midstream"],
    ),
    (
        "apitap_flows_one_way",
        "TCP flows that ended with packets from one direction only.",
        &["flow", "one_way"],
    ),
    (
        "apitap_flows_not_http",
        "TCP flows that carried no HTTP.",
        &["flow", "not_http"],
    ),
    (
        "apitap_reassembly_segments",
        "TCP segments reassembled.",
        &["reassembly", "segments"],
    ),
    (
        "apitap_reassembly_gaps",
        "Holes skipped in TCP streams.",
        &["reassembly", "gaps"],
    ),
    (
        "apitap_reassembly_gap_bytes",
        "Bytes missing in skipped holes.",
        &["reassembly", "gap_bytes"],
    ),
    (
        "apitap_reassembly_retransmits",
        "Retransmitted TCP segments.",
        &["reassembly", "retransmits"],
    ),
    (
        "apitap_reassembly_overlap_conflicts",
        "Overlapping TCP segments with different data.",
        &["reassembly", "overlap_conflicts"],
    ),
    (
        "apitap_reassembly_cap_skips",
        "Holes skipped because out-of-order memory was full.",
        &["reassembly", "cap_skips"],
    ),
    (
        "apitap_http_transactions",
        "HTTP transactions (request and response).",
        &["http", "transactions"],
    ),
    (
        "apitap_anomalies_suppressed",
        "Anomaly events not written because of per-flow caps (still counted).",
        &["events", "anomalies_suppressed"],
    ),
    (
        "apitap_worker_queue_dropped_events",
        "Events dropped because a worker queue was full.",
        &["drops", "worker_queue"],
    ),
    ("apitap_rule_matches", "Rule matches.", &["engine", "rule_matches"]),
    (
        "apitap_cross_shard_messages",
        "Messages between worker shards.",
        &["engine", "cross_shard_messages"],
    ),
    (
        "apitap_cross_shard_dropped_messages",
        "Messages between worker shards dropped because a queue was full.",
        &["engine", "cross_shard_dropped"],
    ),
    (
        "apitap_entity_evictions",
        "Entities evicted because the entity table was full.",
        &["engine", "entity_evictions"],
    ),
    (
        "apitap_rule_state_evictions",
        "Rule window states evicted because the state table was full.",
        &["engine", "state_evictions"],
    ),
];

/// Gauges without labels.
const GAUGES: &[(&str, &str, &[&str])] = &[
    ("apitap_flows_active", "TCP flows tracked now.", &["flow", "active"]),
    (
        "apitap_reassembly_buffered_bytes",
        "Out-of-order TCP data buffered now, bytes.",
        &["memory", "ooo_bytes"],
    ),
    (
        "apitap_fragment_buffered_bytes",
        "IP fragment memory in use now, bytes.",
        &["memory", "frag_bytes"],
    ),
    (
        "apitap_worker_queue_bytes",
        "Parsed events waiting for the workers now, bytes (live; capture.worker_queue bounds it).",
        &["memory", "worker_queue_bytes"],
    ),
    (
        "apitap_entities",
        "Entities (clients, principals) tracked now.",
        &["engine", "entities"],
    ),
    (
        "apitap_rule_states",
        "Rule window states held now.",
        &["engine", "states"],
    ),
];

fn object_rows<'a>(v: &'a Value, f: impl Fn(&'a Value) -> u64) -> Vec<(Vec<&'a str>, u64)> {
    v.as_object()
        .map(|m| m.iter().map(|(k, x)| (vec![k.as_str()], f(x))).collect())
        .unwrap_or_default()
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = match self.0.stats.lock() {
            Ok(g) => g.clone(),
            Err(_) => Value::Null,
        };
        let info = ConstGauge::new(1i64);
        let mut m = e.encode_descriptor("apitap_build_info", "apitap version.", None, MetricType::Gauge)?;
        info.encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as i64,
            )?;
        }
        if s.is_null() {
            return Ok(());
        }
        for (name, help, path) in COUNTERS {
            counter(&mut e, name, help, num(&s, path))?;
        }
        for (name, help, path) in GAUGES {
            gauge(&mut e, name, help, num(&s, path) as i64)?;
        }
        let skipped = object_rows(&s["decoder"]["skipped"], |x| x.as_u64().unwrap_or(0));
        family(
            &mut e,
            "apitap_decoder_skipped_packets",
            "Packets not decoded, by reason.",
            MetricType::Counter,
            &["reason"],
            &skipped,
        )?;
        let events: Vec<(Vec<&str>, u64)> = ["http", "alert", "anomaly", "endpoint", "entity", "stats"]
            .iter()
            .map(|t| (vec![*t], num(&s, &["events", t])))
            .collect();
        family(
            &mut e,
            "apitap_events",
            "Events made, by type (before output.types filtering).",
            MetricType::Counter,
            &["type"],
            &events,
        )?;
        let sinks = &s["drops"]["sinks"];
        for (name, help, key, t) in [
            (
                "apitap_sink_written_events",
                "Events written, per sink.",
                "written",
                MetricType::Counter,
            ),
            (
                "apitap_sink_dropped_events",
                "Events dropped because the sink queue was full, per sink.",
                "dropped",
                MetricType::Counter,
            ),
            (
                "apitap_sink_errors",
                "Write errors, per sink.",
                "errors",
                MetricType::Counter,
            ),
            (
                "apitap_sink_reconnects",
                "Reconnects, per sink.",
                "reconnects",
                MetricType::Counter,
            ),
            (
                "apitap_sink_queue_batches",
                "Batches waiting in the sink queue now, per sink.",
                "queued",
                MetricType::Gauge,
            ),
        ] {
            let rows = object_rows(sinks, |x| x[key].as_u64().unwrap_or(0));
            family(&mut e, name, help, t, &["sink"], &rows)?;
        }
        let ifs = &s["interfaces"];
        for (name, help, key) in [
            (
                "apitap_interface_packets",
                "Packets captured on the interface and handed to the sensor.",
                "packets",
            ),
            (
                "apitap_interface_received",
                "Packets the kernel received for the capture.",
                "received",
            ),
        ] {
            let rows = object_rows(ifs, |x| x[key].as_u64().unwrap_or(0));
            family(&mut e, name, help, MetricType::Counter, &["interface"], &rows)?;
        }
        let mut drops: Vec<(Vec<&str>, u64)> = Vec::new();
        if let Some(m) = ifs.as_object() {
            for (i, x) in m {
                for (place, key) in [
                    ("kernel", "kernel_dropped"),
                    ("interface", "if_dropped"),
                    ("queue", "queue_dropped"),
                ] {
                    drops.push((vec![i.as_str(), place], x[key].as_u64().unwrap_or(0)));
                }
            }
        }
        family(
            &mut e,
            "apitap_interface_dropped_packets",
            "Packets lost, per interface and where: kernel (capture buffer), interface (driver), queue (reader to flow thread).",
            MetricType::Counter,
            &["interface", "where"],
            &drops,
        )?;
        // af_packet: each ring of each interface (label ring = the capture thread's index).
        for (name, help, key) in [
            (
                "apitap_ring_packets",
                "af_packet: packets read from the ring.",
                "packets",
            ),
            (
                "apitap_ring_dropped_packets",
                "af_packet: packets the kernel dropped because the ring was full (tp_drops).",
                "kernel_dropped",
            ),
            (
                "apitap_ring_queue_freezes",
                "af_packet: times the kernel froze the ring's queue for want of a free block (tp_freeze_q_cnt).",
                "freeze_q_cnt",
            ),
            (
                "apitap_ring_one_way_flows",
                "af_packet: flows the ring saw from one direction only.",
                "one_way_flows",
            ),
        ] {
            let mut rows: Vec<(Vec<String>, u64)> = Vec::new();
            for (i, x) in ifs.as_object().into_iter().flatten() {
                for (j, r) in x["rings"].as_array().into_iter().flatten().enumerate() {
                    rows.push((vec![i.clone(), j.to_string()], r[key].as_u64().unwrap_or(0)));
                }
            }
            family(&mut e, name, help, MetricType::Counter, &["interface", "ring"], &rows)?;
        }
        Ok(())
    }
}

/// This process's resident set, bytes (Linux `/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096))
}

/// The metrics HTTP server; stopped (and joined) on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` now (a busy port is an error at start, not later) and serve in a thread.
    pub fn start(addr: SocketAddr, m: Arc<Metrics>) -> io::Result<Server> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("apitap-metrics".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => {
                            let _ = handle(c, &m);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const MAX_HEAD: usize = 8192;

fn handle(mut c: TcpStream, m: &Arc<Metrics>) -> io::Result<()> {
    c.set_nonblocking(false)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    c.set_write_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        c.set_read_timeout(Some(left))?;
        let k = c.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let get = method == "GET" || method == "HEAD";
    let (status, ctype, body) = match (get, path) {
        (true, "/metrics") => (
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            m.render(),
        ),
        (true, "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "apitap: metrics at /metrics\n".into(),
        ),
        (true, _) => ("404 Not Found", "text/plain; charset=utf-8", "not found\n".into()),
        (false, _) => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n".into(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    c.write_all(&out)?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_become_prometheus_counters_gauges_and_labelled_families() {
        let m = Arc::new(Metrics::default());
        m.publish(serde_json::json!({
            "capture": {"packets": 12, "bytes": 3400},
            "flow": {"active": 3, "evicted": 1},
            "http": {"transactions": 5},
            "events": {"http": 5, "alert": 2},
            "drops": {"worker_queue": 0, "sinks": {"/tmp/e\"ve.json": {"written": 7, "dropped": 1, "queued": 2}}},
            "interfaces": {"eth1": {"packets": 12, "kernel_dropped": 4},
                "eth2": {"packets": 7, "kernel_dropped": 3, "rings": [
                    {"packets": 5, "kernel_dropped": 1, "freeze_q_cnt": 0, "one_way_flows": 0},
                    {"packets": 2, "kernel_dropped": 2, "freeze_q_cnt": 1, "one_way_flows": 0}]}},
            "decoder": {"skipped": {"not_ip": 2}},
        }));
        let t = m.render();
        for want in [
            "# TYPE apitap_capture_packets_total counter\napitap_capture_packets_total 12\n",
            "apitap_capture_bytes_total 3400\n",
            "# TYPE apitap_flows_active gauge\napitap_flows_active 3\n",
            "apitap_flows_evicted_total 1\n",
            "apitap_http_transactions_total 5\n",
            "apitap_events_total{type=\"alert\"} 2\n",
            "apitap_sink_written_events_total{sink=\"/tmp/e\\\"ve.json\"} 7\n",
            "apitap_sink_queue_batches{sink=\"/tmp/e\\\"ve.json\"} 2\n",
            "apitap_interface_dropped_packets_total{interface=\"eth1\",where=\"kernel\"} 4\n",
            "apitap_interface_dropped_packets_total{interface=\"eth2\",where=\"kernel\"} 3\n",
            "apitap_ring_packets_total{interface=\"eth2\",ring=\"0\"} 5\n",
            "apitap_ring_dropped_packets_total{interface=\"eth2\",ring=\"1\"} 2\n",
            "apitap_ring_queue_freezes_total{interface=\"eth2\",ring=\"1\"} 1\n",
            "apitap_ring_one_way_flows_total{interface=\"eth2\",ring=\"0\"} 0\n",
            "apitap_decoder_skipped_packets_total{reason=\"not_ip\"} 2\n",
            "apitap_build_info{version=",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }

    #[test]
    fn metrics_server_answers_get_metrics_and_refuses_other_paths_and_methods() {
        let m = Arc::new(Metrics::default());
        m.publish(serde_json::json!({"capture": {"packets": 99}}));
        let s = Server::start("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let ask = |req: &str| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut r = String::new();
            c.read_to_string(&mut r).unwrap();
            r
        };
        let r = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("apitap_capture_packets_total 99\n"), "{r}");
        assert!(ask("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(ask("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // An oversized head is answered (not read forever) and the server keeps serving.
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        let mut c = TcpStream::connect(s.addr).unwrap();
        let _ = c.write_all(big.as_bytes());
        drop(c);
        assert!(ask("GET /metrics HTTP/1.1\r\n\r\n").contains("apitap_capture_packets_total 99"));
    }

    #[test]
    fn busy_metrics_port_fails_at_start() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(Server::start(addr, Arc::new(Metrics::default())).is_err());
    }
}
