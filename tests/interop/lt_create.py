#!/usr/bin/python3
"""Create a torrent of a file or folder with libtorrent's create_torrent.

Usage: lt_create.py PATH PIECE_SIZE v2|hybrid|v1 [OUT.torrent]
Prints one JSON object: the v1 and v2 info-hashes (null when absent), the number of files (pad
files included) and pieces, and, per file, its path and pieces root. Talks to no network.
"""
import json
import os
import sys

import libtorrent as lt

path, piece_size, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
flags = {"v2": lt.create_torrent.v2_only, "v1": lt.create_torrent.v1_only, "hybrid": 0}[kind]
fs = lt.file_storage()
lt.add_files(fs, path)
ct = lt.create_torrent(fs, piece_size, flags)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
entry = ct.generate()
data = lt.bencode(entry)
if len(sys.argv) > 4:
    with open(sys.argv[4], "wb") as f:
        f.write(data)
ti = lt.torrent_info(lt.bdecode(data))
hashes = ti.info_hashes()
files = ti.files()
print(json.dumps({
    "info_hash_v1": str(hashes.v1) if hashes.has_v1() else None,
    "info_hash_v2": str(hashes.v2) if hashes.has_v2() else None,
    "num_files": files.num_files(),
    "num_pieces": ti.num_pieces(),
    "total_size": ti.total_size(),
    "files": [
        {"path": files.file_path(i), "root": str(files.root(i)) if hashes.has_v2() else None}
        for i in range(files.num_files())
    ],
}))
