#!/usr/bin/env bash
# Issue 14, catch-up: a follower left behind while the leader took writes rejoins and is fed
# from the leader's engine log (docs/replication.md "Catch-up from the log") while flin-bench
# keeps loading the leader. Prints how far behind it was (entries, and the leader's data
# directory growth while it was away), how long it took to catch up, and the leader's SET
# latency (p50/p99) quiet (the follower down), while it was feeding the follower, and settled
# (all three up again, nothing behind).
#
#   benches/cluster-catchup.sh                 # BEHIND_SECS=20 LOAD_SECS=10 VALUE=100 KEYS=1000000
#   BEHIND_SECS=60 VALUE=1000 benches/cluster-catchup.sh
#   KEYS=100000 RETAIN=100000 SEGMENT_BYTES=16777216 COMPACTION_MS=100 benches/cluster-catchup.sh
#       # overwrites, a short retention and eager compaction: the leader's log no longer holds
#       # what the follower missed, so it is caught up by a snapshot (the leader's and the
#       # follower's snapshot counters from CLUSTER INFO are printed at the end)
#
#   VALUE=1000 BEHIND_SECS=5 LOAD_SECS=4 benches/cluster-catchup.sh
#       # about 0.8 GB behind a log that holds it all: more than --raft-retain-mb (256) and a
#       # quarter of the log, so a snapshot (decision 105); add RETAIN_MB=100000 to feed it
#       # from the log instead, as before that decision
#
# RETAIN, RETAIN_MB, HELD, SEGMENT_BYTES, COMPACTION_MS, SNAPSHOT_RATE_MB and CATCH_UP_RATE_MB,
# when set, are passed to every node as --raft-retain-entries, --raft-retain-mb,
# --raft-held-entries, --segment-bytes, --compaction-interval-ms, --snapshot-rate-mb and
# --catch-up-rate-mb (0: no limit).
# LOG_LEVEL (default warn) is every node's --log-level (info logs each snapshot's steps, and
# the last of them are printed at the end); KEEP=1 keeps the nodes' directories and logs.
#
# 127.0.0.1 only: client ports 7200-7202 (cluster ports 17200-17202), admin ports off. Every
# process it starts is stopped by its pid. Builds nothing: run
# `cargo build --release -p flin-server -p flin-benches --bins` first (CARGO_TARGET_DIR honoured).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BEHIND_SECS=${BEHIND_SECS:-20}
LOAD_SECS=${LOAD_SECS:-10}
VALUE=${VALUE:-100}
CLIENTS=${CLIENTS:-10}
KEYS=${KEYS:-1000000}
NODE_FLAGS=()
[ -n "${RETAIN:-}" ] && NODE_FLAGS+=(--raft-retain-entries "$RETAIN")
[ -n "${RETAIN_MB:-}" ] && NODE_FLAGS+=(--raft-retain-mb "$RETAIN_MB")
[ -n "${HELD:-}" ] && NODE_FLAGS+=(--raft-held-entries "$HELD")
[ -n "${SEGMENT_BYTES:-}" ] && NODE_FLAGS+=(--segment-bytes "$SEGMENT_BYTES")
[ -n "${COMPACTION_MS:-}" ] && NODE_FLAGS+=(--compaction-interval-ms "$COMPACTION_MS")
[ -n "${SNAPSHOT_RATE_MB:-}" ] && NODE_FLAGS+=(--snapshot-rate-mb "$SNAPSHOT_RATE_MB")
[ -n "${CATCH_UP_RATE_MB:-}" ] && NODE_FLAGS+=(--catch-up-rate-mb "$CATCH_UP_RATE_MB")
BIN=${CARGO_TARGET_DIR:-target}/release
PORTS=(7200 7201 7202)
MEMBERS="1=127.0.0.1:7200,2=127.0.0.1:7201,3=127.0.0.1:7202"
SCRATCH=$(mktemp -d)
NODE_PIDS=(0 0 0)
BENCH_PID=0

