//! What "the save path" means: the folder that holds the torrent's top-level file or folder
//! (as libtorrent's save path). Users often give the file or folder itself; accept that too.

use std::path::{Path, PathBuf};

/// Resolve what the user gave into the save folder for torrent `name`:
/// - if `given/name` exists, `given` is the save folder;
/// - else if `given`'s own last component is `name`, its parent is (the user pointed at the
///   data itself);
/// - else `given` (a fresh download will create `given/name`).
pub fn resolve_save_path(given: &Path, name: &str) -> PathBuf {
    if given.join(name).exists() {
        return given.to_path_buf();
    }
    if given.file_name().is_some_and(|n| n == name) {
        return match given.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
    }
    given.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_or_data_itself() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("movie");
        std::fs::create_dir(&data).unwrap();
        assert_eq!(resolve_save_path(dir.path(), "movie"), dir.path());
        assert_eq!(resolve_save_path(&data, "movie"), dir.path());
        let fresh = dir.path().join("downloads");
        assert_eq!(resolve_save_path(&fresh, "movie"), fresh);
        assert_eq!(
            resolve_save_path(Path::new("movie"), "movie"),
            Path::new(".")
        );
        // A folder inside the data that happens to share the name wins: given/name exists.
        std::fs::create_dir(data.join("movie")).unwrap();
        assert_eq!(resolve_save_path(&data, "movie"), data);
    }
}
