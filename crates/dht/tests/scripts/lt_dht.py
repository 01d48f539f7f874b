"""libtorrent DHT nodes for shoal's interop test (DHT only, loopback only).

Usage: lt_dht.py BOOTSTRAP PORTS ANNOUNCE_HASH SAVE_DIR LOOKUP_HASH SECONDS

Starts one libtorrent session per port in PORTS (comma-separated) on 127.0.0.1, bootstrapping
from BOOTSTRAP (comma-separated host:port, all on 127.0.0.0/8) and from each other. The first
session adds ANNOUNCE_HASH as a magnet torrent (no tracker, saved under SAVE_DIR), so it announces
itself (its listen port, the first of PORTS) to the DHT, forced every second. The Python binding
of libtorrent 2.0.8 cannot call `dht_announce` (its flags type is not exposed). the last one looks up LOOKUP_HASH
every second and prints "FOUND ip:port" for each peer. Prints "READY" once the sessions run and
exits after SECONDS. Settings follow shared/notes/loopback-swarms.md.
"""
import sys
import time

import libtorrent as lt

bootstrap, ports, ann_hash, save_dir, look_hash, seconds = sys.argv[1:7]
ports = [int(p) for p in ports.split(",")]
nodes = bootstrap.split(",") + ["127.0.0.1:%d" % p for p in ports]
for n in nodes:
    assert n.startswith("127."), n

sessions = []
for p in ports:
    s = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % p,
        "outgoing_interfaces": "127.0.0.1",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_dht": True,
        "dht_bootstrap_nodes": ",".join(nodes),
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_announce_interval": 5,
        "alert_mask": 0x7FFFFFFF,
    })
    sessions.append(s)
print("READY", flush=True)

atp = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + ann_hash)
atp.save_path = save_dir
handle = sessions[0].add_torrent(atp)
lookup = lt.sha1_hash(bytes.fromhex(look_hash))
found = set()
deadline = time.time() + float(seconds)
while time.time() < deadline:
    handle.force_dht_announce()
    sessions[-1].dht_get_peers(lookup)
    end = time.time() + 1.0
    while time.time() < end:
        for s in sessions:
            for a in s.pop_alerts():
                if isinstance(a, lt.dht_get_peers_reply_alert):
                    for peer in a.peers():
                        ep = "%s:%d" % (peer[0], peer[1])
                        if ep not in found:
                            found.add(ep)
                            print("FOUND", ep, flush=True)
        time.sleep(0.1)
