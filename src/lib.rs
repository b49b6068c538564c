//! fulcrum: a userspace L4 load balancer on DPDK.
//!
//! The folder tree is the architecture:
//! - [`wire`]: typed zero-copy views over packet bytes (Ethernet, ARP, IPv4/6, TCP, UDP, ICMP).
//! - [`buffer`]: the packet-buffer trait the engine works on (DPDK mbufs and a heap buffer implement it).
//! - [`maglev`]: Maglev consistent hashing.
//! - [`flow`]: the per-worker connection table.
//! - [`engine`]: the per-packet decision: parse, look up, pick, rewrite, verdict.
//! - [`l7`]: the L7 termination pool (TLS, HTTP/1.1, HTTP/2, routing, per-request balancing).
//! - [`config`]: the YAML file, its validation and the snapshot workers read.
//! - [`health`]: active health checks and passive outlier detection.
//! - [`admin`]: the admin HTTP listener (metrics, JSON API) and `fulcrum top`.
//! - `runtime` (feature `dpdk`): EAL, ports, poll-mode workers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod buffer;
pub mod config;
pub mod control;
pub mod engine;
pub mod flow;
pub mod health;
pub mod l7;
pub mod maglev;
#[cfg(feature = "dpdk")]
pub mod runtime;
pub mod wire;
