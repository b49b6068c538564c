//! Facts about the machine a configuration is checked against.

/// The host a configuration must fit: which CPU cores exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Online CPU indexes, ascending.
    pub online_cpus: Vec<u32>,
}

/// Where Linux lists online CPUs, as `0-3,6,8-9`.
const ONLINE_CPUS_PATH: &str = "/sys/devices/system/cpu/online";

impl Host {
    /// Reads the online CPUs from sysfs; falls back to `0..available_parallelism`.
    pub fn detect() -> Self {
        let from_sysfs = std::fs::read_to_string(ONLINE_CPUS_PATH)
            .ok()
            .and_then(|text| parse_cpu_list(text.trim()));
        let online_cpus = from_sysfs.unwrap_or_else(|| {
            let count = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..u32::try_from(count).unwrap_or(u32::MAX)).collect()
        });
        Host { online_cpus }
    }

    /// A host with CPUs `0..count` online (for tests and for checking a config meant
    /// for another machine).
    pub fn with_cpus(count: u32) -> Self {
        Host {
            online_cpus: (0..count).collect(),
        }
    }

    /// Whether CPU `core` is online.
    pub fn has_cpu(&self, core: u32) -> bool {
        self.online_cpus.binary_search(&core).is_ok()
    }

    /// The online CPUs in the kernel's list form (`0-3,6`).
    pub fn cpu_list(&self) -> String {
        let mut out = String::new();
        let mut index = 0;
        while let Some(&first) = self.online_cpus.get(index) {
            let mut last = first;
            while self.online_cpus.get(index + 1) == Some(&(last + 1)) {
                last += 1;
                index += 1;
            }
            if !out.is_empty() {
                out.push(',');
            }
            if first == last {
                out.push_str(&first.to_string());
            } else {
                out.push_str(&format!("{first}-{last}"));
            }
            index += 1;
        }
        out
    }
}

/// Parses the kernel's CPU list form (`0-3,6,8-9`); `None` if malformed.
/// The result is sorted and without duplicates.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    /// A sysfs list never names more CPUs than this; bounds the allocation.
    const MAX_CPUS: u32 = 1 << 16;
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse().ok()?, last.parse().ok()?),
            None => {
                let cpu: u32 = part.parse().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last >= MAX_CPUS {
            return None;
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lists() {
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(parse_cpu_list("4,0-1"), Some(vec![0, 1, 4]));
    }

    #[test]
    fn refuses_malformed_lists() {
        for text in ["", "a", "1-", "-1", "3-1", "0,,1", "0-70000", "1 2"] {
            assert_eq!(parse_cpu_list(text), None, "{text:?}");
        }
    }

    #[test]
    fn cpu_list_round_trips() {
        for text in ["0", "0-1", "0-3,6,8-9", "1,3,5"] {
            let host = Host {
                online_cpus: parse_cpu_list(text).unwrap_or_default(),
            };
            assert_eq!(host.cpu_list(), text);
        }
    }

    #[test]
    fn detect_finds_cpu_zero() {
        let host = Host::detect();
        assert!(host.has_cpu(0), "{host:?}");
        assert!(!host.has_cpu(u32::MAX));
    }
}
