//! Every peer-wire message captured from libtorrent, aria2, Transmission and rqbit decodes, and
//! decodes to what the capture says it is.

use std::path::PathBuf;

use bytes::BytesMut;
use shoal_wire::frame::{decode_frame, Limits};
use shoal_wire::{ExtendedHandshake, Handshake, Message, MetadataMessage, PexMessage};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/conformance/wire")
}

/// `key=value` from the manifest's `decoded` column.
fn field<'a>(decoded: &'a str, key: &str) -> Option<&'a str> {
    decoded
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn captured_messages_decode_as_described() {
    let manifest = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
    // The captured torrent has 850 pieces.
    let limits = Limits::for_pieces(850);
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, what, decoded) = (cols[0], cols[3], cols[4]);
        let bytes = std::fs::read(dir().join(file)).unwrap();
        if file.contains("_handshake_") {
            let hs = Handshake::decode(&bytes)
                .unwrap()
                .expect("a whole handshake");
            assert_eq!(
                hs.info_hash.to_hex(),
                "d460b8af98f716752723c9fa5b0b57995ee43085"
            );
            assert_eq!(hs.supports_extended(), decoded.contains("BEP 10"), "{file}");
            assert_eq!(hs.supports_fast(), decoded.contains("BEP 6"), "{file}");
            assert_eq!(hs.supports_dht(), decoded.contains("BEP 5"), "{file}");
            checked += 1;
            continue;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        // Piece captures are cut after 64 data bytes; pad them back to their real length.
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if buf.len() < len + 4 {
            assert!(
                decode_frame(&mut buf.clone(), &limits).unwrap().is_none(),
                "{file}: waits for the rest"
            );
            buf.resize(len + 4, 0);
        }
        let msg = decode_frame(&mut buf, &limits)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .unwrap_or_else(|| panic!("{file}: incomplete"));
        assert!(buf.is_empty(), "{file}: one message per file");
        if let Some(id) = field(decoded, "id") {
            assert_eq!(
                msg.id().map(|i| i.to_string()).as_deref(),
                Some(id),
                "{file}"
            );
        }
        match &msg {
            Message::KeepAlive => assert!(what.contains("keep-alive"), "{file}"),
            Message::Have(p) | Message::Suggest(p) | Message::AllowedFast(p) => {
                assert_eq!(
                    Some(p.to_string().as_str()),
                    field(decoded, "piece"),
                    "{file}"
                )
            }
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                assert_eq!(
                    Some(b.piece.to_string().as_str()),
                    field(decoded, "index"),
                    "{file}"
                );
                assert_eq!(
                    Some(b.begin.to_string().as_str()),
                    field(decoded, "begin"),
                    "{file}"
                );
                // The first `length=` is the frame's, the last the block's.
                let block_len = decoded
                    .split_whitespace()
                    .filter_map(|w| w.strip_prefix("length="))
                    .next_back();
                assert_eq!(Some(b.length.to_string().as_str()), block_len, "{file}");
            }
            Message::Piece { piece, begin, data } => {
                assert_eq!(
                    Some(data.len().to_string().as_str()),
                    field(decoded, "block"),
                    "{file}"
                );
                assert_eq!(
                    Some(piece.to_string().as_str()),
                    field(decoded, "index"),
                    "{file}"
                );
                assert_eq!(
                    Some(begin.to_string().as_str()),
                    field(decoded, "begin"),
                    "{file}"
                );
            }
            Message::Extended { id: 0, payload } => {
                let hs =
                    ExtendedHandshake::decode(payload).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(
                    hs.id_of("ut_metadata").is_some(),
                    "{file}: every client speaks ut_metadata"
                );
                assert_eq!(
                    hs.metadata_size.is_some(),
                    decoded.contains("metadata_size"),
                    "{file}"
                );
                if decoded.contains("\"metadata_size\": 17088") {
                    assert_eq!(hs.metadata_size, Some(17088));
                }
            }
            Message::Extended { payload, .. } if what.contains("ut_pex") => {
                let pex = PexMessage::decode(payload).unwrap_or_else(|e| panic!("{file}: {e}"));
                let claimed = decoded
                    .split("<")
                    .nth(1)
                    .and_then(|r| r.split(" peer").next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                assert_eq!(pex.added.len(), claimed, "{file}: {decoded}");
            }
            Message::Extended { payload, .. } if what.contains("ut_metadata") => {
                let m = MetadataMessage::decode(payload).unwrap_or_else(|e| panic!("{file}: {e}"));
                match m {
                    MetadataMessage::Request { piece } => {
                        assert!(decoded.contains(&format!("\"msg_type\": 0, \"piece\": {piece}")))
                    }
                    MetadataMessage::Reject { piece } => {
                        assert!(decoded.contains(&format!("\"msg_type\": 2, \"piece\": {piece}")))
                    }
                    MetadataMessage::Data {
                        piece,
                        total_size,
                        data,
                    } => {
                        assert_eq!(total_size, 17088);
                        assert_eq!(data.len(), if piece == 0 { 16384 } else { 704 }, "{file}");
                    }
                }
            }
            _ => {}
        }
        checked += 1;
    }
    println!("wire captures: {checked} messages decoded as described");
    assert!(checked > 80);
}
