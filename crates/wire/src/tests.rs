//! Unit and property tests of the codec.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use crate::frame::{decode_frame, Limits};
use crate::*;

fn round_trip(msg: &Message, limits: &Limits) -> Message {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf);
    assert_eq!(buf.len(), msg.wire_len());
    // The head and the block it hands back (a piece's only) are the same bytes.
    let mut head = BytesMut::new();
    let block = msg.encode_head(&mut head);
    assert_eq!(block.is_some(), matches!(msg, Message::Piece { .. }));
    head.extend_from_slice(block.map_or(&[][..], |b| &b[..]));
    assert_eq!(head, buf);
    let out = decode_frame(&mut buf, limits).unwrap().unwrap();
    assert!(buf.is_empty());
    out
}

#[test]
fn every_message_round_trips() {
    let b = BlockRef {
        piece: 3,
        begin: 16384,
        length: 16384,
    };
    let limits = Limits::for_pieces(12);
    for msg in [
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(7),
        Message::Bitfield(Bytes::from_static(&[0xff, 0xf0])),
        Message::Request(b),
        Message::Piece {
            piece: 1,
            begin: 0,
            data: Bytes::from(vec![9u8; 16384]),
        },
        Message::Cancel(b),
        Message::Port(6881),
        Message::Suggest(2),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(b),
        Message::AllowedFast(4),
        Message::Extended {
            id: 3,
            payload: Bytes::from_static(b"d1:ai1ee"),
        },
    ] {
        assert_eq!(round_trip(&msg, &limits), msg);
    }
}

#[test]
fn huge_length_prefix_is_refused_before_allocating() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 7][..]);
    let err = decode_frame(&mut buf, &Limits::for_pieces(100)).unwrap_err();
    assert!(matches!(err, WireError::TooLong { len: u32::MAX, .. }));
    assert!(buf.capacity() < 1024);
}

#[test]
fn partial_frames_wait_for_more() {
    let mut full = BytesMut::new();
    Message::Have(5).encode(&mut full);
    Message::Interested.encode(&mut full);
    let mut buf = BytesMut::new();
    let limits = Limits::default();
    let mut got = Vec::new();
    for byte in full.iter() {
        buf.extend_from_slice(&[*byte]);
        while let Some(m) = decode_frame(&mut buf, &limits).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, [Message::Have(5), Message::Interested]);
}

#[test]
fn frame_missing_counts_to_the_end_of_the_first_frame() {
    let mut full = BytesMut::new();
    Message::Have(5).encode(&mut full);
    Message::Interested.encode(&mut full);
    for cut in 0..=full.len() {
        // Until the length prefix is whole, only its rest is known to be missing.
        let want = match cut {
            0..4 => 4 - cut,
            4..9 => 9 - cut,
            _ => 0,
        };
        assert_eq!(crate::frame::frame_missing(&full[..cut]), want, "{cut}");
    }
}

#[test]
fn malformed_messages_are_errors() {
    let limits = Limits::for_pieces(10);
    let frame = |bytes: &[u8]| decode_frame(&mut BytesMut::from(bytes), &limits);
    // have with 3 bytes
    assert!(frame(&[0, 0, 0, 4, 4, 0, 0, 1]).is_err());
    // choke with a payload
    assert!(frame(&[0, 0, 0, 2, 0, 1]).is_err());
    // an extended message with no extension id (found by cargo fuzz: once an overflow panic)
    assert!(frame(&[0, 0, 0, 1, 20]).is_err());
    // bitfield of the wrong length, and with spare bits set
    assert!(frame(&[0, 0, 0, 2, 5, 0xff]).is_err());
    assert!(frame(&[0, 0, 0, 3, 5, 0xff, 0xff]).is_err());
    assert!(frame(&[0, 0, 0, 3, 5, 0xff, 0xc0]).is_ok());
    // piece with a 16 KiB + 1 block
    let mut big = BytesMut::new();
    Message::Piece {
        piece: 0,
        begin: 0,
        data: Bytes::from(vec![0; 16385]),
    }
    .encode(&mut big);
    assert!(matches!(
        decode_frame(&mut big, &limits),
        Err(WireError::BlockTooLarge(16385))
    ));
    // extended message over the limit
    let mut ext = BytesMut::new();
    Message::Extended {
        id: 1,
        payload: Bytes::from(vec![b'x'; 70_000]),
    }
    .encode(&mut ext);
    assert!(decode_frame(&mut ext, &limits).is_err());
}

