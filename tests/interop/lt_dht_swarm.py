#!/usr/bin/python3
"""A DHT of libtorrent nodes whose seeders announce many torrents, for shoal's search test.

Usage: lt_dht_swarm.py WORKDIR [--nodes N] [--seeders S] [--torrents T] [--sample-interval SECS]
                       [--timeout SECONDS]

Starts N DHT-only libtorrent sessions on 127.0.0.100, 127.0.0.101, ... (the first one on a free
port, the others bootstrapping from it) and S seeders on 127.0.0.20, 127.0.0.21, ... that seed T small torrents
between them (made under WORKDIR, v1 only, distinct names "<adjective> <noun> archive NN.dat"),
announcing them to the DHT every few seconds. Nodes answer BEP 51 sample_infohashes with the
given interval (libtorrent's default is 6 hours).

Prints JSON lines on stdout: {"event":"listening","addr":"127.0.0.100:PORT"} (the node to bootstrap
from), one {"event":"torrent","name":...,"info_hash":...,"seeder":...} per torrent, then
{"event":"ready"}. Runs until killed or SECONDS pass. Loopback only; settings follow
shared/notes/loopback-swarms.md (dht_restrict_* off, no LSD/UPnP/NAT-PMP/uTP).
"""
import argparse
import json
import os
import random
import time

import libtorrent as lt

ADJECTIVES = ["amber", "brisk", "cobalt", "dusky", "ember", "fabled", "gilded", "hollow",
              "ivory", "jagged"]
NOUNS = ["falcon", "harbor", "lantern", "meadow", "quarry"]

ap = argparse.ArgumentParser()
ap.add_argument("workdir")
ap.add_argument("--nodes", type=int, default=24)
ap.add_argument("--seeders", type=int, default=5)
ap.add_argument("--torrents", type=int, default=50)
ap.add_argument("--sample-interval", type=int, default=10)
ap.add_argument("--timeout", type=float, default=300)
args = ap.parse_args()
assert args.torrents <= len(ADJECTIVES) * len(NOUNS)


def out(**kv):
    print(json.dumps(kv), flush=True)


def settings(ip, bootstrap):
    return {
        "listen_interfaces": "%s:0" % ip,
        "outgoing_interfaces": ip,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": True,
        "dht_bootstrap_nodes": bootstrap,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_announce_interval": 5,
        "dht_sample_infohashes_interval": args.sample_interval,
        "alert_mask": 0,
        # libtorrent keeps only 5 seeds active (announcing) per session by default.
        "active_seeds": 1000,
        "active_limit": 1000,
        "active_dht_limit": 1000,
    }


# One address per node: libtorrent keeps one routing-table entry per IP even with the
# restrictions off, so nodes sharing 127.0.0.1 would hide each other.
first = lt.session(settings("127.0.0.100", ""))
boot = "127.0.0.100:%d" % first.listen_port()
sessions = [first]
time.sleep(1)  # a bootstrap sent before the first node listens is not retried for minutes
for k in range(1, args.nodes):
    sessions.append(lt.session(settings("127.0.0.%d" % (100 + k), boot)))
# Each node also learns of a few others directly, so the table fills without waiting.
addrs = [("127.0.0.%d" % (100 + k), s.listen_port()) for k, s in enumerate(sessions)]
for s in sessions:
    for a in random.Random(s.listen_port()).sample(addrs, min(4, len(addrs))):
        s.add_dht_node(a)
out(event="listening", addr=boot)

rng = random.Random(7)
seeders = []
for k in range(args.seeders):
    seeders.append(lt.session(settings("127.0.0.%d" % (20 + k), boot)))
    for a in rng.sample(addrs, min(4, len(addrs))):
        seeders[-1].add_dht_node(a)

handles = []
for i in range(args.torrents):
    name = "%s %s archive %02d.dat" % (ADJECTIVES[i % 10], NOUNS[i // 10 % 5], i)
    d = os.path.join(args.workdir, "seed%d" % (i % args.seeders))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(rng.getrandbits(8) for _ in range(16384 + 997 * i)))
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(d, name))
    ct = lt.create_torrent(fs, 16384, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, d)
    ti = lt.torrent_info(ct.generate())
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = d
    atp.flags |= lt.torrent_flags.seed_mode
    s = seeders[i % args.seeders]
    handles.append(s.add_torrent(atp))
    out(event="torrent", name=name, info_hash=str(ti.info_hashes().v1),
        seeder="127.0.0.%d:%d" % (20 + i % args.seeders, s.listen_port()))
out(event="ready")

deadline = time.time() + args.timeout
while time.time() < deadline:
    for h in handles:
        h.force_dht_announce()
    time.sleep(3)