cleanup() {
    for pid in "${NODE_PIDS[@]}" "$BENCH_PID"; do
        [ "$pid" -gt 0 ] && kill "$pid" 2> /dev/null || true
    done
    wait 2> /dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $SCRATCH"; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

start_node() {
    local i=$1
    "$BIN/flin-server" --port "${PORTS[$i]}" --data "$SCRATCH/n$i" --node-id $((i + 1)) \
        --cluster "$MEMBERS" --fsync "${FSYNC:-always}" --admin-port 0 --log-level "${LOG_LEVEL:-warn}" \
        ${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"} >> "$SCRATCH/n$i.log" 2>&1 &
    NODE_PIDS[$i]=$!
}
bench() {
    "$BIN/flin-bench" -p "${PORTS[$LEADER]}" --protocol resp -t set -c "$CLIENTS" -d "$VALUE" \
        -r "$KEYS" -n 1000000000 --duration "$1" --json -q
}
# A data directory's size: compaction may remove a file while du walks it (du then fails).
dir_bytes() {
    { du -sb "$1" 2> /dev/null || true; } | cut -f1
}
latency() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
l = r["latency_us"]
print("%.0f SET/s, p50 %.0f us, p99 %.0f us" % (r["requests_per_sec"], l["p50"], l["p99"]))' "$1"
}

need_redis_cli
refuse_busy_ports cluster-catchup.sh "${PORTS[@]}" $((PORTS[0] + 10000)) $((PORTS[1] + 10000)) $((PORTS[2] + 10000))
for i in 0 1 2; do start_node "$i"; done
LEADER=$(cluster_leader)
FOLLOWER=$(((LEADER + 1) % 3))
kill -9 "${NODE_PIDS[$FOLLOWER]}" && wait "${NODE_PIDS[$FOLLOWER]}" 2> /dev/null || true
NODE_PIDS[$FOLLOWER]=0
left_at=$(cluster_field "${PORTS[$LEADER]}" commit_index)
size_before=$(dir_bytes "$SCRATCH/n$LEADER")
echo "leader node $((LEADER + 1)); node $((FOLLOWER + 1)) stopped at commit $left_at"

# The follower falls behind: the leader takes pipelined SETs for BEHIND_SECS.
"$BIN/flin-bench" -p "${PORTS[$LEADER]}" --protocol resp -t set -c 50 -P 32 -d "$VALUE" \
    -r "$KEYS" -n 1000000000 --duration "$BEHIND_SECS" -q > /dev/null
target=$(cluster_field "${PORTS[$LEADER]}" commit_index)
size_after=$(dir_bytes "$SCRATCH/n$LEADER")
behind=$((target - left_at))
grown=$((size_after - size_before))
echo "behind: $behind entries (about $((behind * VALUE / 1048576)) MiB of values written); the leader's data directory grew $((grown / 1048576)) MiB"

bench "$LOAD_SECS" > "$SCRATCH/quiet.json"
echo "quiet (one follower up): $(latency "$SCRATCH/quiet.json")"

# The follower comes back while the same load runs; time until it has what it missed.
bench "$LOAD_SECS" > "$SCRATCH/during.json" &
BENCH_PID=$!
start=$(date +%s.%N)
start_node "$FOLLOWER"
took=$(wait_commit "${PORTS[$FOLLOWER]}" "$target" "$start")
wait "$BENCH_PID"
BENCH_PID=0
echo "caught up $behind entries in $took s (from process start: includes the follower's open)" \
    "= $(python3 -c "import sys; print('%.0f entries/s, %.1f MiB/s of leader log' % (int(sys.argv[1]) / float(sys.argv[3]), int(sys.argv[2]) / 1048576 / float(sys.argv[3])))" "$behind" "$grown" "$took")"
echo "while feeding (for the first $LOAD_SECS s after the restart): $(latency "$SCRATCH/during.json")"
# The same load once all three are up and level: the quiet value of a healthy cluster (on
# one host the third node's work competes for the same cores even when nothing is behind).
bench "$LOAD_SECS" > "$SCRATCH/settled.json"
echo "settled (all three up, caught up): $(latency "$SCRATCH/settled.json")"
echo "snapshots: leader sent $(cluster_field "${PORTS[$LEADER]}" snapshots_sent) ($(cluster_field "${PORTS[$LEADER]}" snapshot_bytes_sent) bytes);" \
    "the follower installed one through index $(cluster_field "${PORTS[$FOLLOWER]}" snapshot_installed_index) (0: none, fed from the log)"
grep -i snapshot "$SCRATCH/n$FOLLOWER.log" "$SCRATCH/n$LEADER.log" | tail -12 || true
