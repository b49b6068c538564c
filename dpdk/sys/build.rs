//! Finds the system DPDK (>= 22.11) with pkg-config, generates bindings with
//! bindgen and compiles the C shim for DPDK's static inline functions.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // The raw compiler flags: the pkg-config crate keeps only -I and -D, but DPDK
    // also needs `-include rte_config.h` and `-march=...` (its headers use SSE4.2
    // intrinsics and read the build configuration without including it).
    let cflags = pkg_config_output(&["--cflags", "libdpdk"]);
    let cflags: Vec<String> = cflags.split_whitespace().map(str::to_owned).collect();

    // The shim first: it is a static library whose symbols the DPDK shared
    // libraries (emitted after it) resolve.
    let mut shim = cc::Build::new();
    shim.file("csrc/shim.c")
        .include("csrc")
        .opt_level(3)
        .warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("fulcrum_dpdk_shim");

    // Emits cargo:rustc-link-lib=<each DPDK library> and the search paths. The
    // DPDK libraries are shared objects, so the EAL finds its PMD plugin folder
    // (RTE_EAL_PMD_PATH) by itself at run time.
    let lib = pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("libdpdk >= {MIN_VERSION} not found by pkg-config: {e}"));
    println!("cargo:version={}", lib.version);

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_arg("-Icsrc")
        .clang_args(cflags.iter())
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_.*|fulcrum_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*|rte_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Packed structs holding aligned members: bindgen cannot lay them out
        // (fulcrum parses ARP itself and has no use for L2TPv2).
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_combined_msg_hdr")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .derive_debug(false)
        .generate_comments(true)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on csrc/wrapper.h: {e}"));

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| panic!("cannot write bindings: {e}"));
}

fn pkg_config_output(args: &[&str]) -> String {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let out = Command::new(&exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {exe}: {e}"));
    if !out.status.success() {
        panic!(
            "{exe} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config prints UTF-8")
}