#[test]
fn unknown_ids_are_skipped() {
    let mut buf = BytesMut::from(&[0, 0, 0, 3, 99, 1, 2, 0, 0, 0, 1, 1][..]);
    let limits = Limits::default();
    assert_eq!(
        decode_frame(&mut buf, &limits).unwrap(),
        Some(Message::Unknown { id: 99, len: 2 })
    );
    assert_eq!(
        decode_frame(&mut buf, &limits).unwrap(),
        Some(Message::Unchoke)
    );
}

#[test]
fn extended_handshake_round_trip() {
    let mut hs = ExtendedHandshake {
        client: Some("shoal 0.1.0".into()),
        listen_port: Some(6881),
        reqq: Some(500),
        your_ip: Some("127.0.0.2".parse().unwrap()),
        metadata_size: Some(17088),
        upload_only: true,
        ..Default::default()
    };
    hs.extensions.insert("ut_metadata".into(), 3);
    hs.extensions.insert("ut_pex".into(), 0);
    let back = ExtendedHandshake::decode(&hs.encode()).unwrap();
    assert_eq!(back, hs);
    assert_eq!(back.id_of("ut_metadata"), Some(3));
    assert_eq!(back.id_of("ut_pex"), None);
    assert!(ExtendedHandshake::decode(b"i1e").is_err());
    assert!(ExtendedHandshake::decode(b"d1:m").is_err());
}

#[test]
fn metadata_messages_round_trip() {
    for m in [
        MetadataMessage::Request { piece: 1 },
        MetadataMessage::Reject { piece: 7 },
        MetadataMessage::Data {
            piece: 0,
            total_size: 17088,
            data: Bytes::from(vec![b'd'; 16384]),
        },
    ] {
        assert_eq!(MetadataMessage::decode(&m.encode()).unwrap(), m);
    }
    let too_big = MetadataMessage::Data {
        piece: 0,
        total_size: 1,
        data: Bytes::from(vec![0; 16385]),
    };
    assert!(MetadataMessage::decode(&too_big.encode()).is_err());
    assert!(MetadataMessage::decode(&Bytes::from_static(b"d8:msg_typei9e5:piecei0ee")).is_err());
    assert!(MetadataMessage::decode(&Bytes::from_static(b"d8:msg_typei0e5:piecei-1ee")).is_err());
}

fn arb_block() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, begin, length)| BlockRef {
        piece,
        begin,
        length,
    })
}

