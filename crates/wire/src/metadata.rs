//! BEP 9 `ut_metadata` messages: fetching the info dictionary from peers in 16 KiB pieces.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bencode::value::Value;
use shoal_metainfo::bencode;

use crate::WireError;

/// Metadata is exchanged in pieces of 16 KiB (the last may be shorter).
pub const METADATA_PIECE_SIZE: usize = 16 * 1024;

/// One `ut_metadata` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMessage {
    /// `msg_type` 0: please send metadata piece `piece`.
    Request {
        /// Metadata piece index.
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece` of an info dictionary of `total_size` bytes.
    Data {
        /// Metadata piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u64,
        /// The piece's bytes.
        data: Bytes,
    },
    /// `msg_type` 2: the sender will not send piece `piece`.
    Reject {
        /// Metadata piece index.
        piece: u32,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    msg_type: Option<Value>,
    #[serde(default)]
    piece: Option<Value>,
    #[serde(default)]
    total_size: Option<Value>,
}

#[derive(Serialize)]
struct Out {
    msg_type: u8,
    piece: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<u64>,
}

impl MetadataMessage {
    /// Decodes a `ut_metadata` payload: a bencoded dictionary, followed by the raw piece data for
    /// a data message. The scanner finds where the dictionary ends.
    pub fn decode(payload: &Bytes) -> Result<Self, WireError> {
        let bad = |m: &str| WireError::BadExtended(format!("ut_metadata: {m}"));
        let scanned = bencode::scan_prefix(payload, 0, 4).map_err(|e| bad(&e.to_string()))?;
        if !scanned.is_dict(payload) {
            return Err(bad("not a dictionary"));
        }
        let dict_end = scanned.span.end;
        let raw: Raw =
            serde_bencode::from_bytes(&payload[..dict_end]).map_err(|e| bad(&e.to_string()))?;
        let int = |v: &Option<Value>| match v {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let piece = int(&raw.piece)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("missing or invalid 'piece'"))?;
        let trailing = payload.len() - dict_end;
        match int(&raw.msg_type) {
            Some(0) => Ok(MetadataMessage::Request { piece }),
            Some(2) => Ok(MetadataMessage::Reject { piece }),
            Some(1) => {
                let total_size = int(&raw.total_size)
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or_else(|| bad("data without a valid 'total_size'"))?;
                if trailing > METADATA_PIECE_SIZE {
                    return Err(bad("data piece larger than 16 KiB"));
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: payload.slice(dict_end..),
                })
            }
            _ => Err(bad("unknown msg_type")),
        }
    }

    /// Encodes the payload (without the extension id byte).
    pub fn encode(&self) -> Bytes {
        let (msg_type, piece, total_size, data) = match self {
            MetadataMessage::Request { piece } => (0, *piece, None, None),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => (1, *piece, Some(*total_size), Some(data)),
            MetadataMessage::Reject { piece } => (2, *piece, None, None),
        };
        let mut out = serde_bencode::to_bytes(&Out {
            msg_type,
            piece,
            total_size,
        })
        .unwrap_or_default();
        if let Some(d) = data {
            out.extend_from_slice(d);
        }
        Bytes::from(out)
    }
}
