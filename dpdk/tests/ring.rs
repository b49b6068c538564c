//! One EAL with `net_ring0` (TX loops back to RX) and `net_null0`: EAL
//! helpers, mbuf bounds, batches, a 10,000-packet loopback, a full TX ring,
//! lcore launch and leak checks. One `#[test]` runs the parts in order because
//! the EAL initialises once per process.

mod common;

use std::collections::HashMap;

use common::{eal_args, test_packet};
use fulcrum_dpdk::{
    lcore_id, ports, register_thread, tsc_cycles, unregister_thread, DpdkError, Eal, MbufBatch,
    MbufError, Mempool, Port, PortConfig, BURST, PMD_DIR,
};

const POOL_SIZE: u32 = 4095;

#[test]
fn ring_and_null_ports() {
    let extra = ["--vdev=net_ring0".to_owned(), "--vdev=net_null0".to_owned()];
    let eal = Eal::init(&eal_args("ring", &extra)).expect("EAL init");
    let pool =
        Mempool::new("ring_test_pool", POOL_SIZE, 32, Mempool::DEFAULT_DATA_ROOM).expect("mempool");
    assert_eq!(pool.capacity(), POOL_SIZE);
    assert_eq!(pool.avail_count(), POOL_SIZE);

    eal_basics(&eal);
    mbuf_bounds(&pool);
    assert_eq!(pool.avail_count(), POOL_SIZE, "leak after mbuf_bounds");
    batches(&pool);
    assert_eq!(pool.avail_count(), POOL_SIZE, "leak after batches");
    pool_exhaustion();
    ring_loopback(&pool);
    assert_eq!(pool.avail_count(), POOL_SIZE, "leak after ring_loopback");
    null_port(&pool);
    assert_eq!(pool.avail_count(), POOL_SIZE, "leak after null_port");
    lcores(&eal, &pool);
    assert_eq!(pool.avail_count(), POOL_SIZE, "leak after lcores");
    assert_eq!(pool.in_use_count(), 0);
    drop(eal);
    common::remove_runtime_dir("ring");
}

fn eal_basics(eal: &Eal) {
    assert!(matches!(Eal::init(&[]), Err(DpdkError::AlreadyInitialised)));
    assert_eq!(eal.lcore_count(), 2);
    assert_eq!(eal.worker_lcores(), vec![1]);
    assert_eq!(eal.main_lcore(), 0);
    assert_eq!(lcore_id(), Some(0));
    assert!(eal.tsc_hz() > 1_000_000, "tsc_hz {}", eal.tsc_hz());
    let t0 = tsc_cycles();
    assert!(tsc_cycles() >= t0);
    assert!(std::path::Path::new(PMD_DIR).is_dir(), "{PMD_DIR}");

    // The vdev drivers came from the plugin folder with no -d argument.
    let names: Vec<String> = ports().into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, vec!["net_ring0".to_owned(), "net_null0".to_owned()]);
    assert_eq!(fulcrum_dpdk::port_count(), 2);

    let p = Port::by_name("net_ring0").expect("ring port");
    assert!(matches!(
        Port::by_name("net_ring0"),
        Err(DpdkError::PortInUse(_))
    ));
    assert!(matches!(
        Port::from_id(p.id()),
        Err(DpdkError::PortInUse(_))
    ));
    assert!(matches!(
        Port::by_name("net_nothing9"),
        Err(DpdkError::NoSuchPort(_))
    ));
    assert_eq!(p.info().expect("info").driver, "net_ring");
    drop(p);
    // Released on drop, and still usable (drop stops, only close() closes).
    let mut p = Port::by_name("net_ring0").expect("ring port again");
    assert!(matches!(p.queues(), Err(DpdkError::NotConfigured(_))));
    assert!(matches!(p.start(), Err(DpdkError::NotConfigured(_))));
}

