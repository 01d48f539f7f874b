//! The part file: where bytes of skipped files go when a wanted piece also covers them.
//!
//! A piece that straddles a skipped file and a wanted file must be downloaded whole to be
//! verified, but the skipped file must never be created. Those bytes go to one hidden file beside
//! the download, `<save>/.<name>.shoal-parts`, at the same offset they have in the piece stream.
//! The file is sparse: its apparent size can reach the torrent's size, but only the straddling
//! bytes take disk space (at most two pieces per skipped file). This trades a compact index for a
//! format with no metadata to corrupt.

use std::path::{Path, PathBuf};

/// Path of the part file of torrent `name` saved in `save_path`.
pub fn part_file_path(save_path: &Path, name: &str) -> PathBuf {
    save_path.join(format!(".{name}.shoal-parts"))
}

/// Where a byte of the piece stream is kept in the part file.
pub(crate) fn part_offset(stream_offset: u64) -> u64 {
    stream_offset
}
