#!/usr/bin/python3
"""A DHT of libtorrent nodes on [::1] only (BEP 32), one of which seeds a torrent.

Usage: lt_dht6.py TORRENT DATA_DIR [--nodes N] [--timeout SECONDS]

Starts N DHT-only libtorrent sessions listening on [::1] (the first on a free port, the others
bootstrapping from it; each also learns of a few others directly), then a seeder on [::1] that
seeds TORRENT from DATA_DIR (seed_mode) and announces it to the IPv6 DHT every few seconds.

Prints JSON lines on stdout: {"event":"listening","addr":"[::1]:PORT"} (the node to bootstrap
from), {"event":"seeding","addr":"[::1]:PORT"}, then {"event":"progress",...} once a second with
the seeder's upload. Runs until killed or SECONDS pass. Loopback only: no IPv4 socket, no LSD,
UPnP, NAT-PMP or uTP; settings follow shared/notes/loopback-swarms.md (dht_restrict_* off,
which libtorrent needs to keep several nodes of one address).
"""
import argparse
import json
import random
import time

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("torrent")
ap.add_argument("data_dir")
ap.add_argument("--nodes", type=int, default=6)
ap.add_argument("--timeout", type=float, default=120)
args = ap.parse_args()


def out(**kv):
    print(json.dumps(kv), flush=True)


def settings():
    return {
        "listen_interfaces": "[::1]:0",
        "outgoing_interfaces": "::1",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": True,
        # Never the public routers: the nodes are added by hand below.
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_announce_interval": 5,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    }


nodes = [lt.session(settings())]
time.sleep(1)  # a bootstrap sent before the first node listens is not retried for minutes
first = ("::1", nodes[0].listen_port())
for _ in range(1, args.nodes):
    s = lt.session(settings())
    s.add_dht_node(first)
    nodes.append(s)
addrs = [("::1", s.listen_port()) for s in nodes]
rng = random.Random(6)
for s in nodes:
    for a in rng.sample(addrs, min(3, len(addrs))):
        s.add_dht_node(a)
out(event="listening", addr="[::1]:%d" % first[1])

seeder = lt.session(settings())
for a in rng.sample(addrs, min(3, len(addrs))):
    seeder.add_dht_node(a)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(args.torrent)
params.save_path = args.data_dir
params.flags |= lt.torrent_flags.seed_mode
handle = seeder.add_torrent(params)
out(event="seeding", addr="[::1]:%d" % seeder.listen_port())

deadline = time.time() + args.timeout
while time.time() < deadline:
    handle.force_dht_announce()
    s = handle.status()
    out(event="progress", uploaded=s.all_time_upload, peers=s.num_peers)
    time.sleep(1)
