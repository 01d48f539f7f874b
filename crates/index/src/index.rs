//! The index proper: one SQLite file, torrents and their files in tables, names and paths in an
//! FTS5 table whose rowid is the torrent's id.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use shoal_core::Id20;
use shoal_metainfo::Magnet;

use crate::schema::{self, SchemaError};
use crate::text::{clean, fts_query, MAX_NAME, MAX_PATH};

/// Limits of an [`Index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Most torrents kept; past it the least-seen ones are evicted (fewest sightings, then the
    /// longest unseen). A million torrents take about 1 GB with their file lists.
    pub max_torrents: u64,
    /// Most files of one torrent stored and indexed (the count is always kept whole).
    pub max_files: usize,
    /// Most bytes of file paths indexed for one torrent.
    pub max_paths_text: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            max_torrents: 1_000_000,
            max_files: 1000,
            max_paths_text: 64 << 10,
        }
    }
}

/// Errors of the index, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file could not be opened or is not an index.
    #[error("cannot open the index {path}: {source}")]
    Open {
        /// Its path.
        path: String,
        /// Why.
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A search without a single word.
    #[error("give at least one word to search for")]
    NoWords,
    /// SQLite failed.
    #[error("index database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A torrent as the crawler learnt it: from verified metadata, plus how many peers it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torrent {
    /// The info-hash.
    pub info_hash: Id20,
    /// The name (cleaned before it is stored).
    pub name: String,
    /// Total size in bytes.
    pub size: u64,
    /// Every file: path (components joined with `/`) and size.
    pub files: Vec<(String, u64)>,
    /// Peers seen for it.
    pub peers: u64,
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The info-hash.
    pub info_hash: Id20,
    /// The name.
    pub name: String,
    /// Total size in bytes.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// Most peers seen at once.
    pub peers: u64,
    /// When it was first seen (Unix seconds).
    pub first_seen: i64,
    /// When it was last seen in a sample (Unix seconds).
    pub last_seen: i64,
    /// FTS5 bm25 relevance (lower is better).
    pub rank: f64,
}

impl Hit {
    /// The magnet link of the result (info-hash and name), which `shoal download` takes.
    pub fn magnet(&self) -> String {
        let mut m = Magnet::new(self.info_hash);
        m.display_name = Some(self.name.clone());
        m.to_string()
    }
}