fn arb_hash_request() -> impl Strategy<Value = HashRequest> {
    (
        any::<[u8; 32]>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(root, base_layer, index, length, proof_layers)| HashRequest {
                pieces_root: shoal_core::Id32(root),
                base_layer,
                index,
                length,
                proof_layers,
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_hash_request().prop_map(Message::HashRequest),
        arb_hash_request().prop_map(Message::HashReject),
        (
            arb_hash_request(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..40)
        )
            .prop_map(|(req, h)| Message::Hashes {
                req,
                hashes: h.into_iter().map(shoal_core::Id32).collect()
            }),
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(Message::Have),
        any::<u32>().prop_map(Message::Suggest),
        any::<u32>().prop_map(Message::AllowedFast),
        any::<u16>().prop_map(Message::Port),
        arb_block().prop_map(Message::Request),
        arb_block().prop_map(Message::Cancel),
        arb_block().prop_map(Message::Reject),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Message::Bitfield(b.into())),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..16385)
        )
            .prop_map(|(piece, begin, d)| Message::Piece {
                piece,
                begin,
                data: d.into()
            }),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(id, p)| {
            Message::Extended {
                id,
                payload: p.into(),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn prop_round_trip(msgs in proptest::collection::vec(arb_message(), 1..8)) {
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        for m in &msgs {
            m.encode(&mut buf);
        }
        let mut out = Vec::new();
        while let Some(m) = decode_frame(&mut buf, &limits).unwrap() {
            out.push(m);
        }
        prop_assert_eq!(out, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), pieces in proptest::option::of(0u32..5000)) {
        let limits = Limits { num_pieces: pieces, ..Limits::default() };
        let mut buf = BytesMut::from(&bytes[..]);
        // Bounded: each Ok(Some) consumes at least 4 bytes.
        for _ in 0..200 {
            match decode_frame(&mut buf, &limits) {
                Ok(Some(Message::Extended { id: 0, payload })) => { let _ = ExtendedHandshake::decode(&payload); }
                Ok(Some(Message::Extended { payload, .. })) => { let _ = MetadataMessage::decode(&payload); }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = Handshake::decode(&bytes);
        let _ = ExtendedHandshake::decode(&bytes);
        let _ = MetadataMessage::decode(&Bytes::from(bytes));
    }
}

fn hash_req(length: u32) -> HashRequest {
    HashRequest {
        pieces_root: shoal_core::Id32([9; 32]),
        base_layer: 0,
        index: 0,
        length,
        proof_layers: 2,
    }
}

#[test]
fn hash_messages_round_trip_with_their_exact_layout() {
    let limits = Limits::for_pieces(12).with_v2(true);
    let req = hash_req(16);
    let mut buf = BytesMut::new();
    Message::HashRequest(req).encode(&mut buf);
    // length 49, id 21, root, then four big-endian numbers.
    assert_eq!(&buf[..5], &[0, 0, 0, 49, 21]);
    assert_eq!(&buf[5..37], &[9; 32]);
    assert_eq!(
        &buf[37..53],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 2]
    );
    for msg in [
        Message::HashRequest(req),
        Message::HashReject(req),
        Message::Hashes {
            req,
            hashes: vec![shoal_core::Id32([1; 32]); 16],
        },
        Message::Hashes {
            req: hash_req(MAX_HASH_COUNT),
            hashes: vec![shoal_core::Id32([2; 32]); (MAX_HASH_COUNT + MAX_PROOF_HASHES) as usize],
        },
    ] {
        assert_eq!(round_trip(&msg, &limits), msg);
    }
}

#[test]
fn hash_messages_are_bounded() {
    // A request of the wrong size.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(
        decode_frame(&mut buf, &Limits::default()),
        Err(WireError::BadLength { id: 21, len: 9 })
    );
    // A `hashes` whose hash bytes are not whole hashes.
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(1 + 48 + 31u32).to_be_bytes());
    buf.extend_from_slice(&[22]);
    buf.extend_from_slice(&[0; 48 + 31]);
    assert_eq!(
        decode_frame(&mut buf, &Limits::default()),
        Err(WireError::BadLength { id: 22, len: 79 })
    );
    // The largest legal answer needs the v2 limit: a v1 torrent's peer cannot send it.
    let big = Message::Hashes {
        req: hash_req(MAX_HASH_COUNT),
        hashes: vec![shoal_core::Id32([2; 32]); MAX_HASH_COUNT as usize],
    };
    let mut buf = BytesMut::new();
    big.encode(&mut buf);
    assert!(matches!(
        decode_frame(&mut buf, &Limits::for_pieces(12)),
        Err(WireError::TooLong { .. })
    ));
    // One hash more than any request may be answered with is refused under the v2 limit too.
    let n = (MAX_HASH_COUNT + MAX_PROOF_HASHES + 1) as usize;
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(1 + 48 + 32 * n as u32).to_be_bytes());
    buf.extend_from_slice(&[22]);
    buf.extend_from_slice(&vec![0; 48 + 32 * n]);
    let limits = Limits::for_pieces(12).with_v2(true);
    assert!(decode_frame(&mut buf, &limits).is_err());
}
