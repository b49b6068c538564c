//! The generator's frames: Ethernet/IPv4/TCP from client flow `i` to the VIP, with
//! valid IPv4 and TCP checksums and a 16-byte stamp in the last bytes of the frame.
//!
//! The stamp sits at the *end* of the frame so that it survives whatever a load
//! balancer prepends (an IP-in-IP or GUE header) or rewrites in the headers (NAT):
//! the receiver reads the last 16 bytes of whatever comes back.
//!
//! Stamp layout (little endian): magic `u16` ([`STAMP_MAGIC`]), trial `u16`,
//! sequence `u32`, TSC at transmit `u64`.

/// Ethernet header length.
const ETH_LEN: usize = 14;
/// IPv4 header length (no options).
const IP_LEN: usize = 20;
/// TCP header length (no options).
const TCP_LEN: usize = 20;
/// Stamp length.
pub const STAMP_LEN: usize = 16;
/// The smallest frame that holds headers and stamp (without FCS).
pub const MIN_FRAME: usize = ETH_LEN + IP_LEN + TCP_LEN + STAMP_LEN;
/// The largest frame the generator builds (without FCS).
pub const MAX_FRAME: usize = 1514;
/// Marks a generator stamp.
pub const STAMP_MAGIC: u16 = 0xf1c6;

/// What every frame of a run shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    /// Destination MAC (the forwarder's port).
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination address (the VIP).
    pub vip: [u8; 4],
    /// Destination port.
    pub vport: u16,
    /// Frame length without FCS; even, `MIN_FRAME..=MAX_FRAME`.
    pub len: usize,
    /// Distinct flows.
    pub flows: u32,
}

/// Why a frame spec is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Frame length out of range or odd.
    BadLength(usize),
    /// Zero flows.
    NoFlows,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(
                f,
                "frame length {n} must be even and within {MIN_FRAME}..={MAX_FRAME} (without FCS)"
            ),
            FrameError::NoFlows => write!(f, "at least one flow"),
        }
    }
}

impl FrameSpec {
    /// Checks the spec.
    pub fn validate(&self) -> Result<(), FrameError> {
        if self.len < MIN_FRAME || self.len > MAX_FRAME || !self.len.is_multiple_of(2) {
            return Err(FrameError::BadLength(self.len));
        }
        if self.flows == 0 {
            return Err(FrameError::NoFlows);
        }
        Ok(())
    }
}

/// Client address and port of flow `i`, the same mapping as `bench/gen_pcap.py`:
/// host `1 + (i * 40503) % 65534` in 10.1.0.0/16, port
/// `1024 + (k * 5 + host * 131) % 64512` with `k = i / 65534`.
pub fn flow_tuple(i: u32) -> ([u8; 4], u16) {
    let host = 1 + (u64::from(i) * 40503) % 65534;
    let k = u64::from(i) / 65534;
    let port = 1024 + (k * 5 + host * 131) % 64512;
    ([10, 1, (host >> 8) as u8, host as u8], port as u16)
}

