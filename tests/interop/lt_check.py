#!/usr/bin/python3
"""Load a .torrent in libtorrent and recheck data against it.

Usage: lt_check.py TORRENT SAVE_PATH
Prints one JSON object: the info-hash libtorrent computes, its view of the torrent, and how many
pieces its recheck of the data in SAVE_PATH finds valid. Talks to no network (DHT, LSD, UPnP off,
listening on loopback only).
"""
import json
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
ti = lt.torrent_info(torrent)
session = lt.session({
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "dht_bootstrap_nodes": "",
    "alert_mask": 0,
})
params = lt.add_torrent_params()
params.ti = ti
params.save_path = save_path
params.flags &= ~lt.torrent_flags.auto_managed
params.flags |= lt.torrent_flags.paused
handle = session.add_torrent(params)
handle.force_recheck()
handle.resume()
deadline = time.time() + 120
status = handle.status()
while time.time() < deadline:
    status = handle.status()
    checking = status.state in (
        lt.torrent_status.checking_files,
        lt.torrent_status.checking_resume_data,
    )
    if not checking and status.state != lt.torrent_status.states.checking_files and time.time() > 0:
        # the first status after add may still be "queued"; wait until a check has run
        if status.num_pieces > 0 or status.state in (
            lt.torrent_status.downloading,
            lt.torrent_status.seeding,
            lt.torrent_status.finished,
        ):
            break
    time.sleep(0.1)
files = ti.files()
print(json.dumps({
    "info_hash": str(ti.info_hash()),
    "name": ti.name(),
    "num_files": files.num_files(),
    "total_size": ti.total_size(),
    "piece_length": ti.piece_length(),
    "num_pieces": ti.num_pieces(),
    "pieces_valid": status.num_pieces,
    "paths": [files.file_path(i) for i in range(files.num_files())],
    "state": str(status.state),
}))
