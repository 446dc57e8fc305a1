#!/usr/bin/env python3
"""Web subscription benchmark.

Starts a release build of listd on a private data directory (self-managed PostgreSQL,
or DATABASE_URL when set) with an in-process SMTP sink as its relay, then measures:

1. confirmation latency: 100 sequential subscribe POSTs, each timed from the request
   until the sink has accepted the confirmation mail (median, p90, max);
2. throughput: `wrk` posting subscribe requests for distinct addresses (requests/s,
   median and p99 latency), with the per-IP limit off (LISTD_RATE_PER_IP=0).

Usage: bench/subscribe.py [--duration 20] [--connections 32]
Needs: cargo, wrk (Debian package `wrk`), PostgreSQL server binaries or DATABASE_URL.
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from listd_bench import Server, build


class Sink:
    """A minimal SMTP server that records when each recipient's message arrived."""

    def __init__(self):
        self.arrivals = {}
        self.count = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _session(self, reader, writer):
        writer.write(b"220 sink ESMTP\r\n")
        rcpts = []
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = line[:4].upper()
            if cmd == b"EHLO":
                writer.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif cmd == b"RCPT":
                rcpts.append(line[8:].strip().strip(b"<>").decode().lower())
                writer.write(b"250 ok\r\n")
            elif cmd == b"DATA":
                writer.write(b"354 go\r\n")
                while (await reader.readline()) != b".\r\n":
                    pass
                now = time.monotonic()
                with self.lock:
                    for r in rcpts:
                        self.arrivals[r] = now
                    self.count += 1
                rcpts = []
                writer.write(b"250 ok\r\n")
            elif cmd == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-worker", action="store_true",
                    help="measure the HTTP side alone (confirmations stay queued)")
    args = ap.parse_args()

    binary = build()
    sink = Sink()
    serve_args = ["--no-worker"] if args.no_worker else []
    with Server(binary, sink.port, serve_args) as server:
        server.cli("lists", "create", "bench@lists.example.org", "--name", "Bench")
        data = server.data
        url = server.base + "/lists/bench.lists.example.org/subscribe"

        # 1. confirmation latency
        latencies = []
        for i in range(0 if args.no_worker else 100):
            addr = f"latency{i}@example.net"
            body = f"email={addr}".encode()
            start = time.monotonic()
            urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10).read()
            while True:
                with sink.lock:
                    got = sink.arrivals.get(addr)
                if got is not None:
                    latencies.append((got - start) * 1000)
                    break
                if time.monotonic() - start > 10:
                    sys.exit(f"no confirmation for {addr} within 10 s")
                time.sleep(0.0005)
        latencies.sort()
        if latencies:
            print(f"confirmation latency, POST to relay (100 requests): median {statistics.median(latencies):.1f} ms, "
                  f"p90 {latencies[89]:.1f} ms, max {latencies[-1]:.1f} ms")

        # 2. throughput with wrk
        lua = os.path.join(data, "subscribe.lua")
        with open(lua, "w") as f:
            f.write("""
-- every request a new address: per-address limits must not turn the run into a test
-- of lock waits. `tid` is set per thread by setup(); a local here would shadow it.
local threads = 0
setup = function(thread) thread:set("tid", threads); threads = threads + 1 end
local counter = 0
request = function()
  counter = counter + 1
  local body = "email=wrk" .. tid .. "-" .. counter .. "@example.net&name=Load"
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
""")
        before = sink.count
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
                              "-s", lua, url], capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = re.search(r"50%\s+(\S+)", out).group(1)
        p99 = re.search(r"99%\s+(\S+)", out).group(1)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        print(f"subscribe throughput ({args.connections} connections, {args.duration} s): {rps:.0f} requests/s, "
              f"median {p50}, p99 {p99}, non-2xx {non2xx.group(1) if non2xx else 0}")
        time.sleep(2)
        print(f"confirmations accepted by the relay during and just after the run: {sink.count - before}")


if __name__ == "__main__":
    main()
