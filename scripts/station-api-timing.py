#!/usr/bin/env python3
"""Times the station API on a running engine, over RUNS stations added one after the
other: POST /api/stations until the first audio page of the new station's Ogg stream,
the stop answer, and POST .../start until audio again; each station is then removed.

Usage: scripts/station-api-timing.py BASE_URL ADMIN_TOKEN RUNS
(loopback engines only; the token from `sonicforge token --role admin`)."""
import json
import socket
import statistics
import sys
import time
import urllib.request

if len(sys.argv) != 4:
    sys.exit(__doc__)
base, token, runs = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
host, port = base.replace("http://", "").split(":")
if host not in ("127.0.0.1", "localhost"):
    sys.exit(f"{host}: loopback engines only")

def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return answer.status

def first_audio(station, deadline=60):
    """Seconds from now to the first Ogg page after OpusHead and OpusTags."""
    started = time.monotonic()
    while True:
        sock = socket.create_connection((host, int(port)))
        sock.sendall(f"GET /stations/{station}/stream.opus HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            if received.count(b"OggS") >= 3:
                return time.monotonic() - started, sock
        sock.close()
        if time.monotonic() - started > deadline:
            raise RuntimeError("no audio")
        time.sleep(0.02)

def wait_end(sock):
    """Seconds until the server ends the response: the last chunk of its chunked body
    (the connection itself may stay open for the next request) or a close."""
    started = time.monotonic()
    sock.settimeout(30)
    tail = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        tail = (tail + chunk)[-5:]
        if tail == b"0\r\n\r\n":
            break
    return time.monotonic() - started

adds, stops, starts = [], [], []
for run in range(runs):
    station = f"timing-{run}"
    body = {"id": station, "name": station, "renditions_kbps": [64, 128], "seed": run,
            "playlist": ["lofi chill 80 bpm A minor"]}
    t0 = time.monotonic()
    assert call("POST", "/api/stations", body) == 201
    waited, sock = first_audio(station)
    adds.append(time.monotonic() - t0)
    t0 = time.monotonic()
    assert call("POST", f"/api/stations/{station}/stop") == 200
    stop_answer = time.monotonic() - t0
    ended = wait_end(sock)
    stops.append((stop_answer, ended))
    t0 = time.monotonic()
    assert call("POST", f"/api/stations/{station}/start") == 200
    _, sock = first_audio(station)
    starts.append(time.monotonic() - t0)
    sock.close()
    assert call("DELETE", f"/api/stations/{station}") == 204
    print(f"run {run}: add->audio {adds[-1]*1000:.0f} ms, stop answered {stop_answer*1000:.0f} ms "
          f"(stream ended {ended*1000:.0f} ms after), start->audio {starts[-1]*1000:.0f} ms",
          flush=True)
med = lambda xs: statistics.median(xs) * 1000
print(f"median over {runs}: add->first audio {med(adds):.0f} ms (max {max(adds)*1000:.0f}), "
      f"stop answered {med([s[0] for s in stops]):.0f} ms "
      f"(stream ended {med([s[1] for s in stops]):.0f} ms after), "
      f"start->first audio {med(starts):.0f} ms (max {max(starts)*1000:.0f})")
