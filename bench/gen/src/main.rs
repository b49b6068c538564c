//! `flcgen`: a DPDK packet generator for fulcrum's benchmarks.
//!
//! Sends Ethernet/IPv4/TCP frames of N flows to a VIP on one port (made for
//! `net_memif`, where the forwarder under test sits on the other end and sends its
//! output back), stamps each frame with the TSC in its last 16 bytes, receives what
//! comes back and measures:
//!
//! 1. the highest lossless rate: one unpaced trial, then a bounded binary search
//!    ([`search::highest_lossless`]);
//! 2. latency percentiles (p50, p99, p99.9, max) at given fractions of that rate
//!    (default 50% and 90%), from an HDR histogram of send-to-receive TSC deltas.
//!
//! Every trial is cut into windows of `--window-ms` by send time; beside its raw figures
//! it reports those of its *steady* windows, the best `--steady-share` of them by loss
//! and worst latency ([`window`]): a host stall spoils the windows it falls in, a
//! forwarder that cannot keep up spoils them all. The search judges losslessness on the
//! steady windows, and tries a failed rate once more (`--retries`) before bisecting down.
//!
//! One JSON object goes to stdout, progress to stderr; with `--linger SECS` the port then
//! stays open until the peer disconnects (at most SECS), so the peer can close first. Run it on one lcore
//! (`-l 0`): the main thread does TX and RX.
//!
//! ```text
//! flcgen --eal "-l 0 --file-prefix=gen --no-pci --vdev=net_memif0,role=server,socket=/run/x.sock" \
//!        [--port net_memif0] [--flows 10000] [--len 96] [--trial-secs 1] [--lat-secs 5] \
//!        [--max-steps 8] [--resolution 0.02] [--max-loss 0.001] [--fractions 0.5,0.9] [--rate PPS] \
//!        [--retries 1] [--window-ms 100] [--steady-share 0.8] [--linger SECS]
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod frame;
mod search;
mod window;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fulcrum_dpdk::{
    tsc_cycles, Eal, MbufBatch, Mempool, Port, PortConfig, RxQueue, TxQueue, BURST,
};
use hdrhistogram::Histogram;

