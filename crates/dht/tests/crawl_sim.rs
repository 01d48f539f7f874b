//! The crawler against a simulated DHT: 10,000 nodes holding 100,000 info-hashes (each on the
//! 8 nodes closest to it, as announces leave them), every node answering `sample_infohashes`
//! with the shipped [`Sampler`] over its own [`PeerStore`], every answer going through the
//! KRPC encoder and decoder. Prints coverage against queries spent.
//!
//! `SHOAL_CRAWL_SIM_NODES` changes the size (info-hashes: 10 per node); add `-- --nocapture`
//! to see the figures.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{CompactNode, Id20, Time};
use shoal_dht::crawler::{CrawlEvent, Crawler, CrawlerConfig};
use shoal_dht::krpc::{self, Body, Msg, Response};
use shoal_dht::peer_store::{PeerStore, PeerStoreConfig};
use shoal_dht::sample::{Sampler, SamplerConfig};
use shoal_dht::SampleReply;

struct SimNode {
    id: Id20,
    addr: SocketAddr,
    store: PeerStore,
    sampler: Sampler,
}

fn xor(a: &Id20, b: &Id20) -> [u8; 20] {
    std::array::from_fn(|i| a.0[i] ^ b.0[i])
}

/// The `k` nodes closest to `target` (by XOR) among ids sorted ascending: the closest share
/// the longest prefix with it, so they sit near its place in sorted order.
fn closest(sorted: &[(Id20, usize)], target: &Id20, k: usize) -> Vec<usize> {
    let at = sorted.partition_point(|(id, _)| id < target);
    let lo = at.saturating_sub(4 * k);
    let hi = (at + 4 * k).min(sorted.len());
    let mut window: Vec<&(Id20, usize)> = sorted[lo..hi].iter().collect();
    window.sort_by_key(|(id, _)| xor(id, target));
    window.iter().take(k).map(|(_, i)| *i).collect()
}

#[test]
fn crawler_coverage_against_queries_spent() {
    let n: usize = std::env::var("SHOAL_CRAWL_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let hashes = n * 10;
    let mut rng = StdRng::seed_from_u64(51);
    let store_cfg = PeerStoreConfig {
        ttl: Duration::from_secs(7 * 24 * 3600),
        ..PeerStoreConfig::default()
    };
    let mut nodes: Vec<SimNode> = (0..n)
        .map(|i| SimNode {
            id: Id20(rng.random()),
            addr: SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881)),
            store: PeerStore::new(store_cfg),
            sampler: Sampler::new(SamplerConfig::default()),
        })
        .collect();
    let mut sorted: Vec<(Id20, usize)> = nodes.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    sorted.sort();
    let by_addr: std::collections::HashMap<SocketAddr, usize> =
        nodes.iter().enumerate().map(|(i, s)| (s.addr, i)).collect();
    let truth: Vec<Id20> = (0..hashes).map(|_| Id20(rng.random())).collect();
    for (j, h) in truth.iter().enumerate() {
        let peer = SocketAddr::from(([192, 168, (j >> 8) as u8, j as u8], 6881));
        for i in closest(&sorted, h, 8) {
            nodes[i].store.insert(Time::ZERO, *h, peer);
        }
    }
    let truth: HashSet<Id20> = truth.into_iter().collect();

    let config = CrawlerConfig {
        queries_per_second: 100.0,
        burst: 100.0,
        ..CrawlerConfig::default()
    };
    let mut crawler = Crawler::new(config, Time::ZERO, 7);
    crawler.add_node(Time::ZERO, nodes[0].addr);
    let mut found: HashSet<Id20> = HashSet::new();
    let mut now = Time::ZERO;
    let end = Time::from_secs(13 * 3600);
    let marks = [1_000u64, 2_000, 5_000, 10_000, 15_000, 20_000, 30_000];
    let mut next_mark = 0;
    let mut figures = Vec::new();
    let mut last_query_to: std::collections::HashMap<SocketAddr, Time> = Default::default();
    let mut last_query_at = Time::ZERO;
    while now < end {
        while let Some((to, target)) = crawler.poll_query(now) {
            // The per-node budget: never twice within a minute, nor within the node's interval.
            last_query_at = now;
            if let Some(prev) = last_query_to.insert(to, now) {
                assert!(now.saturating_since(prev) >= Duration::from_secs(60));
            }
            let i = by_addr[&to];
            let sample = {
                let node = &mut nodes[i];
                node.sampler.sample(now, &node.store, &mut rng)
            };
            let close: Vec<CompactNode> = closest(&sorted, &target, 8)
                .into_iter()
                .map(|j| CompactNode {
                    id: nodes[j].id,
                    addr: nodes[j].addr,
                })
                .collect();
            let wire = Msg {
                tid: b"sm".to_vec(),
                version: None,
                read_only: false,
                ip: None,
                body: Body::Response(Response {
                    id: nodes[i].id,
                    nodes: close,
                    samples: Some(sample.samples),
                    num: Some(sample.num),
                    interval: Some(sample.interval),
                    ..Response::default()
                }),
            }
            .encode();
            let Body::Response(r) = krpc::decode(&wire).unwrap().body else {
                panic!()
            };
            let reply = SampleReply {
                node_id: r.id,
                samples: r.samples,
                num: r.num,
                interval: r.interval,
                nodes: r.nodes,
            };
            // Answers take 50 ms.
            crawler.handle_reply(now + Duration::from_millis(50), to, &reply);
            while let Some(e) = crawler.poll_event() {
                if let CrawlEvent::NewHash(h) = e {
                    assert!(truth.contains(&h));
                    found.insert(h);
                }
            }
            let q = crawler.stats().queries;
            if next_mark < marks.len() && q >= marks[next_mark] {
                figures.push((q, found.len(), now));
                next_mark += 1;
            }
        }
        now = match crawler.next_timeout(now) {
            Some(t) => t.max(now + Duration::from_millis(1)),
            None => break,
        };
    }
    let s = crawler.stats();
    figures.push((s.queries, found.len(), last_query_at));
    println!("crawl simulation: {n} nodes, {hashes} info-hashes, 100 queries/s, 20 samples a reply, 6 h intervals");
    for (q, f, t) in &figures {
        println!(
            "  {q:>6} queries ({:.1} per node): {f:>6} info-hashes, coverage {:.1}%, at {:.1} h",
            *q as f64 / n as f64,
            100.0 * *f as f64 / hashes as f64,
            t.since_origin().as_secs_f64() / 3600.0
        );
    }
    println!("  nodes found: {} of {n}", s.nodes);
    // Every node is found, and one pass over them (each asked once) sees most hashes: a hash
    // is on 8 nodes, each showing 20 of its ~80.
    assert!(s.nodes as usize >= n * 95 / 100, "{s:?}");
    let after_pass = figures
        .iter()
        .find(|(q, _, _)| *q as usize >= n)
        .map_or(found.len(), |(_, f, _)| *f);
    assert!(
        after_pass * 100 >= hashes * 70,
        "one pass saw {after_pass} of {hashes}"
    );
    // Later passes (after the 6 h interval) add the rest.
    assert!(found.len() > after_pass);
}