fn mbuf_bounds(pool: &Mempool) {
    let mut m = pool.alloc().expect("alloc");
    assert_eq!((m.headroom(), m.len(), m.tailroom()), (128, 0, 2048));
    assert!(m.is_empty());
    assert_eq!(m.refcnt(), 1);
    assert_eq!(m.segments(), 1);
    assert_eq!(m.rss_hash(), None);

    assert_eq!(m.append(2049), Err(MbufError::NoTailroom));
    assert_eq!(m.append(usize::MAX), Err(MbufError::NoTailroom));
    assert_eq!(m.append(70_000), Err(MbufError::NoTailroom));
    m.append(100).expect("append 100");
    assert_eq!((m.len(), m.tailroom(), m.pkt_len()), (100, 1948, 100));
    for (i, b) in m.data_mut().iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(m.prepend(129), Err(MbufError::NoHeadroom));
    assert_eq!(m.prepend(usize::MAX), Err(MbufError::NoHeadroom));
    assert_eq!(m.prepend(65_536 + 4), Err(MbufError::NoHeadroom));
    m.prepend(14).expect("prepend 14");
    assert_eq!((m.headroom(), m.len()), (114, 114));
    assert_eq!(m.data()[14], 0);
    assert_eq!(m.data()[113], 99);
    assert_eq!(m.adjust(115), Err(MbufError::TooShort));
    assert_eq!(m.adjust(usize::MAX), Err(MbufError::TooShort));
    m.adjust(14).expect("adjust 14");
    assert_eq!(m.data()[0], 0);
    assert_eq!(m.trim(101), Err(MbufError::TooShort));
    assert_eq!(m.trim(1 << 16), Err(MbufError::TooShort));
    m.trim(50).expect("trim 50");
    assert_eq!(m.data(), (0..50u8).collect::<Vec<_>>().as_slice());
    m.set_len(60).expect("set_len 60");
    assert_eq!(m.len(), 60);
    m.set_len(10).expect("set_len 10");
    assert_eq!(m.data(), (0..10u8).collect::<Vec<_>>().as_slice());
    assert_eq!(m.set_len(10 + 2048 + 128), Err(MbufError::NoTailroom));

    // set_len and prepend in one step: what the two do, or nothing on an error.
    assert_eq!(m.set_len_and_prepend(4, 129), Err(MbufError::NoHeadroom));
    assert_eq!(
        m.set_len_and_prepend(2048 + 1, 0),
        Err(MbufError::NoTailroom)
    );
    assert_eq!((m.headroom(), m.len(), m.pkt_len()), (128, 10, 10));
    m.set_len_and_prepend(8, 20)
        .expect("trim to 8, then 20 in front");
    assert_eq!((m.headroom(), m.len(), m.pkt_len()), (108, 28, 28));
    assert_eq!(&m.data()[20..], (0..8u8).collect::<Vec<_>>().as_slice());
    m.set_len_and_prepend(40, 8)
        .expect("grow to 40, then 8 in front");
    assert_eq!((m.headroom(), m.len(), m.pkt_len()), (100, 48, 48));
    assert_eq!(&m.data()[28..36], (0..8u8).collect::<Vec<_>>().as_slice());
    m.adjust(28).expect("the headroom back to 128");
    assert_eq!((m.headroom(), m.len()), (128, 20));

    // The whole room, then nothing more.
    m.prepend(128).expect("prepend all headroom");
    assert_eq!(m.prepend(1), Err(MbufError::NoHeadroom));
    let all = m.len() + m.tailroom();
    assert_eq!(all, 2048 + 128);
    m.append(m.tailroom()).expect("append all tailroom");
    assert_eq!(m.append(1), Err(MbufError::NoTailroom));
    m.adjust(m.len()).expect("adjust everything");
    assert!(m.is_empty());
    assert_eq!(m.adjust(1), Err(MbufError::TooShort));
    assert_eq!(m.trim(1), Err(MbufError::TooShort));

    // into_raw / from_raw round trip keeps the mbuf allocated.
    let before = pool.in_use_count();
    let raw = m.into_raw();
    assert_eq!(pool.in_use_count(), before);
    // SAFETY: raw came from into_raw just above and is used once.
    let m = unsafe { fulcrum_dpdk::Mbuf::from_raw(raw) };
    drop(m);
    assert_eq!(pool.in_use_count(), before - 1);

    let mut c = pool.alloc().expect("alloc");
    c.copy_from_slice(b"hello").expect("copy");
    assert_eq!(c.data(), b"hello");
}

fn batches(pool: &Mempool) {
    let mut b = MbufBatch::new();
    pool.alloc_bulk(&mut b, 20).expect("alloc_bulk 20");
    assert_eq!(b.len(), 20);
    assert!(matches!(
        pool.alloc_bulk(&mut b, 13),
        Err(DpdkError::InvalidArgument(_))
    ));
    pool.alloc_bulk(&mut b, 12).expect("alloc_bulk 12");
    assert!(b.is_full());
    assert_eq!(pool.in_use_count(), BURST as u32);
    let extra = pool.alloc().expect("alloc");
    let extra = b.push(extra).expect_err("full batch hands the mbuf back");
    drop(extra);
    for (i, m) in b.as_mut_slice().iter_mut().enumerate() {
        m.append(i + 1).expect("append");
    }
    let lens: Vec<usize> = b.as_slice().iter().map(|m| m.len()).collect();
    assert_eq!(lens, (1..=BURST).collect::<Vec<_>>());
    let last = b.pop().expect("pop");
    assert_eq!(last.len(), BURST);
    drop(last);
    // Take five from a drain and drop the rest with it.
    let taken: Vec<_> = b.drain().take(5).collect();
    assert!(b.is_empty());
    assert_eq!(pool.in_use_count(), 5);
    for m in taken {
        b.push(m).expect("push");
    }
    b.clear();
    assert_eq!(pool.in_use_count(), 0);
    pool.alloc_bulk(&mut b, 7).expect("alloc_bulk 7");
    drop(b);
    assert_eq!(pool.in_use_count(), 0);
}

