//! Connection outcomes of full-NAT flows, the input of passive health checks.
//!
//! In `nat` mode the backend's replies come back through fulcrum, so the engine sees
//! how each connection attempt ends: a SYN-ACK is a success; a RST answering the SYN,
//! an ICMP unreachable quoting it, or no answer within the service's
//! `connect_timeout` is a failure. The engine counts both per backend
//! ([`BackendCounters`](super::BackendCounters)); the control side turns runs of
//! failures into ejections ([`PassiveHealth`](crate::health::PassiveHealth)).
//!
//! The "no answer in time" case needs a clock, not a packet: [`HandshakeWatch`] keeps
//! the translations of SYNs still unanswered in a fixed ring, oldest first, and the
//! worker's housekeeping checks the ones that are due.

use super::datapath::NatKey;

/// Handshakes watched per worker at most. Past it the oldest watch is dropped (and
/// counted): a flood of unanswered SYNs must not grow memory.
pub const HANDSHAKE_WATCH_CAPACITY: usize = 1 << 16;

/// How a connection attempt to a backend ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The backend answered the SYN with a SYN-ACK (or, for UDP, answered at all).
    Answered,
    /// The backend refused: a RST answering the SYN.
    Refused,
    /// An ICMP destination-unreachable quoting the flow.
    Unreachable,
    /// No answer within the service's `connect_timeout`.
    TimedOut,
}

impl ConnectOutcome {
    /// Whether this counts as a success.
    pub fn is_success(self) -> bool {
        self == ConnectOutcome::Answered
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    key: NatKey,
    /// Engine-clock millisecond at which an unanswered SYN counts as a failure.
    deadline: u32,
}

/// A FIFO of handshakes awaiting an answer, bounded, with no allocation after start.
///
/// Entries are checked in the order they were added; with services of different
/// `connect_timeout`s a long timeout ahead in the queue delays the check of shorter
/// ones behind it (never their outcome: an answer arriving meanwhile still counts).
pub struct HandshakeWatch {
    ring: Box<[Option<Pending>]>,
    head: usize,
    len: usize,
    overflows: u64,
}

impl HandshakeWatch {
    /// A watch of `capacity` handshakes (at least 1).
    pub fn new(capacity: usize) -> HandshakeWatch {
        HandshakeWatch {
            ring: vec![None; capacity.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            overflows: 0,
        }
    }

    /// Watches `key` until `deadline`. When full, the oldest watch is given up.
    pub fn push(&mut self, key: NatKey, deadline: u32) {
        let cap = self.ring.len();
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.overflows += 1;
        }
        let slot = (self.head + self.len) % cap;
        if let Some(s) = self.ring.get_mut(slot) {
            *s = Some(Pending { key, deadline });
        }
        self.len += 1;
    }

    /// The oldest watch if its deadline has passed at `now`, removed.
    pub fn pop_due(&mut self, now: u32) -> Option<NatKey> {
        if self.len == 0 {
            return None;
        }
        let p = (*self.ring.get(self.head)?)?;
        // wrapping clock: due when `now` is at or past the deadline
        if (now.wrapping_sub(p.deadline) as i32) < 0 {
            return None;
        }
        if let Some(s) = self.ring.get_mut(self.head) {
            *s = None;
        }
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        Some(p.key)
    }

    /// Handshakes being watched.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Watches given up because the ring was full.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::IpAddr16;

    fn key(port: u16) -> NatKey {
        NatKey {
            backend: IpAddr16::default(),
            lb: IpAddr16::default(),
            backend_port: 80,
            lb_port: port,
            proto: 6,
        }
    }

    #[test]
    fn pops_in_order_only_when_due() {
        let mut w = HandshakeWatch::new(4);
        w.push(key(1), 100);
        w.push(key(2), 150);
        assert_eq!(w.pop_due(99), None);
        assert_eq!(w.pop_due(100), Some(key(1)));
        assert_eq!(w.pop_due(120), None);
        assert_eq!(w.pop_due(200), Some(key(2)));
        assert_eq!(w.pop_due(300), None);
        assert!(w.is_empty());
    }

    #[test]
    fn full_ring_drops_the_oldest_and_counts_it() {
        let mut w = HandshakeWatch::new(2);
        w.push(key(1), 10);
        w.push(key(2), 10);
        w.push(key(3), 10);
        assert_eq!(w.overflows(), 1);
        assert_eq!(w.len(), 2);
        assert_eq!(w.pop_due(10), Some(key(2)));
        assert_eq!(w.pop_due(10), Some(key(3)));
        assert_eq!(w.pop_due(10), None);
    }

    #[test]
    fn deadlines_across_the_clock_wrap() {
        let mut w = HandshakeWatch::new(2);
        w.push(key(1), 5); // set at u32::MAX - 10 with a 16 ms timeout
        assert_eq!(w.pop_due(u32::MAX - 1), None);
        assert_eq!(w.pop_due(5), Some(key(1)));
    }
}
