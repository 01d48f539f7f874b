//! The BEP 44 (`get`, `put`) and BEP 51 (`sample_infohashes`) messages are untrusted: whatever
//! bytes arrive, decoding, the `put` checks (canonical value, signature), a node serving the
//! packet and the crawler taking it as an answer end without a panic, and stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::Time;
use shoal_dht::crawler::{Crawler, CrawlerConfig};
use shoal_dht::krpc::{Body, QueryKind, MAX_SAMPLES};
use shoal_dht::{bep44, DhtConfig, DhtNode, SampleReply};

fuzz_target!(|data: &[u8]| {
    let _ = bep44::is_canonical(data);
    let from = "10.0.0.1:6881".parse().unwrap();
    if let Ok(msg) = shoal_dht::decode(data) {
        match &msg.body {
            Body::Query(q) => {
                if let QueryKind::Put(p) = &q.kind {
                    let _ = bep44::check_put(&p.value, p.mutable.as_ref());
                }
            }
            Body::Response(r) => {
                assert!(r.samples.as_ref().map_or(0, Vec::len) <= MAX_SAMPLES);
                if let (Some(k), Some(sig), Some(seq), Some(v)) = (&r.key, &r.sig, r.seq, &r.value) {
                    let _ = bep44::verify(k, sig, b"", seq, v);
                }
                let mut crawler = Crawler::new(CrawlerConfig::default(), Time::ZERO, 1);
                crawler.add_node(Time::ZERO, from);
                if let Some((to, _)) = crawler.poll_query(Time::ZERO) {
                    let mut nodes = r.nodes.clone();
                    nodes.extend(r.nodes6.iter().cloned());
                    let reply = SampleReply {
                        node_id: r.id,
                        samples: r.samples.clone(),
                        num: r.num,
                        interval: r.interval,
                        nodes,
                    };
                    crawler.handle_reply(Time::ZERO, to, &reply);
                    while crawler.poll_event().is_some() {}
                    assert!(crawler.stats().nodes <= 1 + CrawlerConfig::default().nodes_per_reply as u64);
                }
            }
            Body::Error(_) => {}
        }
    }
    let mut node = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
    node.handle_packet(Time::ZERO, from, data);
    while let Some((_, out)) = node.poll_transmit() {
        assert!(shoal_dht::decode(&out).is_ok());
    }
});