/// One's-complement sum of big-endian 16-bit words (even length).
fn sum_words(bytes: &[u8], mut acc: u64) -> u64 {
    for w in bytes.chunks_exact(2) {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes frame `seq` of flow `flow` into `buf` (exactly `spec.len` bytes), stamped
/// with `trial`, `seq` and `tsc`. `spec` must have passed [`FrameSpec::validate`]
/// and `buf.len() == spec.len`.
pub fn write_frame(buf: &mut [u8], spec: &FrameSpec, flow: u32, trial: u16, seq: u32, tsc: u64) {
    let len = buf.len();
    let (src, sport) = flow_tuple(flow);
    buf.fill(0);
    // Ethernet
    buf[0..6].copy_from_slice(&spec.dst_mac);
    buf[6..12].copy_from_slice(&spec.src_mac);
    buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4
    let ip = ETH_LEN;
    let ip_total = (len - ETH_LEN) as u16;
    buf[ip] = 0x45;
    buf[ip + 2..ip + 4].copy_from_slice(&ip_total.to_be_bytes());
    buf[ip + 4..ip + 6].copy_from_slice(&(seq as u16).to_be_bytes());
    buf[ip + 6] = 0x40; // DF
    buf[ip + 8] = 64;
    buf[ip + 9] = 6;
    buf[ip + 12..ip + 16].copy_from_slice(&src);
    buf[ip + 16..ip + 20].copy_from_slice(&spec.vip);
    let csum = fold(sum_words(&buf[ip..ip + IP_LEN], 0));
    buf[ip + 10..ip + 12].copy_from_slice(&csum.to_be_bytes());
    // TCP: ACK|PSH of an established flow
    let tcp = ip + IP_LEN;
    buf[tcp..tcp + 2].copy_from_slice(&sport.to_be_bytes());
    buf[tcp + 2..tcp + 4].copy_from_slice(&spec.vport.to_be_bytes());
    buf[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    buf[tcp + 8..tcp + 12].copy_from_slice(&1u32.to_be_bytes());
    buf[tcp + 12] = 5 << 4;
    buf[tcp + 13] = 0x18;
    buf[tcp + 14..tcp + 16].copy_from_slice(&65535u16.to_be_bytes());
    // stamp
    let st = len - STAMP_LEN;
    buf[st..st + 2].copy_from_slice(&STAMP_MAGIC.to_le_bytes());
    buf[st + 2..st + 4].copy_from_slice(&trial.to_le_bytes());
    buf[st + 4..st + 8].copy_from_slice(&seq.to_le_bytes());
    buf[st + 8..st + 16].copy_from_slice(&tsc.to_le_bytes());
    // TCP checksum: pseudo-header + segment (the payload between header and stamp is zero)
    let seg_len = (len - tcp) as u64;
    let mut acc = sum_words(&buf[ip + 12..ip + 20], 6 + seg_len);
    acc = sum_words(&buf[tcp..tcp + TCP_LEN], acc);
    acc = sum_words(&buf[st..], acc);
    buf[tcp + 16..tcp + 18].copy_from_slice(&fold(acc).to_be_bytes());
}

/// A stamp read back from a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The trial the frame was sent in.
    pub trial: u16,
    /// Its sequence number within the trial.
    pub seq: u32,
    /// TSC when it was sent.
    pub tsc: u64,
}

/// The stamp in the last 16 bytes of `frame`, if it carries one.
pub fn read_stamp(frame: &[u8]) -> Option<Stamp> {
    let st = frame.len().checked_sub(STAMP_LEN)?;
    let s = frame.get(st..)?;
    if u16::from_le_bytes([s[0], s[1]]) != STAMP_MAGIC {
        return None;
    }
    let mut tsc = [0u8; 8];
    tsc.copy_from_slice(&s[8..16]);
    Some(Stamp {
        trial: u16::from_le_bytes([s[2], s[3]]),
        seq: u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        tsc: u64::from_le_bytes(tsc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(len: usize) -> FrameSpec {
        FrameSpec {
            dst_mac: [2, 0x70, 0x63, 0x61, 0x70, 0],
            src_mac: [2, 0, 0, 0, 0, 1],
            vip: [10, 99, 0, 100],
            vport: 80,
            len,
            flows: 10,
        }
    }

    #[test]
    fn checksums_verify_and_stamp_round_trips() {
        for len in [MIN_FRAME, 96, 508, MAX_FRAME] {
            let s = spec(len);
            s.validate().unwrap();
            let mut buf = vec![0u8; len];
            write_frame(&mut buf, &s, 7, 3, 0xdead_beef, 0x0123_4567_89ab_cdef);
            // a correct IPv4 header sums to 0xffff (fold gives 0)
            assert_eq!(fold(sum_words(&buf[14..34], 0)), 0);
            let seg = (len - 34) as u64;
            let tcp = sum_words(&buf[34..], sum_words(&buf[26..34], 6 + seg));
            assert_eq!(fold(tcp), 0, "TCP checksum of a {len}-byte frame");
            let st = read_stamp(&buf).unwrap();
            assert_eq!(
                st,
                Stamp {
                    trial: 3,
                    seq: 0xdead_beef,
                    tsc: 0x0123_4567_89ab_cdef
                }
            );
            assert_eq!(&buf[30..34], &[10, 99, 0, 100]);
            assert_eq!(u16::from_be_bytes([buf[16], buf[17]]) as usize, len - 14);
        }
    }

    #[test]
    fn stamp_survives_a_prepended_header() {
        let s = spec(96);
        let mut buf = vec![0u8; 96];
        write_frame(&mut buf, &s, 1, 9, 42, 777);
        let mut encapsulated = vec![0x45u8; 20];
        encapsulated.extend_from_slice(&buf);
        assert_eq!(
            read_stamp(&encapsulated).map(|s| (s.trial, s.seq, s.tsc)),
            Some((9, 42, 777))
        );
        assert_eq!(read_stamp(&buf[..10]), None);
        assert_eq!(read_stamp(&[0u8; 40]), None);
    }

    #[test]
    fn flow_tuples_match_gen_pcap_and_are_distinct() {
        // gen_pcap.py: flow 0 -> 10.1.0.1 port 1024 + 131 = 1155
        assert_eq!(flow_tuple(0), ([10, 1, 0, 1], 1155));
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            assert!(seen.insert(flow_tuple(i)), "flow {i} repeats a tuple");
        }
    }

    #[test]
    fn bad_specs_are_refused() {
        assert_eq!(
            spec(MIN_FRAME - 2).validate(),
            Err(FrameError::BadLength(MIN_FRAME - 2))
        );
        assert_eq!(spec(97).validate(), Err(FrameError::BadLength(97)));
        assert_eq!(
            FrameSpec {
                flows: 0,
                ..spec(96)
            }
            .validate(),
            Err(FrameError::NoFlows)
        );
    }
}
