//! The TCP state a flow entry tracks, and the timeouts per state.

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// The acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
}

/// Where a TCP flow is in its life, as seen from the packets the load
/// balancer forwards (with DSR it sees only the client's half). Non-TCP flows
/// stay [`FlowState::Established`]; their timeout is [`FlowTimeouts::udp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// A SYN opened the flow; no handshake-completing ACK seen yet.
    SynSeen,
    /// The handshake completed (or the flow was picked up mid-stream).
    Established,
    /// A FIN or RST was seen.
    Closing,
}

impl FlowState {
    /// The state after a packet with TCP `flags` (see [`tcp_flags`]):
    ///
    /// - RST or FIN: `Closing`.
    /// - SYN without ACK: a `Closing` flow restarts as `SynSeen` (the client
    ///   reuses the tuple); otherwise unchanged (a retransmitted or spoofed
    ///   SYN never demotes an established flow).
    /// - ACK without SYN: `SynSeen` becomes `Established`.
    /// - anything else: unchanged.
    pub const fn after_tcp_flags(self, flags: u8) -> FlowState {
        use tcp_flags::{ACK, FIN, RST, SYN};
        if flags & (RST | FIN) != 0 {
            FlowState::Closing
        } else if flags & SYN != 0 {
            match (self, flags & ACK != 0) {
                (FlowState::Closing, false) => FlowState::SynSeen,
                (state, _) => state,
            }
        } else if flags & ACK != 0 {
            match self {
                FlowState::SynSeen => FlowState::Established,
                state => state,
            }
        } else {
            self
        }
    }
}

/// Idle timeouts, in the caller's time unit (the unit of every `now`
/// argument; fulcrum uses milliseconds). An entry idle for more than its
/// timeout is expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// TCP flows in [`FlowState::Established`].
    pub tcp_established: u32,
    /// TCP flows in [`FlowState::SynSeen`] or [`FlowState::Closing`].
    pub tcp_transitory: u32,
    /// Every non-TCP flow.
    pub udp: u32,
}

impl FlowTimeouts {
    /// Defaults in milliseconds, in line with Linux IPVS: established TCP
    /// 900 s, half-open or closing TCP 60 s, UDP 300 s.
    pub const DEFAULT_MS: FlowTimeouts = FlowTimeouts {
        tcp_established: 900_000,
        tcp_transitory: 60_000,
        udp: 300_000,
    };

    /// The shortest of the three timeouts.
    pub const fn shortest(&self) -> u32 {
        let t = if self.tcp_established < self.tcp_transitory {
            self.tcp_established
        } else {
            self.tcp_transitory
        };
        if t < self.udp {
            t
        } else {
            self.udp
        }
    }

    /// The timeout of a flow.
    #[inline]
    pub const fn for_flow(&self, is_tcp: bool, state: FlowState) -> u32 {
        match (is_tcp, state) {
            (false, _) => self.udp,
            (true, FlowState::Established) => self.tcp_established,
            (true, FlowState::SynSeen | FlowState::Closing) => self.tcp_transitory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::FlowState::*;
    use super::*;

    #[test]
    fn handshake_data_and_close() {
        let s = SynSeen;
        let s = s.after_tcp_flags(SYN | ACK); // backend's SYN-ACK (NAT mode)
        assert_eq!(s, SynSeen);
        let s = s.after_tcp_flags(ACK);
        assert_eq!(s, Established);
        let s = s.after_tcp_flags(ACK | 0x08); // PSH|ACK data
        assert_eq!(s, Established);
        let s = s.after_tcp_flags(FIN | ACK);
        assert_eq!(s, Closing);
        assert_eq!(s.after_tcp_flags(ACK), Closing);
        assert_eq!(s.after_tcp_flags(SYN), SynSeen);
    }

    #[test]
    fn syn_does_not_demote_and_rst_closes() {
        assert_eq!(Established.after_tcp_flags(SYN), Established);
        assert_eq!(SynSeen.after_tcp_flags(RST), Closing);
        assert_eq!(Established.after_tcp_flags(RST | ACK), Closing);
        assert_eq!(SynSeen.after_tcp_flags(0), SynSeen);
    }

    #[test]
    fn timeouts_by_state() {
        let t = FlowTimeouts {
            tcp_established: 3,
            tcp_transitory: 2,
            udp: 1,
        };
        assert_eq!(t.for_flow(true, Established), 3);
        assert_eq!(t.for_flow(true, SynSeen), 2);
        assert_eq!(t.for_flow(true, Closing), 2);
        assert_eq!(t.for_flow(false, Established), 1);
    }
}
