#!/usr/bin/env python3
"""Verifies every DKIM-Signature of the message on stdin with dkimpy.

The DNS answers are the records `listd dkim generate` printed, passed as arguments
(`NAME. IN TXT "..." "..."`), so no DNS server is asked. Prints one line per
signature (`ok d= s=` or `fail d= s=`); exits 0 when there is at least one signature
and all verify, 1 when one fails, 3 when there is none.
"""

import re
import sys

import dkim

records = {}
for line in sys.argv[1:]:
    name, _, rest = line.partition(" IN TXT ")
    records[name.strip().lower().rstrip(".")] = "".join(re.findall(r'"([^"]*)"', rest)).encode()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip("."))


message = sys.stdin.buffer.read()
d = dkim.DKIM(message)
count = len([h for h in d.headers if h[0].lower() == b"dkim-signature"])
if count == 0:
    print("no signature")
    sys.exit(3)
failed = False
for i in range(count):
    ok = d.verify(idx=i, dnsfunc=dnsfunc)
    sig = dict(d.signature_fields) if d.signature_fields else {}
    tags = f"d={sig.get(b'd', b'?').decode()} s={sig.get(b's', b'?').decode()} a={sig.get(b'a', b'?').decode()}"
    print(("ok " if ok else "fail ") + tags)
    failed |= not ok
sys.exit(1 if failed else 0)