fn pool_exhaustion() {
    let small = Mempool::new("tiny_pool", 63, 0, 256).expect("tiny pool");
    let mut held = Vec::new();
    while let Some(m) = small.alloc() {
        held.push(m);
        assert!(held.len() <= 63);
    }
    assert_eq!(held.len(), 63);
    assert_eq!(small.avail_count(), 0);
    let mut b = MbufBatch::new();
    assert_eq!(small.alloc_bulk(&mut b, 1), Err(DpdkError::PoolEmpty));
    assert!(b.is_empty());
    let m = held.pop().expect("one");
    assert_eq!(m.tailroom(), 256 - 128);
    drop(m);
    small.alloc_bulk(&mut b, 1).expect("one free");
    drop(b);
    drop(held);
    assert_eq!(small.avail_count(), 63);
    assert!(
        Mempool::new("tiny_pool", 63, 0, 256).is_err(),
        "names are unique"
    );
}

fn ring_loopback(pool: &Mempool) {
    const SEED: u64 = 0x5eed;
    const COUNT: u64 = 10_000;
    let mut port = Port::by_name("net_ring0").expect("ring port");
    let cfg = PortConfig {
        rss: true,
        mtu: Some(1500),
        ..PortConfig::default()
    };
    port.configure(&cfg, pool).expect("configure");
    // RSS is masked with what the device supports: net_ring supports none.
    let rss_offloads = port.info().expect("info").rss_offloads;
    assert_eq!(port.rss_hash_functions() & !rss_offloads, 0);
    assert_eq!(rss_offloads, 0);
    assert_eq!(port.rss_hash_functions(), 0);
    port.start().expect("start");
    port.reset_stats().expect("reset");
    assert!(port.link().expect("link").up);
    let mac = port.mac_addr().expect("mac");
    assert_eq!(mac[0] & 1, 0, "unicast MAC {mac:02x?}");

    let (mut rxs, mut txs) = port.queues().expect("queues");
    assert!(matches!(port.queues(), Err(DpdkError::QueuesInUse(_))));
    assert!(matches!(port.stop(), Err(DpdkError::QueuesInUse(_))));
    let (rx, tx) = (&mut rxs[0], &mut txs[0]);

    let mut sent = 0u64;
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut out = MbufBatch::new();
    let mut inb = MbufBatch::new();
    while received < COUNT {
        while sent < COUNT && !out.is_full() {
            let p = test_packet(SEED, sent);
            bytes += p.len() as u64;
            let mut m = pool.alloc().expect("pool has room");
            m.copy_from_slice(&p).expect("fits");
            out.push(m).expect("not full");
            sent += 1;
        }
        tx.tx_burst_keep(&mut out);
        rx.rx_burst(&mut inb);
        for m in inb.drain() {
            let want = test_packet(SEED, received);
            assert_eq!(m.len(), want.len(), "packet {received} length");
            assert!(
                m.data() == want.as_slice(),
                "packet {received} bytes differ"
            );
            received += 1;
        }
    }
    assert!(out.is_empty());
    let mut empty = MbufBatch::new();
    assert_eq!(
        rx.rx_burst(&mut empty),
        0,
        "nothing beyond the {COUNT} sent"
    );

    let st = port.stats().expect("stats");
    assert_eq!((st.opackets, st.ipackets), (COUNT, COUNT));
    // net_ring (22.11) counts packets but not bytes: both byte counters stay
    // equal (0). The pcap test checks byte counters against real totals.
    assert_eq!(st.obytes, st.ibytes);
    assert!(
        st.obytes == bytes || st.obytes == 0,
        "obytes {} vs {bytes}",
        st.obytes
    );
    assert_eq!(
        (st.oerrors, st.ierrors, st.imissed, st.rx_nombuf),
        (0, 0, 0, 0)
    );
    let xs: HashMap<String, u64> = port.xstats().expect("xstats").into_iter().collect();
    assert_eq!(xs.get("rx_good_packets"), Some(&COUNT), "{xs:?}");
    assert_eq!(xs.get("tx_good_packets"), Some(&COUNT), "{xs:?}");

    // TX into a ring nobody reads: net_ring's ring holds a bounded number of
    // mbufs; what it refuses is freed (tx_burst) or handed back (keep).
    port.reset_stats().expect("reset");
    let mut accepted = 0usize;
    let mut refused = 0usize;
    let mut kept_back = false;
    for round in 0..200 {
        let mut b = MbufBatch::new();
        pool.alloc_bulk(&mut b, BURST).expect("alloc");
        let n = if round % 2 == 0 {
            tx.tx_burst(&mut b)
        } else {
            let n = tx.tx_burst_keep(&mut b);
            assert_eq!(b.len(), BURST - n);
            kept_back |= !b.is_empty();
            n
        };
        assert!(b.is_empty() || round % 2 == 1);
        accepted += n;
        refused += BURST - n;
        // `b` is dropped here, freeing whatever was kept back.
    }
    assert!(refused > 0, "the ring never filled");
    assert!(kept_back, "tx_burst_keep never kept anything");
    assert_eq!(
        pool.in_use_count() as usize,
        accepted,
        "only the ring holds mbufs"
    );
    let st = port.stats().expect("stats");
    assert_eq!(st.opackets as usize, accepted);
    // Drain the ring again.
    let mut drained = 0usize;
    loop {
        let n = rx.rx_burst(&mut inb);
        inb.clear();
        if n == 0 {
            break;
        }
        drained += n;
    }
    assert_eq!(drained, accepted);
    assert_eq!(pool.in_use_count(), 0);

    drop(rxs);
    drop(txs);
    port.stop().expect("stop");
    assert!(!port.is_started());
    port.close().expect("close");
}

