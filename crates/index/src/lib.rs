//! shoal's keyword-search store: torrents found by crawling the DHT (BEP 51 samples, BEP 9
//! metadata), kept in SQLite with an FTS5 full-text index over names and file paths.
//!
//! * [`Index`]: open (migrating the schema), record what the crawler saw, search.
//! * [`schema`]: the migrations, tracked by SQLite's `user_version`.
//! * [`text`]: cleaning untrusted names and paths, and turning words into an FTS5 query.
//!
//! ```
//! use shoal_core::Id20;
//! use shoal_index::{Index, IndexConfig, Torrent};
//!
//! let mut index = Index::open_in_memory(IndexConfig::default()).unwrap();
//! index
//!     .insert(&Torrent {
//!         info_hash: Id20([1; 20]),
//!         name: "Ubuntu 24.04 desktop amd64.iso".into(),
//!         size: 6 << 30,
//!         files: vec![("ubuntu-24.04-desktop-amd64.iso".into(), 6 << 30)],
//!         peers: 12,
//!     }, 1_700_000_000)
//!     .unwrap();
//! let hits = index.search("ubuntu 24.04", 10).unwrap();
//! assert_eq!(hits[0].name, "Ubuntu 24.04 desktop amd64.iso");
//! assert!(hits[0].magnet().starts_with("magnet:?xt=urn:btih:0101"));
//! ```

#![warn(missing_docs)]

mod index;
pub mod schema;
pub mod text;

pub use index::{Hit, Index, IndexConfig, IndexError, Torrent};