use frame::{read_stamp, write_frame, FrameSpec};
use search::{highest_lossless, SearchLimits, TrialOutcome};
use window::Window;

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    eal: Vec<String>,
    port: String,
    flows: u32,
    len: usize,
    trial_secs: f64,
    lat_secs: f64,
    limits: SearchLimits,
    fractions: Vec<f64>,
    rate: Option<f64>,
    link_timeout: f64,
    /// Seconds to keep the port open after the results are printed, until the peer
    /// disconnects (0: close at once).
    linger: f64,
    /// Length of a trial's windows, in milliseconds.
    window_ms: f64,
    /// Share of a trial's windows that are its steady part.
    steady_share: f64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        eal: Vec::new(),
        port: "net_memif0".into(),
        flows: 10_000,
        len: 96,
        trial_secs: 1.0,
        lat_secs: 5.0,
        limits: SearchLimits {
            max_steps: 8,
            resolution: 0.02,
            max_loss: 1e-3,
            retries: 1,
        },
        fractions: vec![0.5, 0.9],
        rate: None,
        link_timeout: 30.0,
        linger: 0.0,
        window_ms: 100.0,
        steady_share: 0.8,
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("{flag}: bad value {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--eal" => {
                let v: String = num("--eal", args.next())?;
                o.eal = v.split_whitespace().map(str::to_owned).collect();
            }
            "--port" => o.port = num("--port", args.next())?,
            "--flows" => o.flows = num("--flows", args.next())?,
            "--len" => o.len = num("--len", args.next())?,
            "--trial-secs" => o.trial_secs = num("--trial-secs", args.next())?,
            "--lat-secs" => o.lat_secs = num("--lat-secs", args.next())?,
            "--max-steps" => o.limits.max_steps = num("--max-steps", args.next())?,
            "--resolution" => o.limits.resolution = num("--resolution", args.next())?,
            "--max-loss" => o.limits.max_loss = num("--max-loss", args.next())?,
            "--retries" => o.limits.retries = num("--retries", args.next())?,
            "--rate" => o.rate = Some(num("--rate", args.next())?),
            "--link-timeout" => o.link_timeout = num("--link-timeout", args.next())?,
            "--linger" => o.linger = num("--linger", args.next())?,
            "--window-ms" => o.window_ms = num("--window-ms", args.next())?,
            "--steady-share" => o.steady_share = num("--steady-share", args.next())?,
            "--fractions" => {
                let v: String = num("--fractions", args.next())?;
                o.fractions = v
                    .split(',')
                    .map(|f| {
                        f.trim()
                            .parse::<f64>()
                            .map_err(|_| format!("--fractions: bad value {f:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => {
                return Err("usage: see the module documentation (bench/gen/src/main.rs)".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.eal.is_empty() {
        return Err("--eal is required".into());
    }
    if o.window_ms.is_nan() || o.window_ms < 1.0 {
        return Err("--window-ms: at least 1".into());
    }
    if !(o.steady_share > 0.0 && o.steady_share <= 1.0) {
        return Err("--steady-share: in (0, 1]".into());
    }
    Ok(o)
}

/// Latency figures of one measured trial, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
    samples: u64,
}

/// The port's queues, the pool and the running totals.
struct Generator {
    rx: RxQueue,
    tx: TxQueue,
    pool: Mempool,
    spec: FrameSpec,
    hz: u64,
    next_flow: u32,
    trial: u16,
    total_offered: u64,
    total_sent: u64,
    total_received: u64,
    foreign: u64,
    /// Window length in TSC cycles, and the steady share.
    window_cycles: u64,
    steady_share: f64,
}

impl Generator {
    /// How many windows a trial of `secs` has.
    fn windows_in(&self, secs: f64) -> usize {
        ((secs * self.hz as f64 / self.window_cycles as f64).ceil() as usize).max(1)
    }

    /// Sends for `secs` at `rate` pps (`None`: as fast as TX takes them), then drains
    /// for 200 ms. Latencies of this trial's frames go to `hists` when given, one
    /// histogram a window ([`Generator::windows_in`] of them). Returns the outcome and
    /// the windows' tallies.
    fn trial(
        &mut self,
        rate: Option<f64>,
        secs: f64,
        mut hists: Option<&mut [Histogram<u64>]>,
    ) -> (TrialOutcome, Vec<Window>) {
        self.trial = self.trial.wrapping_add(1);
        let trial = self.trial;
        let hz = self.hz as f64;
        let mut windows = vec![Window::default(); self.windows_in(secs)];
        let last_window = windows.len() - 1;
        let window_cycles = self.window_cycles;
        let start = tsc_cycles();
        let window_of =
            |tsc: u64| ((tsc.saturating_sub(start) / window_cycles) as usize).min(last_window);
        let end = start + (secs * hz) as u64;
        let drain_end = end + self.hz / 5;
        let (mut offered, mut sent, mut received) = (0u64, 0u64, 0u64);
        let mut batch = MbufBatch::new();
        let mut rxb = MbufBatch::new();
        let len = self.spec.len;
        loop {
            let now = tsc_cycles();
            if now >= drain_end {
                break;
            }
            if now < end {
                let due = match rate {
                    None => BURST as u64,
                    Some(r) => {
                        let target = (r * (now - start) as f64 / hz) as u64;
                        target.saturating_sub(offered).min(BURST as u64)
                    }
                };
                if due > 0 && self.pool.alloc_bulk(&mut batch, due as usize).is_ok() {
                    let stamp_tsc = tsc_cycles();
                    windows[window_of(stamp_tsc)].offered += batch.len() as u64;
                    for m in batch.as_mut_slice() {
                        if m.set_len(len).is_ok() {
                            write_frame(
                                m.data_mut(),
                                &self.spec,
                                self.next_flow,
                                trial,
                                offered as u32,
                                stamp_tsc,
                            );
                        }
                        self.next_flow += 1;
                        if self.next_flow >= self.spec.flows {
                            self.next_flow = 0;
                        }
                        offered += 1;
                    }
                    sent += self.tx.tx_burst(&mut batch) as u64;
                }
            }
            if self.rx.rx_burst(&mut rxb) > 0 {
                let now = tsc_cycles();
                for m in rxb.drain() {
                    match read_stamp(m.data()) {
                        Some(s) if s.trial == trial => {
                            received += 1;
                            let ns = (now.saturating_sub(s.tsc) as f64 * 1e9 / hz) as u64;
                            let i = window_of(s.tsc);
                            let w = &mut windows[i];
                            w.received += 1;
                            w.worst_ns = w.worst_ns.max(ns);
                            if let Some(h) = hists.as_deref_mut().and_then(|h| h.get_mut(i)) {
                                let _ = h.record(ns.max(1));
                            }
                        }
                        Some(_) => self.total_received += 1,
                        None => self.foreign += 1,
                    }
                }
            }
        }
        self.total_offered += offered;
        self.total_sent += sent;
        self.total_received += received;
        let steady = window::steady(&windows, self.steady_share);
        let (steady_offered, steady_received) = window::totals(&windows, &steady);
        let outcome = TrialOutcome {
            offered,
            received,
            sent_pps: sent as f64 / secs,
            steady_offered,
            steady_received,
        };
        (outcome, windows)
    }
}

fn latency_of(h: &Histogram<u64>) -> Latency {
    Latency {
        p50: h.value_at_quantile(0.50),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
        samples: h.len(),
    }
}

fn outcome_json(rate: f64, o: &TrialOutcome) -> String {
    format!(
        "{{\"rate_pps\":{:.0},\"offered\":{},\"received\":{},\"sent_pps\":{:.0},\"loss\":{:.6},\"steady_loss\":{:.6}}}",
        rate,
        o.offered,
        o.received,
        o.sent_pps,
        o.loss(),
        o.steady_loss()
    )
}

fn latency_json(l: &Latency) -> String {
    format!(
        "\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{},\"mean_ns\":{:.0},\"samples\":{}",
        l.p50, l.p99, l.p999, l.max, l.mean, l.samples
    )
}

fn run(o: &Options) -> Result<(), String> {
    let spec = FrameSpec {
        dst_mac: [0x02, 0x70, 0x63, 0x61, 0x70, 0x00],
        src_mac: [0x02, 0, 0, 0, 0, 0x01],
        vip: [10, 99, 0, 100],
        vport: 80,
        len: o.len,
        flows: o.flows,
    };
    spec.validate().map_err(|e| e.to_string())?;
    let eal = Eal::init(&o.eal).map_err(|e| format!("rte_eal_init: {e}"))?;
    let hz = eal.tsc_hz();
    let pool = Mempool::new("flcgen_pkts", 16383, 256, Mempool::DEFAULT_DATA_ROOM)
        .map_err(|e| format!("mempool: {e}"))?;
    let mut port = Port::by_name(&o.port).map_err(|e| format!("port {}: {e}", o.port))?;
    port.configure(&PortConfig::default(), &pool)
        .map_err(|e| format!("configuring {}: {e}", o.port))?;
    port.start()
        .map_err(|e| format!("starting {}: {e}", o.port))?;
    let (mut rxs, mut txs) = port.queues().map_err(|e| format!("queues: {e}"))?;
    let (Some(rx), Some(tx)) = (rxs.pop(), txs.pop()) else {
        return Err("the port has no queue".into());
    };
    eprintln!(
        "flcgen: {} configured, waiting for the link (the peer)",
        o.port
    );
    let deadline = Instant::now() + Duration::from_secs_f64(o.link_timeout);
    loop {
        if port.link().map(|l| l.up).unwrap_or(false) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "link of {} still down after {} s",
                o.port, o.link_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "flcgen: link up, tsc {hz} Hz, {} flows, {}-byte frames",
        o.flows, o.len
    );
    let mut g = Generator {
        rx,
        tx,
        pool,
        spec,
        hz,
        next_flow: 0,
        trial: 0,
        total_offered: 0,
        total_sent: 0,
        total_received: 0,
        foreign: 0,
        window_cycles: ((o.window_ms / 1000.0 * hz as f64) as u64).max(1),
        steady_share: o.steady_share,
    };

    // Warm-up: every flow once at a moderate rate (creates the forwarder's flow state),
    // and proof that something comes back.
    let warm_secs = (f64::from(o.flows) / 500_000.0).max(0.5);
    let (warm, _) = g.trial(Some(f64::from(o.flows) / warm_secs * 1.05), warm_secs, None);
    eprintln!("flcgen: warm-up {}", outcome_json(0.0, &warm));
    if warm.received == 0 {
        return Err("nothing came back in the warm-up: is the forwarder up and forwarding?".into());
    }

    let mut out = String::new();
    let (best, log) = match o.rate {
        Some(r) => (r, Vec::new()),
        None => highest_lossless(o.limits, |rate| {
            let (t, _) = g.trial(rate, o.trial_secs, None);
            eprintln!(
                "flcgen: trial {}",
                outcome_json(rate.unwrap_or(f64::NAN), &t)
            );
            t
        }),
    };
    let _ = write!(
        out,
        "{{\"flows\":{},\"frame_len\":{},\"tsc_hz\":{},\"max_loss\":{},\"window_ms\":{},\"steady_share\":{},\"lossless_pps\":{:.0},\"search\":[",
        o.flows, o.len, hz, o.limits.max_loss, o.window_ms, o.steady_share, best
    );
    for (i, (rate, t)) in log.iter().enumerate() {
        let rate = if rate.is_finite() { *rate } else { 0.0 };
        let _ = write!(
            out,
            "{}{}",
            if i > 0 { "," } else { "" },
            outcome_json(rate, t)
        );
    }
    out.push_str("],\"latency\":[");
    let base = if best > 0.0 {
        best
    } else {
        log.first().map(|(r, _)| *r).unwrap_or(0.0) * 0.1
    };
    for (i, f) in o.fractions.iter().enumerate() {
        let rate = base * f;
        let empty = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        let mut hists = vec![empty.clone(); g.windows_in(o.lat_secs)];
        let (t, windows) = g.trial(Some(rate.max(1.0)), o.lat_secs, Some(&mut hists));
        let steady = window::steady(&windows, o.steady_share);
        let (mut all, mut calm) = (empty.clone(), empty);
        for (k, h) in hists.iter().enumerate() {
            let _ = all.add(h);
            if steady.contains(&k) {
                let _ = calm.add(h);
            }
        }
        let (l, s) = (latency_of(&all), latency_of(&calm));
        eprintln!(
            "flcgen: {:.0}% of {:.0} pps: p50 {} ns p99 {} ns p99.9 {} ns ({} samples, loss {:.6}); \
             steady {}/{} windows: p50 {} ns p99 {} ns p99.9 {} ns (loss {:.6})",
            f * 100.0,
            base,
            l.p50,
            l.p99,
            l.p999,
            l.samples,
            t.loss(),
            steady.len(),
            windows.len(),
            s.p50,
            s.p99,
            s.p999,
            t.steady_loss()
        );
        let _ = write!(
            out,
            "{}{{\"fraction\":{},\"trial\":{},{},\"steady\":{{\"windows\":{},\"of\":{},{}}},\"window_p99_ns\":[{}]}}",
            if i > 0 { "," } else { "" },
            f,
            outcome_json(rate, &t),
            latency_json(&l),
            steady.len(),
            windows.len(),
            latency_json(&s),
            hists
                .iter()
                .map(|h| if h.is_empty() { "null".to_owned() } else { h.value_at_quantile(0.99).to_string() })
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let _ = write!(
        out,
        "],\"totals\":{{\"offered\":{},\"sent\":{},\"received\":{},\"foreign\":{}}}}}",
        g.total_offered, g.total_sent, g.total_received, g.foreign
    );
    drop(g);
    // The results go out before the port closes; with --linger the port stays open until
    // the peer has gone. The memif PMD of DPDK 22.11 unmaps the shared regions from its
    // interrupt thread when the other side disconnects, while the peer's poll thread may
    // still be inside rx_burst: the peer that closes second can crash. So the harness
    // stops the forwarder first, and the generator, the memif server, closes last.
    println!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_secs_f64(o.linger.max(0.0));
    while Instant::now() < deadline && port.link().map(|l| l.up).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(port);
    drop(eal);
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("flcgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flcgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split(' ').map(str::to_owned)
    }

    #[test]
    fn options_parse_and_defaults_hold() {
        let o = parse_args(
            [
                "--eal",
                "-l 0 --no-pci",
                "--flows",
                "5",
                "--fractions",
                "0.5,0.9,0.99",
            ]
            .into_iter()
            .map(String::from),
        )
        .unwrap();
        assert_eq!(o.eal, vec!["-l", "0", "--no-pci"]);
        assert_eq!(o.flows, 5);
        assert_eq!(o.fractions, vec![0.5, 0.9, 0.99]);
        assert_eq!(o.len, 96);
        assert!(o.rate.is_none());
        assert_eq!(o.linger, 0.0, "closes at once unless asked to linger");
        assert_eq!(
            parse_args(args("--eal x --linger 15")).unwrap().linger,
            15.0
        );
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(parse_args(args("--flows 5")).is_err(), "missing --eal");
        assert!(parse_args(args("--eal x --flows many")).is_err());
        assert!(parse_args(args("--eal x --bogus 1")).is_err());
        assert!(parse_args(args("--eal x --fractions 0.5,y")).is_err());
    }
}
