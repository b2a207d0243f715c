#!/usr/bin/env bash
# A screenshot of the admin dashboard (GET /, issue 15) under load: docs/dashboard.png.
#
#   benches/dashboard-shot.sh                 # OUT=docs/dashboard.png PORT=7650 LOAD_SECONDS=30
#   PROFILE=debug benches/dashboard-shot.sh   # the debug build (quicker to build, slower to run)
#
# Builds flin-server and flin-bench (PROFILE, default release), starts the server on 127.0.0.1:$PORT with its
# admin port on $PORT+1 and a scratch data directory, gives each panel something to show
# (queues with messages ready, in flight and dead-lettered; topics with a lagging consumer
# group; collections with indexes), then runs four bounded flin-bench loads at once (key-value,
# queue, stream, documents; LOAD_SECONDS each) and, a third of the way through, opens the page in headless
# Chromium (Debian's chromium, installed if absent; redis-cli from redis-tools likewise) and
# saves a screenshot. Everything it starts is stopped by its pid.
#
# Chromium runs on virtual time (--virtual-time-budget): its timers jump ahead while the page
# waits for nothing, so the page's one-second polls come back to back. The page computes rates
# from the server's clock (process.uptime_ms), so they are right, but the charts span the real
# time the budget took, a few seconds, not two minutes.
set -euo pipefail

PORT=${PORT:-7650}
ADMIN_PORT=$((PORT + 1))
LOAD_SECONDS=${LOAD_SECONDS:-30}
OUT=${OUT:-docs/dashboard.png}
# Virtual milliseconds the page runs before the screenshot: about one poll per 1000.
BUDGET_MS=${BUDGET_MS:-120000}
PROFILE=${PROFILE:-release}

cd "$(dirname "$0")/.."
source benches/lib.sh
refuse_busy_ports dashboard-shot.sh "$PORT" "$ADMIN_PORT"
need=()
command -v chromium > /dev/null || need+=(chromium)
command -v redis-cli > /dev/null || need+=(redis-tools)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" > /dev/null
fi
if [[ "$PROFILE" == release ]]; then
    cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin flin-bench
    BIN=${CARGO_TARGET_DIR:-target}/release
else
    cargo build -q -p flin-server -p flin-benches --bin flin-server --bin flin-bench
    BIN=${CARGO_TARGET_DIR:-target}/debug
fi
SCRATCH=$(mktemp -d /tmp/flin-dashboard-shot.XXXXXX)
cleanup() {
    stop_started
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

"$BIN/flin-server" --bind 127.0.0.1 --port "$PORT" --admin-port "$ADMIN_PORT" \
    --data "$SCRATCH/data" --fsync everysec > "$SCRATCH/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$ADMIN_PORT/ready" > /dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$ADMIN_PORT/ready" > /dev/null || {
    cat "$SCRATCH/server.log" >&2
    exit 1
}

cli() { redis-cli -p "$PORT" "$@" > /dev/null; }

# Queues: one with a dead-letter queue whose messages expire into it, one with messages
# held in flight by a connection that stays open until the end.
cli QUEUE.DECLARE payments TTL 200 DLQ payments.dead
cli QUEUE.DECLARE payments.dead
cli QUEUE.DECLARE emails
for i in $(seq 40); do cli QUEUE.PUSH payments "payment $i"; done
for i in $(seq 300); do echo "QUEUE.PUSH emails mail-$i"; done | redis-cli -p "$PORT" > /dev/null
exec 5<> "/dev/tcp/127.0.0.1/$PORT"
printf '*4\r\n$9\r\nQUEUE.POP\r\n$6\r\nemails\r\n$5\r\nCOUNT\r\n$2\r\n25\r\n' >&5
sleep 0.5
cli QUEUE.POP payments COUNT 40 NOACK # the expired ones are dead-lettered on the way

# Streams: a topic with a group that has read nothing yet (its lag is every record).
cli STREAM.CREATE clicks PARTITIONS 4
cli STREAM.CREATE orders PARTITIONS 2
for i in $(seq 20); do
    redis-cli -p "$PORT" STREAM.MPUBLISH clicks VALUES $(seq -f "click-$i-%g" 50) > /dev/null
done
cli STREAM.MPUBLISH orders VALUES o1 o2 o3 o4 o5 o6 o7 o8
cli STREAM.JOIN clicks analytics worker-1 RESET EARLIEST
cli STREAM.JOIN orders billing worker-1 RESET EARLIEST

# Documents: a collection with two indexes.
for i in $(seq 200); do
    echo "DOC.INSERT users '{\"_id\":$i,\"city\":\"city-$((i % 7))\",\"age\":$((20 + i % 50))}'"
done | redis-cli -p "$PORT" > /dev/null
cli DOC.INDEX users city
cli DOC.INDEX users age

# The load, bounded: four generators at once for LOAD_SECONDS.
bench() { "$BIN/flin-bench" -p "$PORT" -q --duration "$LOAD_SECONDS" "$@" > /dev/null 2>&1 & PIDS+=($!); }
bench -c 16 -P 4 -r 100000 -t mixed:80
bench -c 4 -d 64 -t qpush
bench -c 4 -d 64 -t spub
bench -c 2 -t dinsert:4
sleep $((LOAD_SECONDS / 3))

mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$SCRATCH/chromium" --window-size=1400,1000 --hide-scrollbars \
    --virtual-time-budget="$BUDGET_MS" --screenshot="$OUT" \
    "http://127.0.0.1:$ADMIN_PORT/" 2> "$SCRATCH/chromium.log" || {
    cat "$SCRATCH/chromium.log" >&2
    exit 1
}
exec 5>&-
echo "dashboard-shot.sh: wrote $OUT" >&2
