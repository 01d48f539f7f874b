//! Arbitrary message sequences from peers, interleaved with time, disconnects and disk answers,
//! never make the machine panic, and its accounting stays consistent.

mod util;

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use shoal_wire::{BlockRef, Message};
use util::*;

fn block_ref() -> impl Strategy<Value = BlockRef> {
    (
        0u32..14,
        prop_oneof![Just(0u32), 0u32..200_000],
        prop_oneof![Just(16384u32), 0u32..40_000],
    )
        .prop_map(|(piece, begin, length)| BlockRef {
            piece,
            begin: begin - begin % 16384 * u32::from(begin % 3 == 0),
            length,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        (0u32..14).prop_map(Message::Have),
        proptest::collection::vec(any::<u8>(), 0..4)
            .prop_map(|b| Message::Bitfield(Bytes::from(b))),
        block_ref().prop_map(Message::Request),
        block_ref().prop_map(Message::Cancel),
        block_ref().prop_map(Message::Reject),
        (0u32..14, 0u32..5, 0usize..20_000).prop_map(|(piece, i, len)| Message::Piece {
            piece,
            begin: i * 16384,
            data: Bytes::from(vec![0xA5; len]),
        }),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        (0u32..14).prop_map(Message::Suggest),
        (0u32..14).prop_map(Message::AllowedFast),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(id, p)| {
            Message::Extended {
                id: id % 4,
                payload: Bytes::from(p),
            }
        }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    /// A message to the seed (node 0) or the leecher (node 1) from the probe's connection.
    Send(bool, Message),
    Advance(u64),
    Reconnect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<bool>(), message()).prop_map(|(to_seed, m)| Step::Send(to_seed, m)),
        1 => (1u64..5000).prop_map(Step::Advance),
        1 => Just(Step::Reconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn hostile_sequences_never_panic_and_honest_transfer_still_completes(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        // A seed and a leecher that trade honestly, and a probe connected to both whose
        // messages are the arbitrary ones.
        let mut net = Net::new(Content::new(9 * 65536 + 1000, 65536, 5));
        let seed = net.add_node(true, Behaviour::Honest);
        let leech = net.add_node(false, Behaviour::Honest);
        let probe = net.add_node(false, Behaviour::Frozen);
        net.nodes[seed].upload_rate = Some(2_000_000);
        net.cut.push((probe, seed));
        net.cut.push((probe, leech));
        let mut conns = net.connect_all(&[(seed, probe), (leech, probe), (leech, seed)]);
        for s in steps {
            match s {
                Step::Send(to_seed, m) => {
                    let (node, conn) = if to_seed { (seed, conns[0].0) } else { (leech, conns[1].0) };
                    if net.links.contains_key(&(node, conn)) {
                        net.inject(node, conn, m);
                    }
                }
                Step::Advance(ms) => net.advance(Duration::from_millis(ms)),
                Step::Reconnect => {
                    for (i, (a, b)) in [(seed, probe), (leech, probe)].into_iter().enumerate() {
                        if !net.links.contains_key(&(a, conns[i].0)) {
                            let c = net.connect_all(&[(a, b)]);
                            conns[i] = c[0];
                        }
                    }
                }
            }
        }
        // Whatever the probe did, the honest pair completes and the seed is never banned.
        prop_assert!(net.run_until(Duration::from_secs(120), Duration::from_millis(100), |n| n.has_all(leech)));
        let seed_ip = net.nodes[seed].addr.ip();
        prop_assert!(!net.nodes[leech].torrent.is_banned(seed_ip));
    }
}
