//! apitap: a passive API traffic sensor.
//!
//! The modules follow the data: [`capture`] -> [`decode`] -> [`flow`] (with [`reassembly`]) ->
//! [`http`] -> [`event`] -> sink (in [`app`]). See `SPEC.md` for the contract.

pub mod affinity;
pub mod alloc;
pub mod app;
pub mod capture;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod event;
pub mod fleet;
pub mod flow;
pub mod http;
pub mod http2;
pub mod memtune;
pub mod metrics;
pub mod reassembly;
pub mod redact;
pub mod report;
pub mod rules;
pub mod sink;
pub mod tls;
pub mod util;
pub mod worker;
