#!/usr/bin/python3
"""Time libtorrent's recheck (force_recheck) of data against a torrent.

Usage: lt_recheck.py TORRENT SAVE_PATH [HASHING_THREADS]
Adds the torrent (its first check runs and is waited out), then times force_recheck() until
libtorrent posts torrent_checked_alert. Prints one JSON object: seconds, cpu_seconds, pieces_valid,
pieces_total. No network: DHT, LSD, UPnP, NAT-PMP off, listening on loopback.
"""
import json
import resource
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
settings = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "dht_bootstrap_nodes": "",
    "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
}
if len(sys.argv) > 3:
    settings["hashing_threads"] = int(sys.argv[3])
session = lt.session(settings)
ti = lt.torrent_info(torrent)
params = lt.add_torrent_params()
params.ti = ti
params.save_path = save_path
params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
handle = session.add_torrent(params)


def wait_checked(deadline_s=600):
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        session.wait_for_alert(1000)
        for a in session.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                return True
    return False


if not wait_checked():
    sys.exit("libtorrent: first check did not finish")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)  # all of libtorrent's threads
    return r.ru_utime + r.ru_stime


cpu0 = cpu()
start = time.perf_counter()
handle.force_recheck()
if not wait_checked():
    sys.exit("libtorrent: recheck did not finish")
seconds = time.perf_counter() - start
cpu_seconds = cpu() - cpu0
status = handle.status()
print(json.dumps({
    "seconds": seconds,
    "cpu_seconds": cpu_seconds,
    "pieces_valid": status.num_pieces,
    "pieces_total": ti.num_pieces(),
    "hashing_threads": session.get_settings()["hashing_threads"],
}))
