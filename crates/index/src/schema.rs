//! The schema, as numbered migrations. SQLite's `user_version` holds how many have run; an
//! index written by a newer shoal (a higher number than we know) is refused, never altered.

use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: torrents, their files, and the full-text index over name and paths.
    "CREATE TABLE torrents (
        id INTEGER PRIMARY KEY,
        info_hash BLOB NOT NULL UNIQUE,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        file_count INTEGER NOT NULL,
        peers INTEGER NOT NULL,
        seen_count INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE files (
        torrent_id INTEGER NOT NULL REFERENCES torrents(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE INDEX files_by_torrent ON files(torrent_id);
    CREATE INDEX torrents_by_use ON torrents(seen_count, last_seen);
    CREATE VIRTUAL TABLE torrents_fts USING fts5(name, paths, tokenize = 'unicode61 remove_diacritics 2');",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the schema cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file was written by a newer version of shoal.
    #[error("the index has schema version {found}, newer than this shoal's {VERSION}; use a newer shoal or another --index file")]
    TooNew {
        /// Its version.
        found: i64,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Runs the migrations `conn` has not had yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(SchemaError::TooNew { found });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
