#!/usr/bin/env python3
# RSS per idle SSE consumer, as bench scenario 11 measures it: (VmRSS with N - VmRSS with 1) / N,
# for one worker binary, without the bench harness (no build of the bench needed):
#   python3 bench/rss-idle-consumers.py target/release/causeway 10000 18110
# (the worker listens on PORT, its admin on PORT+1; it is killed at the end).
import asyncio, os, signal, subprocess, sys, tempfile, time, urllib.request

YAML = """apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: feed}
spec:
  destinations:
  - name: later
    url: "http://127.0.0.1:9/never"
    delay: 24h
  streams:
  - {name: live, heartbeat: 60s, buffer: {maxEvents: 4096}}
"""

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def consumer(port, hold):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET /streams/default/feed/live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    got = b""
    while b"retry: " not in got:
        d = await r.read(2048)
        if not d:
            raise RuntimeError("closed")
        got += d
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    hold.append((r, w))

async def main(binary, n, port):
    d = tempfile.mkdtemp(prefix="sp-rss-")
    os.makedirs(f"{d}/m")
    open(f"{d}/m/feed.yaml", "w").write(YAML)
    admin = port + 1
    log = open(f"{d}/worker.log", "w")
    p = subprocess.Popen([binary, "up", "-f", f"{d}/m", "--data-dir", f"{d}/data",
                          "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                          "--max-connections", "30000", "--max-connections-per-peer", "30000"],
                         stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        hold = []
        await consumer(port, hold)
        await asyncio.sleep(1)
        before = rss_kib(p.pid)
        for i in range(0, n, 250):
            await asyncio.gather(*(consumer(port, hold) for _ in range(min(250, n - i))))
        await asyncio.sleep(1)
        after = rss_kib(p.pid)
        print(f"{binary}: {n} consumers, RSS {before} -> {after} KiB, {(after - before) / n:.2f} KiB per consumer", flush=True)
        for r, w in hold:
            w.close()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
