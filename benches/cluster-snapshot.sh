#!/usr/bin/env bash
# Issue 14, catch-up by snapshot: a follower stopped while the leader takes overwrites (which
# compaction removes from its log) and then UNIQUE_MB of new keys comes back, is shipped a
# snapshot of the leader's engine files (docs/replication.md "Snapshots in the server") and
# re-executes itself to open it. Prints the snapshot's size, how long the transfer took (from
# the leader's "shipping" line to the follower's "staged and checked" line) and its rate, and
# how long from the follower's start to its commit index reaching the leader's.
#
#   benches/cluster-snapshot.sh                  # UNIQUE_MB=200 RATE_MB=0 (no limit)
#   RATE_MB=50 benches/cluster-snapshot.sh       # with --snapshot-rate-mb 50
#   LATENCY_SECS=5 RATE_MB=40 benches/cluster-snapshot.sh
#       also the leader's SET latency (flin-bench -c 10 -d 100, not pipelined) for
#       LATENCY_SECS quiet, then for LATENCY_SECS from the follower's restart (while shipping)
#
# 127.0.0.1 only: client ports 7500-7502 (cluster ports 17500-17502), admin ports off. Every
# process it starts is stopped by its pid. Builds nothing: run
# `cargo build --release -p flin-server -p flin-benches --bins` first (CARGO_TARGET_DIR honoured).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

UNIQUE_MB=${UNIQUE_MB:-200}
RATE_MB=${RATE_MB:-0}
LATENCY_SECS=${LATENCY_SECS:-0}
VALUE=1000
BIN=${CARGO_TARGET_DIR:-target}/release
PORTS=(7500 7501 7502)
MEMBERS="1=127.0.0.1:7500,2=127.0.0.1:7501,3=127.0.0.1:7502"
SCRATCH=$(mktemp -d)
NODE_PIDS=(0 0 0)

cleanup() {
    for pid in "${NODE_PIDS[@]}"; do
        [ "$pid" -gt 0 ] && kill "$pid" 2> /dev/null || true
    done
    wait 2> /dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

start_node() {
    local i=$1
    "$BIN/flin-server" --port "${PORTS[$i]}" --data "$SCRATCH/n$i" --node-id $((i + 1)) \
        --cluster "$MEMBERS" --admin-port 0 --raft-retain-entries 1000 \
        --snapshot-rate-mb "$RATE_MB" --compaction-interval-ms 100 \
        >> "$SCRATCH/n$i.out" 2>> "$SCRATCH/n$i.log" &
    NODE_PIDS[$i]=$!
}
latency() { # seconds; prints SET/s, p50, p99
    "$BIN/flin-bench" -p "${PORTS[$LEADER]}" --protocol resp -t set -c 10 -d 100 \
        -r 1000000 -n 1000000000 --duration "$1" --json -q | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"][0]
l = r["latency_us"]
print("%.0f SET/s, p50 %.0f us, p99 %.0f us" % (r["requests_per_sec"], l["p50"], l["p99"]))'
}
load() { # keyspace, requests
    "$BIN/flin-bench" -p "${PORTS[$LEADER]}" --protocol resp -t set -c 20 -P 16 -d "$VALUE" \
        -r "$1" -n "$2" -q > /dev/null
}

need_redis_cli
refuse_busy_ports cluster-snapshot.sh "${PORTS[@]}" $((PORTS[0] + 10000)) $((PORTS[1] + 10000)) $((PORTS[2] + 10000))
for i in 0 1 2; do start_node "$i"; done
LEADER=$(cluster_leader)
FOLLOWER=$(((LEADER + 1) % 3))
kill -9 "${NODE_PIDS[$FOLLOWER]}" && wait "${NODE_PIDS[$FOLLOWER]}" 2> /dev/null || true
NODE_PIDS[$FOLLOWER]=0
echo "leader node $((LEADER + 1)); node $((FOLLOWER + 1)) stopped"
load 100 50000                                   # 50 MB of overwrites of 100 keys: compacted away
load 1000000000 $((UNIQUE_MB * 1000))            # UNIQUE_MB of (nearly) unique keys
sleep 3                                          # a compaction round or more
commit=$(cluster_field "${PORTS[$LEADER]}" commit_index)
echo "leader commit $commit, data directory $(du -sm "$SCRATCH/n$LEADER" | cut -f1) MiB"
if [ "$LATENCY_SECS" -gt 0 ]; then
    echo "leader SETs, quiet: $(latency "$LATENCY_SECS")"
    commit=$(cluster_field "${PORTS[$LEADER]}" commit_index)
fi
started=$(date +%s.%N)
start_node "$FOLLOWER"
if [ "$LATENCY_SECS" -gt 0 ]; then
    echo "leader SETs, shipping: $(latency "$LATENCY_SECS")"
fi
for _ in $(seq 1200); do
    got=$(cluster_field "${PORTS[$FOLLOWER]}" commit_index)
    [ -n "$got" ] && [ "$got" -ge "$commit" ] && break
    sleep 0.1
done
caught_up=$(date +%s.%N)
echo "follower caught up $(python3 -c "print('%.1f' % ($caught_up - $started))") s after its start; snapshot_installed_index $(cluster_field "${PORTS[$FOLLOWER]}" snapshot_installed_index)"
python3 - "$SCRATCH/n$LEADER.log" "$SCRATCH/n$FOLLOWER.log" << 'EOF'
import re, sys
from datetime import datetime
def at(line):
    return datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
leader = open(sys.argv[1]).read().splitlines()
follower = open(sys.argv[2]).read().splitlines()
ship = [l for l in leader if "shipping the snapshot through" in l][-1]
staged = [l for l in follower if "staged and checked" in l][-1]
opened = [l for l in follower if "opened the snapshot" in l][-1]
size = int(re.search(r"(\d+) bytes[;)]", ship).group(1))
secs = at(staged) - at(ship)
print("snapshot %.1f MB (%s files); transfer and check %.2f s = %.0f MB/s; re-exec and swap %.2f s"
      % (size / 1e6, re.search(r"(\d+) files", ship).group(1), secs, size / 1e6 / secs,
         at(opened) - at(staged)))
EOF
