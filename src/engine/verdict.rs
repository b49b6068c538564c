//! What the engine decided for a packet.

/// The engine's decision for one packet; the worker carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten) packet out of port `port`.
    Forward {
        /// Egress port index.
        port: u16,
    },
    /// The packet was turned into a reply (ARP, ICMP echo, an ICMP error fulcrum
    /// generates): send it back out of the port it came in on.
    Reply,
    /// Hand the packet to the kernel interface (the LB's own address, L7 services).
    ToKernel,
    /// Hand the packet to the control side (ARP replies and neighbour advertisements
    /// it is resolving).
    ToControl,
    /// A full-NAT reply owned by another worker: pass it to `worker` unchanged.
    HandOff {
        /// The worker that owns the NAT port.
        worker: u16,
    },
    /// Drop the packet; the reason has been counted.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $name:ident => $label:literal,)*) => {
        /// Why a packet was dropped. Every reason has its own counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// The number of reasons.
            pub const COUNT: usize = Self::ALL.len();
            /// The label used in logs and metrics.
            pub const fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header, or than the headers it announces.
    Runt => "runt",
    /// Longer than the port MTU allows.
    Oversize => "oversize",
    /// An EtherType fulcrum does not handle.
    UnknownEthertype => "unknown_ethertype",
    /// A malformed VLAN tag or too many tags.
    BadVlan => "bad_vlan",
    /// A malformed ARP packet.
    BadArp => "bad_arp",
    /// A malformed IPv4 header: version, IHL, total length beyond the frame.
    BadIpv4 => "bad_ipv4",
    /// A malformed IPv6 header or extension-header chain.
    BadIpv6 => "bad_ipv6",
    /// An IPv4 header checksum that does not verify.
    BadIpChecksum => "bad_ip_checksum",
    /// TTL or hop limit 0 or 1 on a packet fulcrum would forward.
    TtlExceeded => "ttl_exceeded",
    /// A TCP header shorter than its data offset, or truncated.
    BadTcp => "bad_tcp",
    /// A truncated UDP header or a length beyond the packet.
    BadUdp => "bad_udp",
    /// A malformed or unsupported ICMP / ICMPv6 message.
    BadIcmp => "bad_icmp",
    /// Addressed to neither a VIP nor the LB.
    NotForUs => "not_for_us",
    /// A VIP, but no service on that protocol and port.
    NoService => "no_service",
    /// The service has no backend that takes flows.
    NoBackend => "no_backend",
    /// The next hop's MAC is not resolved yet.
    NoNeighbor => "no_neighbor",
    /// A non-SYN TCP packet with no flow (after a restart, or a stray).
    NoFlow => "no_flow",
    /// A full-NAT reply whose translation is unknown.
    NoNatEntry => "no_nat_entry",
    /// No free full-NAT source port.
    NatPortsExhausted => "nat_ports_exhausted",
    /// A fragment of a full-NAT service (ports cannot be translated in later fragments).
    FragmentNat => "nat_fragment",
    /// Not enough headroom to encapsulate.
    NoHeadroom => "no_headroom",
    /// Too big for the egress MTU with DF set; an ICMP error was not possible.
    TooBig => "too_big",
    /// A flow to a backend that turned unhealthy, under `on_unhealthy: reset`.
    BackendUnhealthy => "backend_unhealthy",
    /// Traffic for the kernel interface when there is none.
    NoKernelInterface => "no_kernel_interface",
    /// The hand-off queue to another worker was full.
    HandOffFull => "handoff_full",
    /// The transmit queue did not take the packet.
    TxFull => "tx_full",
}
