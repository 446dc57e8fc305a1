#!/usr/bin/env python3
"""Timing tell benchmark for the subscribe and unsubscribe forms.

The forms answer every address with the same page (no enumeration); this measures
whether they also answer in the same time. It starts listd on a private data
directory (self-managed PostgreSQL, or DATABASE_URL when set) with an in-process SMTP
sink as its relay, makes 200 members, then posts each form 200 times for members and
200 times for strangers, interleaved, over one keep-alive connection, each address
once (so per-address limits never decide), and prints the median answer time of each
group and how far apart they are.

Usage: bench/form-timing.py [--requests 200] [--debug]
Needs: cargo, PostgreSQL server binaries or DATABASE_URL.
"""

import argparse
import http.client
import socketserver
import statistics
import sys
import threading
import time

from listd_bench import Server, build


class SinkHandler(socketserver.StreamRequestHandler):
    """Accepts any mail and forgets it."""

    def handle(self):
        self.wfile.write(b"220 sink ESMTP\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line[:4].upper()
            if cmd == b"DATA":
                self.wfile.write(b"354 go\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.wfile.write(b"250 ok\r\n")
            elif cmd == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def timed_posts(conn, path, addresses):
    """Posts the form once per address; returns each answer's time in ms."""
    times = []
    for addr in addresses:
        body = f"email={addr}&website="
        start = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        r.read()
        times.append((time.perf_counter() - start) * 1000)
        if r.status != 200:
            sys.exit(f"{path} for {addr}: {r.status}")
    return times


def compare(conn, path, members, strangers):
    """Interleaves members and strangers so that drift affects both alike."""
    m, s = [], []
    for a, b in zip(members, strangers):
        m += timed_posts(conn, path, [a])
        s += timed_posts(conn, path, [b])
    mm, ms = statistics.median(m), statistics.median(s)
    gap = abs(mm - ms) / min(mm, ms) * 100
    verdict = "within 10 %" if gap <= 10 else "NOT within 10 %"
    print(f"{path.rsplit('/', 1)[1]:<11}  members: median {mm:.3f} ms   strangers: median {ms:.3f} ms   "
          f"difference {gap:.1f} % ({verdict})")
    return gap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--debug", action="store_true", help="use the debug build (faster to build)")
    args = ap.parse_args()
    profile = "debug" if args.debug else "release"
    binary = build(release=not args.debug)

    sink = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SinkHandler)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with Server(binary, sink.server_address[1]) as server:
        server.cli("lists", "create", "bench@lists.example.org", "--name", "Bench")
        n = args.requests
        members = [f"member{i}@example.net" for i in range(n)]
        server.cli("members", "add", "--quiet", "bench@lists.example.org", *members)
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        # warm up the connection, the pool and the caches
        timed_posts(conn, "/lists/bench.lists.example.org/subscribe",
                    [f"warm{i}@example.net" for i in range(20)])
        print(f"{n} requests per group, answer times as the client sees them ({profile} build):")
        gaps = [
            compare(conn, "/lists/bench.lists.example.org/subscribe",
                    members, [f"new{i}@example.net" for i in range(n)]),
            compare(conn, "/lists/bench.lists.example.org/unsubscribe",
                    members, [f"stranger{i}@example.net" for i in range(n)]),
        ]
        sys.exit(0 if max(gaps) <= 10 else 1)


if __name__ == "__main__":
    main()
