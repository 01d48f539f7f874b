//! The .torrent format for shoal.
//!
//! - [`bencode`]: a bounded, non-recursive scanner that validates bencoded bytes before anything
//!   else reads them, and finds the raw span of the `info` dictionary;
//! - [`Metainfo::from_bytes`]: parse and validate a .torrent (BEP 3, 12, 27, 47, and 52: v2 and
//!   hybrid torrents, their file trees and piece layers), with the info-hashes taken over the exact
//!   bytes of `info`;
//! - [`merkle`]: the per-file SHA-256 merkle trees of BEP 52;
//! - [`Magnet`]: magnet URIs (BEP 9, 53);
//! - [`TorrentBuilder`]: create torrents from a file or folder, hashing on all cores.

pub mod bencode;
mod create;
mod create_v2;
mod error;
mod magnet;
pub mod merkle;
pub mod model;
mod parse;
pub mod sanitize;
mod v2;
mod value;

pub use create::{auto_piece_length, CreatedTorrent, TorrentBuilder, MIN_PIECE_LENGTH};
pub use error::MetainfoError;
pub use magnet::{parse_select_only, percent_decode, percent_encode, Magnet};
pub use model::{FileAttr, FileEntry, Info, InfoV2, Metainfo, Version};
pub use parse::{info_hash_of, info_hash_v2_of, MAX_PIECES, MAX_TORRENT_FILE_SIZE};
