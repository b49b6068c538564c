//! Helpers of the pcap conformance test: a tiny pcap writer and reader, frame builders
//! written from the RFCs (independent of fulcrum's own `wire` module), and a harness
//! that runs `fulcrum run` over DPDK's `net_pcap` device.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// pcap files

/// Classic pcap, microsecond timestamps.
pub const MAGIC_USEC: u32 = 0xa1b2_c3d4;
/// Classic pcap, nanosecond timestamps (what DPDK's net_pcap writes).
pub const MAGIC_NSEC: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;

/// Writes `frames` as a microsecond pcap (little endian), one record per frame.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_USEC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes()); // usec: one per frame
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Why a pcap file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum PcapError {
    /// Shorter than the global header.
    NoHeader,
    /// Not a classic pcap magic number (either byte order, usec or nsec).
    BadMagic(u32),
    /// Not Ethernet.
    LinkType(u32),
    /// A record header or body runs past the end of the file.
    TruncatedRecord(usize),
    /// A record captured less than it says went on the wire.
    PartialCapture(usize),
}

/// The frames of a classic pcap file (magic 0xa1b2c3d4 or 0xa1b23c4d, either byte order).
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PcapError> {
    let head = bytes.get(..24).ok_or(PcapError::NoHeader)?;
    let magic_le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let big = match magic_le {
        MAGIC_USEC | MAGIC_NSEC => false,
        m if m.swap_bytes() == MAGIC_USEC || m.swap_bytes() == MAGIC_NSEC => true,
        m => return Err(PcapError::BadMagic(m)),
    };
    let u32_at = |b: &[u8], at: usize| -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let link = u32_at(head, 20);
    if link != LINKTYPE_ETHERNET {
        return Err(PcapError::LinkType(link));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let rec = frames.len();
        let h = bytes
            .get(at..at + 16)
            .ok_or(PcapError::TruncatedRecord(rec))?;
        let caplen = u32_at(h, 8) as usize;
        let origlen = u32_at(h, 12) as usize;
        if caplen != origlen {
            return Err(PcapError::PartialCapture(rec));
        }
        let body = bytes
            .get(at + 16..at + 16 + caplen)
            .ok_or(PcapError::TruncatedRecord(rec))?;
        frames.push(body.to_vec());
        at += 16 + caplen;
    }
    Ok(frames)
}

/// Reads a pcap file; panics with the reason if it is not one.
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_pcap(&bytes).unwrap_or_else(|e| panic!("{}: not a pcap file: {e:?}", path.display()))
}

// ---------------------------------------------------------------------------------
// frames, built by hand

/// An Ethernet address.
pub type Mac = [u8; 6];

/// The MAC of `net_pcap` port 0.
pub const PORT_MAC: Mac = [0x02, 0x70, 0x63, 0x61, 0x70, 0x00];
/// The test client's MAC (or its router's).
pub const CLIENT_MAC: Mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0xc1];

/// The backend MAC the configs give `10.99.0.<n>`.
pub const fn backend_mac(n: u8) -> Mac {
    [0x02, 0x00, 0x00, 0x00, 0x00, n]
}

/// The RFC 1071 Internet checksum of `data` added to the partial sum `init`.
pub fn inet_checksum(init: u32, data: &[u8]) -> u16 {
    let mut sum = init;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let w = |a: [u8; 4]| {
        u16::from_be_bytes([a[0], a[1]]) as u32 + u16::from_be_bytes([a[2], a[3]]) as u32
    };
    w(src) + w(dst) + proto as u32 + len as u32
}

