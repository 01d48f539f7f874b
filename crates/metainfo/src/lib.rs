//! The .torrent format for shoal.
//!
//! - [`bencode`]: a bounded, non-recursive scanner that validates bencoded bytes before anything
//!   else reads them, and finds the raw span of the `info` dictionary;
//! - [`Metainfo::from_bytes`]: parse and validate a .torrent (BEP 3, 12, 27, 47), with the info-hash
//!   taken over the exact bytes of `info`;
//! - [`Magnet`]: magnet URIs (BEP 9, 53);
//! - [`TorrentBuilder`]: create torrents from a file or folder, hashing on all cores.

pub mod model;

pub use model::{FileAttr, FileEntry, Info, Metainfo};
