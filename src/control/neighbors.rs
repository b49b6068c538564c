//! The neighbour table: IP address to MAC, resolved by ARP / ND from the control side.
//!
//! Static entries from the config never expire. Dynamic ones are requested while
//! unresolved (every [`RETRY_MS`]), refreshed before they go stale (every
//! [`REFRESH_MS`]) and forgotten when a refresh goes unanswered for [`STALE_MS`].

use std::collections::HashMap;
use std::net::IpAddr;

use crate::engine::Mac;

/// Time between requests for an unresolved neighbour, ms.
pub const RETRY_MS: u32 = 1_000;
/// Time after which a resolved neighbour is asked again, ms.
pub const REFRESH_MS: u32 = 30_000;
/// Time without an answer after which a resolved neighbour is forgotten, ms.
pub const STALE_MS: u32 = 90_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Option<Mac>,
    permanent: bool,
    confirmed_ms: u32,
    requested_ms: Option<u32>,
}

/// The neighbours fulcrum needs MACs for.
#[derive(Debug, Default)]
pub struct NeighborTable {
    entries: HashMap<IpAddr, Entry>,
}

impl NeighborTable {
    /// Adds a permanent entry.
    pub fn add_static(&mut self, ip: IpAddr, mac: Mac) {
        self.entries.insert(
            ip,
            Entry {
                mac: Some(mac),
                permanent: true,
                confirmed_ms: 0,
                requested_ms: None,
            },
        );
    }

    /// Makes sure `ip` is being resolved.
    pub fn want(&mut self, ip: IpAddr) {
        self.entries.entry(ip).or_insert(Entry {
            mac: None,
            permanent: false,
            confirmed_ms: 0,
            requested_ms: None,
        });
    }

    /// Keeps only the permanent entries and those in `wanted`.
    pub fn retain_wanted(&mut self, wanted: &[IpAddr]) {
        self.entries
            .retain(|ip, e| e.permanent || wanted.contains(ip));
    }

    /// Records an answer; returns whether the MAC changed (a new snapshot is due).
    pub fn learn(&mut self, ip: IpAddr, mac: Mac, now_ms: u32) -> bool {
        match self.entries.get_mut(&ip) {
            Some(e) if e.permanent => false,
            Some(e) => {
                let changed = e.mac != Some(mac);
                e.mac = Some(mac);
                e.confirmed_ms = now_ms;
                e.requested_ms = None;
                changed
            }
            None => false, // unsolicited answers for addresses we do not need are ignored
        }
    }

    /// Whether every wanted neighbour has a MAC.
    pub fn all_resolved(&self) -> bool {
        self.entries.values().all(|e| e.mac.is_some())
    }

    /// The MAC of `ip`, if resolved.
    pub fn get(&self, ip: IpAddr) -> Option<Mac> {
        self.entries.get(&ip).and_then(|e| e.mac)
    }

    /// Addresses to send a request for now; marks them requested. Also forgets stale
    /// entries, returning whether any MAC was forgotten (a new snapshot is due).
    pub fn due(&mut self, now_ms: u32) -> (Vec<IpAddr>, bool) {
        let mut out = Vec::new();
        let mut forgot = false;
        for (ip, e) in self.entries.iter_mut() {
            if e.permanent {
                continue;
            }
            if e.mac.is_some() && now_ms.saturating_sub(e.confirmed_ms) >= STALE_MS {
                e.mac = None;
                forgot = true;
            }
            let due = match (e.mac, e.requested_ms) {
                (None, None) => true,
                (None, Some(t)) => now_ms.saturating_sub(t) >= RETRY_MS,
                (Some(_), req) => {
                    now_ms.saturating_sub(e.confirmed_ms) >= REFRESH_MS
                        && req.is_none_or(|t| now_ms.saturating_sub(t) >= RETRY_MS)
                }
            };
            if due {
                e.requested_ms = Some(now_ms);
                out.push(*ip);
            }
        }
        out.sort();
        (out, forgot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refresh_forget() {
        let mut t = NeighborTable::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let st: IpAddr = "10.0.0.9".parse().unwrap();
        t.add_static(st, [2, 0, 0, 0, 0, 9]);
        t.want(ip);
        assert_eq!(t.due(0).0, vec![ip]);
        assert!(t.due(500).0.is_empty(), "retries wait RETRY_MS");
        assert_eq!(t.due(1000).0, vec![ip]);
        assert!(t.learn(ip, [2, 0, 0, 0, 0, 1], 1100));
        assert!(!t.learn(ip, [2, 0, 0, 0, 0, 1], 1200));
        assert_eq!(t.get(ip), Some([2, 0, 0, 0, 0, 1]));
        assert!(t.due(1200 + REFRESH_MS - 1).0.is_empty());
        assert_eq!(t.due(1200 + REFRESH_MS).0, vec![ip]);
        let (d, forgot) = t.due(1200 + STALE_MS);
        assert!(forgot && d == vec![ip]);
        assert_eq!(t.get(ip), None);
        assert_eq!(t.get(st), Some([2, 0, 0, 0, 0, 9]));
        assert!(
            !t.learn(st, [2, 0, 0, 0, 0, 8], 5),
            "static entries do not change"
        );
        assert!(!t.learn("10.0.0.77".parse().unwrap(), [2, 0, 0, 0, 0, 7], 5));
    }
}
