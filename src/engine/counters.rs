//! The engine's counters: plain integers owned by one worker, published by it.

use super::DropReason;

/// Backend ids counted per backend (ids above are counted only in the totals).
pub const BACKEND_COUNTER_SLOTS: usize = 4096;

/// Per-backend traffic of one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendCounters {
    /// Packets sent to it.
    pub packets: u64,
    /// Bytes sent to it (as received from the client).
    pub bytes: u64,
    /// Flows pinned to it.
    pub new_flows: u64,
    /// Flows pinned to it in this worker's table now (a gauge).
    pub active_flows: u64,
    /// Connection attempts it answered (`nat`: SYN-ACK seen).
    pub connects_ok: u64,
    /// Connection attempts that failed (`nat`: RST to the SYN, ICMP unreachable, no
    /// answer within `connect_timeout`).
    pub connects_failed: u64,
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Counters of one worker's engine.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Drops by reason, indexed by `DropReason as usize`.
            pub drops: [u64; DropReason::COUNT],
        }

        impl Default for Counters {
            fn default() -> Self {
                Counters { $($name: 0,)* drops: [0; DropReason::COUNT] }
            }
        }

        impl Counters {
            /// Calls `f` with every counter's name and value: `engine_<name>` and
            /// `drop_<reason>`.
            pub fn visit(&self, f: &mut dyn FnMut(&'static str, u64)) {
                $(f(concat!("engine_", stringify!($name)), self.$name);)*
                for r in DropReason::ALL {
                    f(r.metric_name(), self.drops[*r as usize]);
                }
            }
        }
    };
}

counters! {
    /// Packets the engine was given.
    rx_packets,
    /// Bytes the engine was given.
    rx_bytes,
    /// Packets forwarded to a backend (or, for NAT replies, to a client).
    forwarded,
    /// Replies generated (ARP, ND, echo, ICMP errors).
    replies,
    /// Packets for the kernel interface.
    to_kernel,
    /// Packets for the control side.
    to_control,
    /// Full-NAT replies handed to another worker.
    handoffs,
    /// New flows pinned to a backend.
    new_flows,
    /// New flows picked from a packet other than a TCP SYN (after a restart or a
    /// move between workers): Maglev keeps them on the same backend.
    midstream_flows,
    /// Flows moved off a backend that left (drain over) or failed (`on_unhealthy: reset`).
    flows_repicked,
    /// Bare SYNs on a closed flow's 5-tuple, balanced as new connections.
    flows_reused,
    /// Full-NAT translations created.
    nat_sessions,
    /// Full-NAT replies translated back to the client.
    nat_replies,
    /// ARP requests answered.
    arp_replies,
    /// Neighbour solicitations answered.
    nd_replies,
    /// ICMP / ICMPv6 echo requests to a VIP answered.
    echo_replies,
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" sent to clients.
    too_big_sent,
    /// ICMP errors about a flow forwarded to the flow's backend.
    icmp_errors_forwarded,
    /// Fragments of VIP traffic (balanced on the 3-tuple).
    fragments,
    /// Full-NAT connection attempts answered by their backend (passive health).
    connects_ok,
    /// Full-NAT connection attempts refused with a RST (passive health).
    connects_refused,
    /// Full-NAT connection attempts answered by an ICMP unreachable (passive health).
    connects_unreachable,
    /// Full-NAT connection attempts not answered within `connect_timeout`.
    connects_timed_out,
    /// Handshakes no longer watched because the watch ring was full (SYN flood).
    handshake_watch_overflows,
}

impl DropReason {
    /// `drop_<label>`, the counter's name.
    pub fn metric_name(self) -> &'static str {
        DROP_NAMES[self as usize]
    }
}

macro_rules! drop_names {
    ($($label:literal),*) => { &[$(concat!("drop_", $label)),*] };
}

/// Counter names of the drop reasons, in `DropReason` order.
const DROP_NAMES: &[&str] = drop_names!(
    "runt",
    "oversize",
    "unknown_ethertype",
    "bad_vlan",
    "bad_arp",
    "bad_ipv4",
    "bad_ipv6",
    "bad_ip_checksum",
    "ttl_exceeded",
    "bad_tcp",
    "bad_udp",
    "bad_icmp",
    "not_for_us",
    "no_service",
    "no_backend",
    "no_neighbor",
    "no_flow",
    "no_nat_entry",
    "nat_ports_exhausted",
    "nat_fragment",
    "no_headroom",
    "too_big",
    "backend_unhealthy",
    "no_kernel_interface",
    "handoff_full",
    "tx_full"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_names_follow_labels() {
        assert_eq!(DROP_NAMES.len(), DropReason::COUNT);
        for r in DropReason::ALL {
            assert_eq!(r.metric_name(), format!("drop_{}", r.label()));
        }
    }
}