/// The keyword-search index.
pub struct Index {
    conn: Connection,
    config: IndexConfig,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Index {
    /// Opens (or creates) the index at `path` and brings its schema up to date.
    pub fn open(path: &Path, config: IndexConfig) -> Result<Index, IndexError> {
        let conn = Connection::open(path).map_err(|source| IndexError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::setup(conn, config).map_err(|e| match e {
            IndexError::Sqlite(source) => IndexError::Open {
                path: path.display().to_string(),
                source,
            },
            e => e,
        })
    }

    /// An index in memory (tests).
    pub fn open_in_memory(config: IndexConfig) -> Result<Index, IndexError> {
        Self::setup(Connection::open_in_memory()?, config)
    }

    fn setup(mut conn: Connection, config: IndexConfig) -> Result<Index, IndexError> {
        // The crawler writes while `shoal search` may read: wait for the lock a while.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        schema::migrate(&mut conn)?;
        Ok(Index { conn, config })
    }

    /// Number of torrents.
    pub fn len(&self) -> Result<u64, IndexError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM torrents", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// True if the index holds no torrent.
    pub fn is_empty(&self) -> Result<bool, IndexError> {
        Ok(self.len()? == 0)
    }

    /// True if `info_hash` is indexed.
    pub fn contains(&self, info_hash: &Id20) -> Result<bool, IndexError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM torrents WHERE info_hash = ?1",
                [&info_hash.0[..]],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records that `info_hash` turned up in a sample again at `now`: its last-seen time moves
    /// and its sighting count grows. Returns false if it is not indexed (yet).
    pub fn seen(&mut self, info_hash: &Id20, now: i64) -> Result<bool, IndexError> {
        let n = self.conn.execute(
            "UPDATE torrents SET last_seen = max(last_seen, ?2), seen_count = seen_count + 1
             WHERE info_hash = ?1",
            params![&info_hash.0[..], now],
        )?;
        Ok(n > 0)
    }

    /// Adds a torrent, or updates it (name, files, the larger peer count, last-seen) if it is
    /// there. Names and paths are cleaned and cut first; the least-seen torrents are evicted
    /// when the index is over [`IndexConfig::max_torrents`].
    pub fn insert(&mut self, t: &Torrent, now: i64) -> Result<(), IndexError> {
        let name = clean(&t.name, MAX_NAME);
        let files: Vec<(String, u64)> = t
            .files
            .iter()
            .take(self.config.max_files)
            .map(|(p, s)| (clean(p, MAX_PATH), *s))
            .collect();
        let mut paths = String::new();
        for (p, _) in &files {
            if paths.len() + p.len() + 1 > self.config.max_paths_text {
                break;
            }
            paths.push_str(p);
            paths.push('\n');
        }
        let tx = self.conn.transaction()?;
        let id: i64 = tx.query_row(
            "INSERT INTO torrents (info_hash, name, size, file_count, peers, seen_count, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)
             ON CONFLICT(info_hash) DO UPDATE SET
               name = excluded.name, size = excluded.size, file_count = excluded.file_count,
               peers = max(peers, excluded.peers), last_seen = max(last_seen, excluded.last_seen),
               seen_count = seen_count + 1
             RETURNING id",
            params![
                &t.info_hash.0[..],
                name,
                to_i64(t.size),
                to_i64(t.files.len() as u64),
                to_i64(t.peers),
                now
            ],
            |r| r.get(0),
        )?;
        tx.execute("DELETE FROM files WHERE torrent_id = ?1", [id])?;
        tx.execute("DELETE FROM torrents_fts WHERE rowid = ?1", [id])?;
        {
            let mut ins =
                tx.prepare("INSERT INTO files (torrent_id, path, size) VALUES (?1, ?2, ?3)")?;
            for (p, s) in &files {
                ins.execute(params![id, p, to_i64(*s)])?;
            }
        }
        tx.execute(
            "INSERT INTO torrents_fts (rowid, name, paths) VALUES (?1, ?2, ?3)",
            params![id, name, paths],
        )?;
        tx.commit()?;
        self.evict()?;
        Ok(())
    }

    /// Evicts the least-seen torrents until at most [`IndexConfig::max_torrents`] remain.
    /// Returns how many went.
    pub fn evict(&mut self) -> Result<u64, IndexError> {
        let over = self.len()?.saturating_sub(self.config.max_torrents);
        if over == 0 {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let ids: Vec<i64> = {
            let mut q =
                tx.prepare("SELECT id FROM torrents ORDER BY seen_count, last_seen, id LIMIT ?1")?;
            let rows = q.query_map([to_i64(over)], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in &ids {
            tx.execute("DELETE FROM torrents_fts WHERE rowid = ?1", [id])?;
            tx.execute("DELETE FROM torrents WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(ids.len() as u64)
    }

    /// The torrents whose name or file paths hold every word of `words`, best first: text
    /// relevance (bm25, the name weighing ten times a path), then peers seen, then the most
    /// recently seen.
    pub fn search(&self, words: &str, limit: usize) -> Result<Vec<Hit>, IndexError> {
        let query = fts_query(words).ok_or(IndexError::NoWords)?;
        let mut q = self.conn.prepare(
            "SELECT t.info_hash, t.name, t.size, t.file_count, t.peers, t.first_seen, t.last_seen,
                    bm25(torrents_fts, 10.0, 1.0) AS rank
             FROM torrents_fts JOIN torrents t ON t.id = torrents_fts.rowid
             WHERE torrents_fts MATCH ?1
             ORDER BY rank, t.peers DESC, t.last_seen DESC
             LIMIT ?2",
        )?;
        let rows = q.query_map(params![query, to_i64(limit as u64)], |r| {
            let h: Vec<u8> = r.get(0)?;
            Ok(Hit {
                info_hash: Id20::from_slice(&h).unwrap_or(Id20::ZERO),
                name: r.get(1)?,
                size: r.get::<_, i64>(2)?.max(0) as u64,
                files: r.get::<_, i64>(3)?.max(0) as u64,
                peers: r.get::<_, i64>(4)?.max(0) as u64,
                first_seen: r.get(5)?,
                last_seen: r.get(6)?,
                rank: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(i: u8, name: &str, peers: u64) -> Torrent {
        Torrent {
            info_hash: Id20([i; 20]),
            name: name.into(),
            size: 1000 * i as u64,
            files: vec![(format!("{name}/a.txt"), 10), ("b/c.bin".into(), 20)],
            peers,
        }
    }

    #[test]
    fn ranking_relevance_then_peers_then_recency() {
        let mut ix = Index::open_in_memory(IndexConfig::default()).unwrap();
        ix.insert(&t(1, "debian netinst iso", 3), 100).unwrap();
        ix.insert(&t(2, "debian netinst iso", 9), 100).unwrap();
        ix.insert(&t(3, "debian netinst iso", 9), 200).unwrap();
        ix.insert(&t(4, "arch linux", 50), 100).unwrap();
        let hits = ix.search("netinst debian", 10).unwrap();
        let order: Vec<u8> = hits.iter().map(|h| h.info_hash.0[0]).collect();
        assert_eq!(order, vec![3, 2, 1]);
        assert_eq!(hits[0].files, 2);
        assert_eq!(
            ix.search("c.bin", 10).unwrap().len(),
            4,
            "paths are indexed"
        );
        assert!(ix.search("nothing-like-this", 10).unwrap().is_empty());
        assert!(matches!(ix.search(" \" ", 10), Err(IndexError::NoWords)));
        // FTS5 syntax in the words is taken literally.
        assert!(ix.search("debian OR arch", 10).unwrap().is_empty());
        assert!(ix.search("NEAR(debian", 10).unwrap().is_empty());
    }

    #[test]
    fn updates_and_sightings() {
        let mut ix = Index::open_in_memory(IndexConfig::default()).unwrap();
        assert!(!ix.seen(&Id20([1; 20]), 5).unwrap());
        ix.insert(&t(1, "old name", 3), 100).unwrap();
        assert!(ix.seen(&Id20([1; 20]), 150).unwrap());
        ix.insert(&t(1, "new name", 1), 120).unwrap();
        assert_eq!(ix.len().unwrap(), 1);
        let h = &ix.search("new", 10).unwrap()[0];
        assert_eq!((h.peers, h.first_seen, h.last_seen), (3, 100, 150));
        assert!(ix.search("old", 10).unwrap().is_empty());
    }

    #[test]
    fn eviction_drops_the_least_seen() {
        let cfg = IndexConfig {
            max_torrents: 3,
            ..IndexConfig::default()
        };
        let mut ix = Index::open_in_memory(cfg).unwrap();
        for i in 1..=3 {
            ix.insert(&t(i, &format!("item{i}"), 1), i as i64).unwrap();
        }
        // 1 is seen again, so 2 is now the least seen.
        ix.seen(&Id20([1; 20]), 10).unwrap();
        ix.insert(&t(4, "item4", 1), 11).unwrap();
        assert_eq!(ix.len().unwrap(), 3);
        assert!(!ix.contains(&Id20([2; 20])).unwrap());
        assert!(ix.contains(&Id20([1; 20])).unwrap());
        assert!(ix.search("item2", 10).unwrap().is_empty());
        let files: i64 = ix
            .conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(files, 6, "files go with their torrent");
    }

    #[test]
    fn hostile_names_are_stored_safely() {
        let mut ix = Index::open_in_memory(IndexConfig::default()).unwrap();
        let long = format!("huge {}", "x".repeat(100 << 10));
        ix.insert(&t(1, &long, 1), 1).unwrap();
        ix.insert(&t(2, "evil\u{1b}[2J\r\nname\u{0}", 1), 1)
            .unwrap();
        let h = &ix.search("huge", 10).unwrap()[0];
        assert!(h.name.len() <= MAX_NAME);
        let h = &ix.search("evil", 10).unwrap()[0];
        assert_eq!(h.name, "evil [2J name");
        assert!(h.magnet().contains("&dn=evil"));
    }

    #[test]
    fn migrations_run_once_and_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            let mut ix = Index::open(&path, IndexConfig::default()).unwrap();
            ix.insert(&t(1, "kept", 1), 1).unwrap();
        }
        let ix = Index::open(&path, IndexConfig::default()).unwrap();
        assert_eq!(ix.len().unwrap(), 1);
        ix.conn
            .pragma_update(None, "user_version", schema::VERSION + 1)
            .unwrap();
        drop(ix);
        let e = Index::open(&path, IndexConfig::default()).err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
        // Not an SQLite file at all.
        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![7u8; 4096]).unwrap();
        assert!(Index::open(&junk, IndexConfig::default()).is_err());
    }
}
