//! The running client: a session that listens for peers, one actor per torrent that coordinates
//! the picker, choker and storage, and one task pair per peer connection.

pub mod peer_book;
pub mod rate_limit;
