//! Stable ids for services and backends across reloads.
//!
//! A flow pinned to a backend stores the backend's id; the registry hands out the same
//! id for the same (service name, backend address, backend port) in every snapshot, so
//! a reload that keeps a backend keeps its flows. A backend that leaves the
//! configuration keeps its id while it drains, then the id is retired (never reused
//! while a flow could still hold it: retired ids go to the back of a free list).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::engine::{BackendId, ServiceId};

/// What identifies a backend across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// The service's name.
    pub service: String,
    /// The backend's address.
    pub addr: IpAddr,
    /// The backend's port (`nat`), if set.
    pub port: Option<u16>,
}

/// A backend that left the configuration and still carries flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departed {
    /// Its id.
    pub id: BackendId,
    /// Its service's id.
    pub service: ServiceId,
    /// Engine-clock millisecond when its flows stop being honoured.
    pub until_ms: u32,
}

/// Hands out ids.
#[derive(Debug, Default)]
pub struct IdRegistry {
    services: HashMap<String, ServiceId>,
    next_service: ServiceId,
    backends: HashMap<BackendKey, BackendId>,
    departed: HashMap<BackendKey, Departed>,
    free: VecDeque<BackendId>,
    next_backend: BackendId,
}

impl IdRegistry {
    /// The id of the service called `name`, assigned on first use.
    pub fn service(&mut self, name: &str) -> ServiceId {
        if let Some(id) = self.services.get(name) {
            return *id;
        }
        let id = self.next_service;
        self.next_service += 1;
        self.services.insert(name.to_owned(), id);
        id
    }

    /// The id of a configured backend, assigned on first use (a departed backend that
    /// comes back gets its old id back).
    pub fn backend(&mut self, key: &BackendKey) -> BackendId {
        if let Some(id) = self.backends.get(key) {
            return *id;
        }
        let id = if let Some(d) = self.departed.remove(key) {
            d.id
        } else if let Some(id) = self.free.pop_front() {
            id
        } else {
            let id = self.next_backend;
            self.next_backend += 1;
            id
        };
        self.backends.insert(key.clone(), id);
        id
    }

    /// Marks every backend not in `present` as departed, draining until `until_ms`
    /// (per service: `drain_ms` gives each service's drain time).
    pub fn retire_missing(
        &mut self,
        present: &[BackendKey],
        now_ms: u32,
        drain_ms: impl Fn(&str) -> u32,
    ) {
        let gone: Vec<BackendKey> = self
            .backends
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(id) = self.backends.remove(&key) {
                let service = self
                    .services
                    .get(&key.service)
                    .copied()
                    .unwrap_or(ServiceId::MAX);
                let until_ms = now_ms.saturating_add(drain_ms(&key.service));
                self.departed.insert(
                    key,
                    Departed {
                        id,
                        service,
                        until_ms,
                    },
                );
            }
        }
    }

    /// Frees the ids of departed backends whose drain ended; returns whether any did.
    pub fn expire_departed(&mut self, now_ms: u32) -> bool {
        let done: Vec<BackendKey> = self
            .departed
            .iter()
            .filter(|(_, d)| d.until_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &done {
            if let Some(d) = self.departed.remove(k) {
                self.free.push_back(d.id);
            }
        }
        !done.is_empty()
    }

    /// Backends that are draining after leaving the configuration.
    pub fn departed(&self) -> impl Iterator<Item = (&BackendKey, &Departed)> {
        self.departed.iter()
    }

    /// One more than the largest id handed out.
    pub fn backend_id_bound(&self) -> usize {
        self.next_backend as usize
    }

    /// One more than the largest service id handed out.
    pub fn service_id_bound(&self) -> usize {
        self.next_service as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, a: &str) -> BackendKey {
        BackendKey {
            service: s.into(),
            addr: a.parse().unwrap(),
            port: None,
        }
    }

    #[test]
    fn ids_are_stable_and_drained_ids_return() {
        let mut r = IdRegistry::default();
        let a = r.backend(&key("web", "10.0.0.1"));
        let b = r.backend(&key("web", "10.0.0.2"));
        assert_ne!(a, b);
        assert_eq!(r.backend(&key("web", "10.0.0.1")), a);
        r.retire_missing(&[key("web", "10.0.0.2")], 1000, |_| 500);
        assert_eq!(r.departed().count(), 1);
        // a new backend does not take a draining id
        let c = r.backend(&key("web", "10.0.0.3"));
        assert!(c != a && c != b);
        assert!(!r.expire_departed(1499));
        assert!(r.expire_departed(1500));
        // the freed id is reused only now
        let d = r.backend(&key("web", "10.0.0.4"));
        assert_eq!(d, a);
        // a departed backend coming back gets its id
        r.retire_missing(&[key("web", "10.0.0.4")], 2000, |_| 500);
        let b2 = r.backend(&key("web", "10.0.0.2"));
        assert_eq!(b2, b);
    }
}
