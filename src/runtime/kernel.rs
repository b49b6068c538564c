//! The kernel interface: a `net_tap` device per port that carries the port's own
//! address in the kernel, so sockets on the LB host (health checks, the L7 pool, ping,
//! curl) reach the network through the data plane.
//!
//! fulcrum creates the tap through DPDK (it adds `--vdev=net_tap_flcN,iface=NAME` to
//! the EAL arguments), then gives the interface the port's MAC, MTU and address, and
//! the VIPs of `l7` services (as /32 or /128) so the kernel accepts their connections.

use std::net::IpAddr;
use std::process::Command;

use crate::config::{Config, Mode, PortConfig};
use crate::engine::Mac;

/// The DPDK device name of port `index`'s kernel interface.
pub fn tap_device(index: usize) -> String {
    format!("net_tap_flc{index}")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn sysctl(key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let _ = std::fs::write(path, value);
}

/// Gives the kernel interface `name` the port's MAC, MTU and address, and the L7 VIPs.
pub fn configure(name: &str, port: &PortConfig, mac: &Mac, cfg: &Config) -> Result<(), String> {
    let mac = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    let mtu = port.mtu.to_string();
    ip(&["link", "set", "dev", name, "address", &mac, "mtu", &mtu])?;
    // answer ARP with the port address only; no reverse-path surprises for VIP traffic
    sysctl(&format!("net.ipv4.conf.{name}.arp_announce"), "2");
    sysctl(&format!("net.ipv4.conf.{name}.rp_filter"), "0");
    sysctl(&format!("net.ipv6.conf.{name}.accept_dad"), "0");
    sysctl(&format!("net.ipv6.conf.{name}.accept_ra"), "0");
    ip(&["link", "set", "dev", name, "up"])?;
    let addr = format!("{}/{}", port.address, port.prefix_len);
    let mut a = vec!["addr", "replace", addr.as_str(), "dev", name];
    if port.address.is_ipv6() {
        a.push("nodad");
    }
    ip(&a)?;
    if let Some(gw) = port.gateway {
        let gw = gw.to_string();
        let family = if port.address.is_ipv6() { "-6" } else { "-4" };
        ip(&[
            family, "route", "replace", "default", "via", &gw, "dev", name,
        ])?;
    }
    for s in cfg.services.iter().filter(|s| s.mode == Mode::L7) {
        if s.vip.is_ipv4() != port.address.is_ipv4() {
            continue;
        }
        let vip = match s.vip {
            IpAddr::V4(v) => format!("{v}/32"),
            IpAddr::V6(v) => format!("{v}/128"),
        };
        let mut a = vec!["addr", "replace", vip.as_str(), "dev", name];
        if s.vip.is_ipv6() {
            a.push("nodad");
        }
        ip(&a)?;
    }
    Ok(())
}