/// Ethernet II: `dst`, `src`, VLAN tags `(tpid, vid)` outermost first, `ethertype`, payload.
pub fn eth(dst: Mac, src: Mac, tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The fields of an IPv4 header the tests vary.
#[derive(Debug, Clone)]
pub struct V4 {
    /// Source.
    pub src: [u8; 4],
    /// Destination.
    pub dst: [u8; 4],
    /// Protocol.
    pub proto: u8,
    /// TTL.
    pub ttl: u8,
    /// DSCP + ECN.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub df: bool,
    /// More fragments.
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag: u16,
    /// Options (a multiple of 4 bytes).
    pub options: Vec<u8>,
}

impl V4 {
    /// A plain header from `src` to `dst`: TTL 64, DF, no options.
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> V4 {
        V4 {
            src,
            dst,
            proto,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            df: true,
            mf: false,
            frag: 0,
            options: Vec::new(),
        }
    }

    /// The header (with a correct checksum) followed by `payload`.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + self.options.len();
        assert_eq!(hl % 4, 0, "options must fill 32-bit words");
        let total = hl + payload.len();
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | (hl / 4) as u8;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let flags = (self.df as u16) << 14 | (self.mf as u16) << 13 | (self.frag & 0x1fff);
        h[6..8].copy_from_slice(&flags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src);
        h[16..20].copy_from_slice(&self.dst);
        h[20..].copy_from_slice(&self.options);
        let c = inet_checksum(0, &h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// TCP flag bits.
pub const SYN: u8 = 0x02;
/// ACK.
pub const ACK: u8 = 0x10;
/// PSH.
pub const PSH: u8 = 0x08;

/// A TCP segment (20-byte header) with its checksum for `src` -> `dst`.
pub fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    if flags & ACK != 0 {
        t[8..12].copy_from_slice(&1u32.to_be_bytes());
    }
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(payload);
    let c = inet_checksum(pseudo_sum(src, dst, 6, t.len()), &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A UDP datagram with its checksum for `src` -> `dst`.
pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    let mut c = inet_checksum(pseudo_sum(src, dst, 17, u.len()), &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// An Ethernet/IPv4 ARP packet (28 bytes).
pub fn arp(op: u16, sha: Mac, spa: [u8; 4], tha: Mac, tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    a
}

/// Bytes `0, 1, 2, ...` (mod 251) of length `n`: a recognisable payload.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Replaces the Ethernet addresses of `frame` (what `dsr` does).
pub fn with_macs(frame: &[u8], dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// Readable hex of a frame, 16 bytes a line.
pub fn hex(f: &[u8]) -> String {
    f.chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------
// running fulcrum over net_pcap

/// A YAML configuration: one `net_pcap0` port reading `rx` and writing `tx`, address
/// 10.99.0.2/24, static neighbours `10.99.0.<n>` -> [`backend_mac`]`(n)`, one worker.
pub fn config(prefix: &str, rx: &Path, tx: &Path, neighbors: &[u8], services: &str) -> String {
    let neigh: String = neighbors
        .iter()
        .map(|n| format!("      - address: 10.99.0.{n}\n        mac: \"02:00:00:00:00:{n:02x}\"\n"))
        .collect();
    format!(
        "dpdk:\n  eal_args: [\"--no-pci\", \"--no-huge\", \"-m\", \"512\", \"--file-prefix={prefix}\",\n    \
         \"--log-level=*:warning\", \"--vdev=net_pcap0,rx_pcap={rx},tx_pcap={tx}\"]\n\
         ports:\n  - name: lan\n    device: net_pcap0\n    address: 10.99.0.2/24\n    neighbors:\n{neigh}\
         workers:\n  cores: [1]\n\
         flow_table:\n  capacity: 4096\n\
         admin:\n  listen: 127.0.0.1:0\n\
         services:\n{services}",
        rx = rx.display(),
        tx = tx.display(),
    )
}

/// A finished run: the log (with the final counters) and the transmitted frames.
pub struct Outcome {
    /// stdout + stderr.
    pub log: String,
    /// Every frame written to the TX pcap, in order.
    pub out: Vec<Vec<u8>>,
    /// The config file's path (still present until the run is dropped).
    pub config: PathBuf,
}

impl Outcome {
    /// A final counter (`counter NAME VALUE`); panics if it is missing.
    pub fn counter(&self, name: &str) -> u64 {
        self.log
            .lines()
            .filter_map(|l| l.strip_prefix("counter "))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|e| panic!("counter {name}: {v:?}: {e}"))
            })
            .unwrap_or_else(|| panic!("no counter {name} in the log:\n{}", self.log))
    }

    /// Every `drop_*` counter with its value.
    pub fn drops(&self) -> Vec<(String, u64)> {
        self.log
            .lines()
            .filter_map(|l| l.strip_prefix("counter "))
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(k, _)| k.starts_with("drop_"))
            .map(|(k, v)| (k.to_owned(), v.trim().parse().unwrap_or(u64::MAX)))
            .collect()
    }
}

/// A temporary directory and DPDK file prefix, removed on drop, with the child killed.
pub struct PcapRun {
    /// The working directory (config, pcaps, log).
    pub dir: PathBuf,
    prefix: String,
    child: Option<Child>,
}

/// One fulcrum at a time in this test binary: each holds 512 MB and a worker on core 1.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long the input gets to be consumed after the workers run.
pub const DRAIN: Duration = Duration::from_secs(2);

impl PcapRun {
    /// A fresh directory and prefix for run `name`.
    pub fn new(name: &str) -> PcapRun {
        let prefix = format!("fpcap-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        PcapRun {
            dir,
            prefix,
            child: None,
        }
    }

    /// The DPDK file prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The input pcap's path.
    pub fn rx(&self) -> PathBuf {
        self.dir.join("in.pcap")
    }

    /// The output pcap's path.
    pub fn tx(&self) -> PathBuf {
        self.dir.join("out.pcap")
    }

    /// Writes `input` and the config, runs fulcrum until the input is consumed, checks it
    /// is still alive, stops it with SIGINT, checks it exited 0, and returns the result.
    pub fn run(&mut self, yaml: &str, input: &[Vec<u8>]) -> Outcome {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        write_pcap(&self.rx(), input);
        let config = self.dir.join("fulcrum.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log_path = self.dir.join("fulcrum.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["run", "-c"])
            .arg(&config)
            .env_remove("FULCRUM_EAL_EXTRA")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start fulcrum");
        self.child = Some(child);
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = read_log();
            if text.contains("workers running") {
                break;
            }
            if let Some(st) = self.child_mut().try_wait().unwrap() {
                panic!("fulcrum exited ({st}) before its workers ran:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "fulcrum did not start within 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // the input is a few hundred frames: the worker has read them all long before
        // this; the process must still be running (it stops only on a signal)
        let until = Instant::now() + DRAIN;
        while Instant::now() < until {
            if let Some(st) = self.child_mut().try_wait().unwrap() {
                panic!(
                    "fulcrum stopped by itself ({st}) while replaying the input:\n{}",
                    read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.interrupt();
        let text = read_log();
        assert!(
            status.success(),
            "fulcrum exited with {status} after SIGINT:\n{text}"
        );
        assert!(text.contains("counter "), "no final counters:\n{text}");
        Outcome {
            log: text,
            out: read_pcap(&self.tx()),
            config,
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("fulcrum is running")
    }

    /// SIGINT, then waits up to 20 s for the exit.
    fn interrupt(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("fulcrum is running");
        let ok = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fulcrum did not exit within 20 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PcapRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        if std::env::var_os("FULCRUM_PCAP_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_round_trip_and_nanosecond_magic() {
        let frames = vec![vec![1u8; 60], vec![], vec![2u8; 1600]];
        let dir = std::env::temp_dir().join(format!("fpcap-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.pcap");
        write_pcap(&p, &frames);
        let mut bytes = std::fs::read(&p).unwrap();
        assert_eq!(parse_pcap(&bytes).unwrap(), frames);
        bytes[0..4].copy_from_slice(&MAGIC_NSEC.to_le_bytes());
        assert_eq!(parse_pcap(&bytes).unwrap(), frames);
        bytes[0..4].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        assert_eq!(parse_pcap(&bytes), Err(PcapError::BadMagic(0xdead_beef)));
        bytes[0..4].copy_from_slice(&MAGIC_USEC.to_le_bytes());
        bytes.pop();
        assert_eq!(parse_pcap(&bytes), Err(PcapError::TruncatedRecord(2)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071 example header (from Wikipedia's IPv4 checksum walk-through)
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(inet_checksum(0, &h), 0xb861);
    }
}
