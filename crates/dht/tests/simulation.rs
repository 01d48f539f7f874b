//! A DHT of thousands of sans-IO nodes in one process: simulated time, seeded randomness, an
//! in-memory router. Figures are printed (`cargo test -p shoal-dht --test simulation --
//! --nocapture`). The size can be changed with `SHOAL_DHT_SIM_NODES`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Sim;
use rand::Rng;
use shoal_core::Id20;
use shoal_dht::routing_table::NodeState;
use shoal_dht::{DhtConfig, Event, LookupId, LookupStats};

fn sim_nodes() -> usize {
    std::env::var("SHOAL_DHT_SIM_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// Builds a network: each node joins through node 0 and one random earlier node.
fn build(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    sim.add_node(DhtConfig::default());
    for i in 1..n {
        let j = sim.add_node(DhtConfig::default());
        let other = sim.rng.random_range(0..i);
        let mut seeds = vec![sim.addrs[0]];
        if other != 0 {
            seeds.push(sim.addrs[other]);
        }
        let now = sim.now;
        let id = sim.nodes[j].bootstrap(now, &seeds).expect("bootstrap");
        sim.flush(j);
        let ok = sim.run_until(Duration::from_secs(60), |s| {
            s.events
                .iter()
                .any(|(n, e)| *n == j && matches!(e, Event::LookupDone { id: l, .. } if *l == id))
        });
        assert!(ok, "node {j} did not finish bootstrapping");
        sim.take_events(j);
    }
    // Let pings and late replies settle.
    sim.run_until(Duration::from_secs(5), |_| false);
    sim.events.clear();
    sim
}

fn wait_lookup(sim: &mut Sim, node: usize, id: LookupId) -> Option<Event> {
    let mut found = None;
    sim.run_until(Duration::from_secs(120), |s| {
        s.events.iter().any(|(n, e)| {
            *n == node
                && matches!(e, Event::LookupDone { id: l, .. } | Event::AnnounceDone { id: l, .. } if *l == id)
        })
    });
    for e in sim.take_events(node) {
        match &e {
            Event::LookupDone { id: l, .. } | Event::AnnounceDone { id: l, .. } if *l == id => {
                found = Some(e.clone())
            }
            _ => {}
        }
    }
    found
}

#[test]
fn simulated_dht() {
    let n = sim_nodes();
    let mut sim = build(n, 42);
    let sizes: Vec<usize> = sim.nodes.iter().map(|x| x.table().len()).collect();
    let mean_table = sizes.iter().sum::<usize>() as f64 / n as f64;
    println!(
        "simulation: {n} nodes joined; {} packets delivered; mean routing table {mean_table:.1} nodes",
        sim.delivered
    );

    // 1. Lookups reach the k closest nodes in few hops.
    let lookups = 100;
    let (mut hops, mut queries, mut overlap, mut exact) = (0u64, 0u64, 0usize, 0usize);
    let mut max_hops = 0;
    for _ in 0..lookups {
        let src = sim.rng.random_range(0..n);
        let target = Id20(sim.rng.random());
        let now = sim.now;
        let id = sim.nodes[src].find_node(now, target).unwrap();
        sim.flush(src);
        let Some(Event::LookupDone { closest, stats, .. }) = wait_lookup(&mut sim, src, id) else {
            panic!("lookup did not finish");
        };
        let truth = sim.true_closest(&target, 8);
        let got: Vec<Id20> = closest.iter().map(|c| c.id).collect();
        let o = truth.iter().filter(|t| got.contains(t)).count();
        overlap += o;
        if o == 8 {
            exact += 1;
        }
        hops += u64::from(stats.hops);
        max_hops = max_hops.max(stats.hops);
        queries += u64::from(stats.queries);
    }
    let mean_hops = hops as f64 / lookups as f64;
    let mean_queries = queries as f64 / lookups as f64;
    println!(
        "simulation: {lookups} find_node lookups in {n} nodes: mean hops {mean_hops:.2} (max {max_hops}), \
         mean queries {mean_queries:.1}, {exact}/{lookups} found all 8 closest, mean overlap {:.2}/8",
        overlap as f64 / lookups as f64
    );
    assert!(
        overlap as f64 / lookups as f64 >= 7.0,
        "lookups miss the closest nodes"
    );
    assert!(mean_hops <= 8.0);
    assert!(mean_queries <= 100.0);

    // 2. Announce on one node, get_peers from another finds it.
    let info_hash = Id20(sim.rng.random());
    let (a, b) = (3 % n, n / 2);
    let now = sim.now;
    let id = sim.nodes[a].announce(now, info_hash, Some(7000)).unwrap();
    sim.flush(a);
    let Some(Event::AnnounceDone { acked, .. }) = wait_lookup(&mut sim, a, id) else {
        panic!("announce did not finish");
    };
    assert!(acked >= 6, "only {acked} nodes took the announce");
    let now = sim.now;
    let id = sim.nodes[b].get_peers(now, info_hash).unwrap();
    sim.flush(b);
    let mut peers: Vec<SocketAddr> = Vec::new();
    sim.run_until(Duration::from_secs(120), |s| {
        s.events
            .iter()
            .any(|(x, e)| *x == b && matches!(e, Event::LookupDone { id: l, .. } if *l == id))
    });
    let mut stats = LookupStats::default();
    for e in sim.take_events(b) {
        match e {
            Event::Peers { peers: p, .. } => peers.extend(p),
            Event::LookupDone { stats: s, .. } => stats = s,
            _ => {}
        }
    }
    let expect = SocketAddr::new(sim.addrs[a].ip(), 7000);
    println!(
        "simulation: announce acked by {acked} nodes; get_peers from another node found {peers:?} \
         in {} hops, {} queries",
        stats.hops, stats.queries
    );
    assert!(peers.contains(&expect));

    // 3. Nodes killed mid-lookup are detected and routed around.
    let target = Id20(sim.rng.random());
    let src = sim.rng.random_range(0..n);
    let victims: Vec<usize> = sim
        .true_closest(&target, 3)
        .iter()
        .filter_map(|id| sim.index_of_id(id))
        .filter(|v| *v != src)
        .collect();
    let now = sim.now;
    let id = sim.nodes[src].find_node(now, target).unwrap();
    sim.flush(src);
    // Let the first round of queries go out, then kill the three closest nodes.
    sim.run_until(Duration::from_millis(30), |_| false);
    for v in &victims {
        sim.dead.insert(*v);
    }
    let Some(Event::LookupDone { closest, stats, .. }) = wait_lookup(&mut sim, src, id) else {
        panic!("lookup with dead nodes did not finish");
    };
    let got: Vec<Id20> = closest.iter().map(|c| c.id).collect();
    let truth = sim.true_closest(&target, 8);
    let o = truth.iter().filter(|t| got.contains(t)).count();
    println!(
        "simulation: lookup with its {} closest nodes killed: {} soft timeouts routed around, {} \
         hard failures, overlap {o}/8 with the live closest, {} queries, {} hops",
        victims.len(),
        stats.slow,
        stats.failures,
        stats.queries,
        stats.hops
    );
    for v in &victims {
        assert!(
            !got.contains(&sim.nodes[*v].id()),
            "a dead node was reported"
        );
    }
    assert!(o >= 7);
    assert!(
        stats.slow + stats.failures >= 1,
        "the dead nodes were never queried"
    );

    // 4. A node that never answers ends up bad and is replaced. Pick a node whose table has a
    // full far bucket with replacements, kill one of those bucket members, and look up near it.
    let watcher = (0..n)
        .find(|i| !sim.dead.contains(i) && sim.nodes[*i].table().replacement_count() > 0)
        .expect("some node has replacements");
    let silent_id = {
        let t = sim.nodes[watcher].table();
        let own = sim.nodes[watcher].id();
        // A member of bucket 0 (the far half): that bucket is full and has replacements in a
        // network this size.
        t.entries()
            .find(|e| own.distance(&e.node.id).leading_zeros() == 0)
            .map(|e| e.node.id)
            .expect("bucket 0 has nodes")
    };
    let silent = sim.index_of_id(&silent_id).unwrap();
    sim.dead.insert(silent);
    let before = sim.nodes[watcher].table().len();
    for _ in 0..4 {
        if sim.nodes[watcher].table().get(&silent_id).is_none() {
            break;
        }
        let now = sim.now;
        // Ask for the silent node's own id: it is the closest candidate, so it is queried.
        let id = sim.nodes[watcher].find_node(now, silent_id).unwrap();
        sim.flush(watcher);
        wait_lookup(&mut sim, watcher, id).expect("lookup finished");
        // Wait out the hard timeout of the silent node's query.
        sim.run_until(Duration::from_secs(20), |_| false);
    }
    let entry = sim.nodes[watcher].table().get(&silent_id).cloned();
    let now = sim.now;
    let state = entry
        .as_ref()
        .map(|e| e.state(now, sim.nodes[watcher].table().config()));
    println!(
        "simulation: a silent node in a full bucket: after its queries timed out it is {:?} \
         (table {} -> {} nodes, {} timeouts counted)",
        state.map_or("replaced".to_string(), |s| format!("{s:?}")),
        before,
        sim.nodes[watcher].table().len(),
        sim.nodes[watcher].stats().timeouts
    );
    assert!(state.is_none() || state == Some(NodeState::Bad));
    assert!(sim.nodes[watcher].table().len() >= before);
}
