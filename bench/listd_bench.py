"""What the Python benchmarks share: a free loopback port, and a `listd serve` on a
private data directory (self-managed PostgreSQL, or a database of the benchmark's own
on the server DATABASE_URL names) with a given SMTP relay, stopped on exit.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def build(release=True):
    """Builds listd and returns the path of its binary."""
    cmd = ["cargo", "build", "--quiet"] + (["--release"] if release else [])
    subprocess.run(cmd, cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release" if release else "debug", "listd")


class Server:
    """`listd serve` relaying to 127.0.0.1:relay_port; use it in a `with` block."""

    def __init__(self, binary, relay_port, serve_args=()):
        self.binary = binary
        self.data = tempfile.mkdtemp(prefix="listd-bench-", dir="/tmp")
        os.chmod(self.data, 0o755)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "LISTD_DATA_DIR": self.data,
            "LISTD_HTTP_ADDR": f"127.0.0.1:{self.port}",
            "LISTD_SMTP_ADDR": "off",
            "LISTD_PUBLIC_URL": self.base,
            "LISTD_RELAY_URL": f"smtp://127.0.0.1:{relay_port}",
            "LISTD_RATE_PER_IP": "0",
            "LISTD_LOG": "warn",
        })
        if self.env.get("DATABASE_URL"):
            db = f"listd_bench_{os.getpid()}"
            admin = re.sub(r"/[^/]*$", "/postgres", self.env["DATABASE_URL"])
            subprocess.run(["psql", admin, "-qc", f"create database {db}"], check=True)
            self.env["LISTD_DATABASE_URL"] = re.sub(r"/[^/]*$", f"/{db}", self.env["DATABASE_URL"])
        self.process = subprocess.Popen([binary, "serve", *serve_args], env=self.env)

    def __enter__(self):
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.base + "/readyz", timeout=1)
                return self
            except Exception:
                if time.time() > deadline:
                    self.__exit__()
                    sys.exit("listd did not become ready")
                time.sleep(0.1)

    def __exit__(self, *_):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)

    def cli(self, *args):
        """Runs a listd command against this server's database; its output is dropped."""
        subprocess.run([self.binary, *args], env=self.env, check=True, stdout=subprocess.DEVNULL)
