#!/usr/bin/python3
"""A libtorrent peer for shoal's interop tests and benchmarks.

Usage: lt_peer.py MODE TORRENT SAVE_PATH LISTEN_IP [options]
  MODE: seed (data is complete: seed_mode skips the check) or download
  --peer IP:PORT        connect to this peer (repeatable)
  --upload-limit BPS    per-torrent upload cap
  --timeout SECONDS     give up after this long (default 120)
  --stay                keep running after completing (until killed or timeout)
  --encryption POLICY   disabled (default: plaintext only), enabled (libtorrent's defaults: MSE
                        and plaintext both ways, prefer_rc4 off) or forced (pe_forced both
                        ways, allowed_enc_level rc4)
  --transport T         tcp (default: TCP only), utp (uTP only: no TCP in or out) or both
                        (libtorrent's own default)
Prints JSON lines on stdout: {"event":"listening","addr":...}, progress once a second,
{"event":"complete",...} and, on timeout, {"event":"timeout",...}. Loopback only: DHT, LSD,
UPnP, NAT-PMP and uTP (unless --transport utp) are off.
"""
import argparse
import json
import sys
import time

import libtorrent as lt

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["seed", "download"])
ap.add_argument("torrent")
ap.add_argument("save_path")
ap.add_argument("listen_ip")
ap.add_argument("--peer", action="append", default=[])
ap.add_argument("--upload-limit", type=int, default=0)
ap.add_argument("--timeout", type=float, default=120)
ap.add_argument("--stay", action="store_true")
ap.add_argument("--dht-bootstrap", action="append", default=[],
                help="enable the DHT, joining through this loopback node (repeatable)")
ap.add_argument("--magnet", action="store_true",
                help="add TORRENT's info-hash as a magnet link (metadata from peers)")
ap.add_argument("--transport", choices=["tcp", "utp", "both"], default="tcp")
ap.add_argument("--encryption", choices=["disabled", "enabled", "forced"], default="disabled")
args = ap.parse_args()

for node in args.dht_bootstrap:
    assert node.startswith("127."), "loopback only"
# An IPv6 address is written in brackets before a port.
host = f"[{args.listen_ip}]" if ":" in args.listen_ip else args.listen_ip
session = lt.session({
    "listen_interfaces": f"{host}:0",
    "outgoing_interfaces": args.listen_ip,
    "enable_dht": bool(args.dht_bootstrap),
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_announce_interval": 5,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "dht_bootstrap_nodes": ",".join(args.dht_bootstrap),
    "enable_outgoing_utp": args.transport in ("utp", "both"),
    "enable_incoming_utp": args.transport in ("utp", "both"),
    "enable_outgoing_tcp": args.transport in ("tcp", "both"),
    "enable_incoming_tcp": args.transport in ("tcp", "both"),
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
    "out_enc_policy": getattr(lt.enc_policy, args.encryption),
    "in_enc_policy": getattr(lt.enc_policy, args.encryption),
    "allowed_enc_level": lt.enc_level.rc4 if args.encryption == "forced" else lt.enc_level.both,
    # libtorrent's default (false) for "enabled": as the receiver it then selects plaintext
    # after the MSE handshake when both are offered.
    "prefer_rc4": args.encryption == "forced",
    # Keep a connection to a peer that completed while we seed (libtorrent closes "redundant"
    # seed-to-seed connections once the peer's haves show it complete; shoal leechers tell seeds
    # of their pieces): tests read what a connection agreed after the transfer.
    "close_redundant_connections": False,
})
if args.magnet:
    params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + str(lt.torrent_info(args.torrent).info_hash()))
else:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
params.save_path = args.save_path
if args.mode == "seed":
    params.flags |= lt.torrent_flags.seed_mode
handle = session.add_torrent(params)
if args.upload_limit:
    handle.set_upload_limit(args.upload_limit)


def emit(obj):
    print(json.dumps(obj), flush=True)


emit({"event": "listening", "addr": f"{host}:{session.listen_port()}"})
for p in args.peer:
    ip, port = p.rsplit(":", 1)
    handle.connect_peer((ip.strip("[]"), int(port)))

start = time.time()
completed = False
last = 0
rc4_seen = False  # any connection ever seen RC4-encrypted (sampled every loop, not per second)
while time.time() - start < args.timeout:
    s = handle.status()
    now = time.time()
    if args.encryption != "disabled" and not rc4_seen:
        rc4_seen = any(p.flags & lt.peer_info.rc4_encrypted for p in handle.get_peer_info())
    if now - last >= 1:
        last = now
        peers = handle.get_peer_info()
        emit({"event": "progress", "downloaded": s.total_wanted_done, "total": s.total_wanted,
              "uploaded": s.all_time_upload, "peers": s.num_peers, "state": str(s.state),
              "rc4_seen": rc4_seen,
              "rc4_peers": sum(1 for p in peers if p.flags & lt.peer_info.rc4_encrypted),
              "plaintext_peers": sum(1 for p in peers if not p.flags & (
                  lt.peer_info.rc4_encrypted | lt.peer_info.plaintext_encrypted))})
        if args.dht_bootstrap:
            handle.force_dht_announce()
        # Re-connect the given peers now and then: a peer may not have been listening yet.
        if not s.is_seeding:
            for p in args.peer:
                ip, port = p.rsplit(":", 1)
                handle.connect_peer((ip.strip("[]"), int(port)))
    if s.is_seeding and not completed and args.mode == "download":
        completed = True
        emit({"event": "complete", "downloaded": s.total_wanted_done, "total": s.total_wanted,
              "seconds": now - start, "rc4_seen": rc4_seen})
        if not args.stay:
            sys.exit(0)
    time.sleep(0.05)
emit({"event": "timeout", "downloaded": handle.status().total_wanted_done})
sys.exit(0 if args.mode == "seed" or completed else 1)
