#!/usr/bin/env bash
# How many 4 KB posts per second listd accepts durably over SMTP.
#
# Starts a release build of listd (self-managed PostgreSQL in a temporary data
# directory, or LISTD_DATABASE_URL when set) and points Postfix's smtp-source at it:
# MESSAGES posts of 4 KB to a list address over SESSIONS parallel connections. Every
# 250 means the message is committed to PostgreSQL. Prints messages/s and checks that
# the database holds every one.
#
# Usage: bench/smtp-accept.sh [MESSAGES] [SESSIONS]     (defaults 20000 and 20)
# Needs: smtp-source (Debian package postfix; Postfix itself need not run).
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
sessions=${2:-20}
command -v smtp-source >/dev/null || { echo "smtp-source not found: apt-get install postfix" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/listd

data=$(mktemp -d /tmp/listd-bench-XXXXXX)
chmod 755 "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LISTD_DATA_DIR=$data LISTD_SMTP_ADDR=127.0.0.1:$port LISTD_HTTP_ADDR=127.0.0.1:$http LISTD_LOG=warn
export LISTD_RELAY_URL=file://$data/outbox
"$bin" serve --no-worker &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.2; done
"$bin" lists create bench@lists.example.org --name Bench >/dev/null

start=$(date +%s.%N)
smtp-source -s "$sessions" -l 4096 -m "$messages" -c -f poster@example.net -t bench@lists.example.org \
  "127.0.0.1:$port" >/dev/null
end=$(date +%s.%N)

db=${LISTD_DATABASE_URL:-postgres://postgres@localhost/listd?host=$data/postgres}
stored=$(psql "$db" -Atc "select count(*) from inbound" 2>/dev/null || echo "?")
python3 - "$start" "$end" "$messages" "$sessions" "$stored" <<'PY'
import sys
start, end, n, s, stored = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
print(f"{n} posts of 4 KB over {s} connections in {end-start:.2f} s: {n/(end-start):.0f} posts/s accepted durably")
print(f"rows in the inbound table: {stored}")
PY
