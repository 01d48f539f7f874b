//! The BEP 10 extended handshake: which extensions a peer speaks and under which ids.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bencode::value::Value;
use shoal_metainfo::bencode;

use crate::WireError;

/// The extension message id of the extended handshake itself.
pub const EXTENDED_HANDSHAKE_ID: u8 = 0;

/// Longest client name (`v`) kept; longer ones are cut.
const MAX_CLIENT_NAME: usize = 100;

/// The contents of an extended handshake. Unknown keys are ignored; wrongly typed known keys are
/// treated as absent, as libtorrent does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// Extension name to the id the sender wants to receive it under (`m`); id 0 = disabled.
    pub extensions: BTreeMap<String, u8>,
    /// Client name and version (`v`).
    pub client: Option<String>,
    /// The sender's listen port (`p`).
    pub listen_port: Option<u16>,
    /// How many outstanding requests the sender queues (`reqq`).
    pub reqq: Option<u32>,
    /// Our address as the sender sees it (`yourip`).
    pub your_ip: Option<IpAddr>,
    /// Size of the info dictionary (`metadata_size`, BEP 9).
    pub metadata_size: Option<u64>,
    /// The sender only uploads (`upload_only`, a seed or partial seed).
    pub upload_only: bool,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    m: Option<Value>,
    #[serde(default)]
    v: Option<Value>,
    #[serde(default)]
    p: Option<Value>,
    #[serde(default)]
    reqq: Option<Value>,
    #[serde(default)]
    yourip: Option<Value>,
    #[serde(default)]
    metadata_size: Option<Value>,
    #[serde(default)]
    upload_only: Option<Value>,
}

/// Fields in bencode key order.
#[derive(Serialize)]
struct Out<'a> {
    m: &'a BTreeMap<String, u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reqq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_only: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    yourip: Option<Vec<u8>>,
}

fn int(v: &Option<Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

impl ExtendedHandshake {
    /// The id under which the sender wants extension `name`, if it speaks it.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.extensions.get(name).copied().filter(|id| *id != 0)
    }

    /// Decodes the payload of an extended handshake (after the extension id byte).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let bad = |m: String| WireError::BadExtended(m);
        let scanned = bencode::scan(payload).map_err(|e| bad(e.to_string()))?;
        if !scanned.is_dict(payload) {
            return Err(bad("extended handshake is not a dictionary".into()));
        }
        let raw: Raw = serde_bencode::from_bytes(payload).map_err(|e| bad(e.to_string()))?;
        let mut extensions = BTreeMap::new();
        if let Some(Value::Dict(m)) = &raw.m {
            for (k, v) in m {
                if let (Ok(name), Value::Int(id)) = (std::str::from_utf8(k), v) {
                    if let Ok(id) = u8::try_from(*id) {
                        extensions.insert(name.to_string(), id);
                    }
                }
            }
        }
        let client = match &raw.v {
            Some(Value::Bytes(b)) => {
                let s = String::from_utf8_lossy(b);
                Some(s.chars().take(MAX_CLIENT_NAME).collect())
            }
            _ => None,
        };
        let your_ip = match &raw.yourip {
            Some(Value::Bytes(b)) if b.len() == 4 => Some(IpAddr::from(
                <[u8; 4]>::try_from(&b[..]).unwrap_or_default(),
            )),
            Some(Value::Bytes(b)) if b.len() == 16 => Some(IpAddr::from(
                <[u8; 16]>::try_from(&b[..]).unwrap_or_default(),
            )),
            _ => None,
        };
        Ok(ExtendedHandshake {
            extensions,
            client,
            listen_port: int(&raw.p)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            reqq: int(&raw.reqq).and_then(|r| u32::try_from(r).ok()),
            your_ip,
            metadata_size: int(&raw.metadata_size).and_then(|s| u64::try_from(s).ok()),
            upload_only: int(&raw.upload_only).is_some_and(|u| u != 0),
        })
    }

    /// Encodes the handshake payload (without the extension id byte).
    pub fn encode(&self) -> Bytes {
        let out = Out {
            m: &self.extensions,
            metadata_size: self.metadata_size,
            p: self.listen_port,
            reqq: self.reqq,
            upload_only: self.upload_only.then_some(1),
            v: self.client.as_deref(),
            yourip: self.your_ip.map(|ip| match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }),
        };
        // Serialising plain maps, integers and strings cannot fail.
        Bytes::from(serde_bencode::to_bytes(&out).unwrap_or_default())
    }
}
