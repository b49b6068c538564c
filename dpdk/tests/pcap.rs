//! One EAL with a `net_pcap` port reading a pcap file the test writes and
//! writing what it receives back out: the output holds the same packets.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{eal_args, test_packet};
use fulcrum_dpdk::{Eal, MbufBatch, Mempool, Port, PortConfig};

const COUNT: u64 = 100;
const SEED: u64 = 0xfeed;
const POOL_SIZE: u32 = 1023;

/// Writes a classic (microsecond) pcap file of Ethernet frames.
fn write_pcap(path: &Path, packets: &[Vec<u8>]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65_535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, p) in packets.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&(i as u32 * 10).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    std::fs::write(path, f).expect("write pcap");
}

/// The packet records of a pcap file (micro- or nanosecond, either byte
/// order): (captured bytes, original length). Timestamps are ignored.
fn read_pcap(path: &Path) -> Vec<(Vec<u8>, u32)> {
    let f = std::fs::read(path).expect("read pcap");
    assert!(f.len() >= 24, "pcap header");
    let magic = u32::from_le_bytes(f[0..4].try_into().expect("4 bytes"));
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => panic!("not a pcap file: magic {m:#x}"),
    };
    let u32_at = |o: usize| {
        let b: [u8; 4] = f[o..o + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut out = Vec::new();
    let mut o = 24;
    while o < f.len() {
        assert!(o + 16 <= f.len(), "truncated record header");
        let caplen = u32_at(o + 8) as usize;
        let origlen = u32_at(o + 12);
        o += 16;
        assert!(o + caplen <= f.len(), "truncated record");
        out.push((f[o..o + caplen].to_vec(), origlen));
        o += caplen;
    }
    out
}

#[test]
fn pcap_replay_is_identical() {
    let dir = std::env::temp_dir().join(format!("fulcrum-dpdk-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let packets: Vec<Vec<u8>> = (0..COUNT).map(|i| test_packet(SEED, i)).collect();
    let total_bytes: u64 = packets.iter().map(|p| p.len() as u64).sum();
    write_pcap(&input, &packets);
    assert_eq!(
        read_pcap(&input).len(),
        COUNT as usize,
        "the writer and reader agree"
    );

    let vdev = format!(
        "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
        input.display(),
        output.display()
    );
    let eal = Eal::init(&eal_args("pcap", &[vdev])).expect("EAL init");
    let pool =
        Mempool::new("pcap_pool", POOL_SIZE, 32, Mempool::DEFAULT_DATA_ROOM).expect("mempool");
    let mut port = Port::by_name("net_pcap0").expect("pcap port");
    assert_eq!(port.info().expect("info").driver, "net_pcap");
    port.configure(&PortConfig::default(), &pool)
        .expect("configure");
    port.start().expect("start");
    port.reset_stats().expect("reset");
    let (mut rxs, mut txs) = port.queues().expect("queues");

    let mut received = 0u64;
    let mut batch = MbufBatch::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received < COUNT {
        assert!(
            Instant::now() < deadline,
            "only {received} packets read from the pcap"
        );
        let n = rxs[0].rx_burst(&mut batch);
        for (k, m) in batch.as_slice().iter().enumerate() {
            let i = received as usize + k;
            assert!(
                m.data() == packets[i].as_slice(),
                "packet {i} differs on RX"
            );
        }
        received += n as u64;
        while !batch.is_empty() {
            txs[0].tx_burst_keep(&mut batch);
        }
    }
    let mut extra = MbufBatch::new();
    assert_eq!(
        rxs[0].rx_burst(&mut extra),
        0,
        "the file holds {COUNT} packets"
    );

    let st = port.stats().expect("stats");
    assert_eq!((st.ipackets, st.opackets), (COUNT, COUNT));
    assert_eq!((st.ibytes, st.obytes), (total_bytes, total_bytes));
    assert_eq!((st.ierrors, st.oerrors, st.rx_nombuf), (0, 0, 0));
    assert_eq!(pool.in_use_count(), 0, "every mbuf back in the pool");

    drop((rxs, txs));
    // net_pcap flushes and closes its dumper when the port is closed.
    port.close().expect("close");

    let written = read_pcap(&output);
    assert_eq!(written.len(), COUNT as usize);
    for (i, (bytes, origlen)) in written.iter().enumerate() {
        assert_eq!(
            *origlen as usize,
            packets[i].len(),
            "packet {i} original length"
        );
        assert!(
            bytes == &packets[i],
            "packet {i} differs in the output pcap"
        );
    }
    assert_eq!(pool.avail_count(), POOL_SIZE);
    drop(eal);
    common::remove_runtime_dir("pcap");
    let _ = std::fs::remove_dir_all(&dir);
}