fn null_port(pool: &Mempool) {
    let mut port = Port::by_name("net_null0").expect("null port");
    let cfg = PortConfig {
        rx_queues: 2,
        tx_queues: 2,
        rx_desc: 256,
        tx_desc: 256,
        ..PortConfig::default()
    };
    port.configure(&cfg, pool).expect("configure");
    port.start().expect("start");
    let (mut rxs, mut txs) = port.queues().expect("queues");
    assert_eq!((rxs.len(), txs.len()), (2, 2));
    let mut b = MbufBatch::new();
    let mut total = 0;
    for i in 0..100 {
        let n = rxs[i % 2].rx_burst(&mut b);
        assert_eq!(n, BURST, "net_null fills every burst");
        assert!(b
            .as_slice()
            .iter()
            .all(|m| m.len() == 64 && m.segments() == 1));
        total += txs[i % 2].tx_burst(&mut b);
        assert!(b.is_empty());
    }
    assert_eq!(total, 100 * BURST);
    let st = port.stats().expect("stats");
    assert_eq!(st.ipackets, (100 * BURST) as u64);
    assert_eq!(st.opackets, (100 * BURST) as u64);
    assert_eq!(pool.in_use_count(), 0);
    // Handles moved to another thread and used there.
    let mut rx = rxs.pop().expect("rx1");
    let handle = std::thread::spawn(move || {
        let mut b = MbufBatch::new();
        rx.rx_burst(&mut b)
    });
    assert_eq!(handle.join().expect("thread"), BURST);
    drop((rxs, txs));
    port.close().expect("close");
}

fn lcores(eal: &Eal, pool: &Mempool) {
    let worker = eal.worker_lcores()[0];
    let p = pool.clone();
    eal.launch(worker, move || {
        if lcore_id() != Some(1) {
            return 1;
        }
        let mut b = MbufBatch::new();
        if p.alloc_bulk(&mut b, BURST).is_err() {
            return 2;
        }
        42
    })
    .expect("launch");
    assert_eq!(eal.wait(worker), 42);
    // A panic in the job is caught and reported as -1.
    eal.launch(worker, || panic!("job panics on purpose"))
        .expect("launch");
    assert_eq!(eal.wait(worker), -1);
    assert!(matches!(
        eal.launch(0, || 0),
        Err(DpdkError::NoSuchLcore(0))
    ));

    // A std thread registered as an lcore.
    let p = pool.clone();
    let id = std::thread::spawn(move || {
        assert_eq!(lcore_id(), None);
        let id = register_thread().expect("register");
        assert_eq!(lcore_id(), Some(id));
        let m = p.alloc().expect("alloc");
        drop(m);
        unregister_thread();
        assert_eq!(lcore_id(), None);
        id
    })
    .join()
    .expect("thread");
    assert!(id >= 2, "registered lcore {id} clashes with an EAL lcore");
}
