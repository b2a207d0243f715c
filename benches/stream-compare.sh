#!/usr/bin/env bash
# Flin's streams side by side with Redis streams and NATS JetStream on this machine (issue 12;
# the figures are in docs/benchmarks.md, "Streams").
#
#   benches/stream-compare.sh            # ROUNDS=2 MESSAGES=400000 REDIS_REQUESTS=1000000
#
# - Redis (AOF everysec) against Flin --fsync everysec:
#   * redis-benchmark -P 16 -c 50 XADD s '*' f <100 B> against the same client sending
#     STREAM.PUBLISH t <100 B> (commands for commands), with each server's CPU per command;
#   * stream-bench (one client for both): pipelined XADD vs STREAM.PUBLISH, and a group
#     consumer reading a filled stream: XREADGROUP COUNT 100 + XACK of the ids vs
#     STREAM.CONSUME COUNT 100 + STREAM.COMMIT; and publish-to-receive latency at RATE/s.
# - NATS JetStream (Debian's nats-server -js, file storage, a private store) against Flin:
#   acked async publish (a reply subject per message, WINDOW in flight per connection) and a
#   durable pull consumer with explicit acks (fetch 100, ack each).
# - Flin's batched producer: flin-bench smpub:1000 over the binary protocol (the 1,000,000
#   records/s bar).
# Every server is started here on a scratch directory, 127.0.0.1 only, and stopped by its pid.
set -euo pipefail

ROUNDS=${ROUNDS:-2}
MESSAGES=${MESSAGES:-400000}
CONSUME_MESSAGES=${CONSUME_MESSAGES:-200000}
REDIS_REQUESTS=${REDIS_REQUESTS:-1000000}
RATE=${RATE:-10000}
LATENCY_MESSAGES=${LATENCY_MESSAGES:-20000}
WINDOW=${WINDOW:-16}

cd "$(dirname "$0")/.."
source benches/lib.sh
refuse_busy_ports stream-compare.sh 7410 7411 4233
need=()
command -v redis-server > /dev/null || need+=(redis-server)
command -v redis-benchmark > /dev/null || need+=(redis-tools)
command -v nats-server > /dev/null || need+=(nats-server)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" > /dev/null
fi
cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin stream-bench --bin flin-bench
BIN=target/release
SCRATCH=$(mktemp -d /tmp/flin-stream-compare.XXXXXX)
cleanup() {
    stop_started
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
VALUE=$(head -c 100 /dev/zero | tr '\0' 'x')

# Fresh servers for each round, so no run reads another's data.
start_servers() {
    rm -rf "$SCRATCH"/{flin,redis,nats}
    mkdir -p "$SCRATCH"/{flin,redis,nats}
    "$BIN/flin-server" --bind 127.0.0.1 --port 7410 --data "$SCRATCH/flin" --fsync everysec \
        > "$SCRATCH/flin.log" 2>&1 &
    FLIN=$!
    redis-server --bind 127.0.0.1 --port 7411 --save '' --appendonly yes --appendfsync everysec \
        --dir "$SCRATCH/redis" > "$SCRATCH/redis.log" 2>&1 &
    REDIS=$!
    nats-server -a 127.0.0.1 -p 4233 -js -sd "$SCRATCH/nats" > "$SCRATCH/nats.log" 2>&1 &
    NATS=$!
    PIDS+=("$FLIN" "$REDIS" "$NATS")
    wait_port 7410 && wait_port 7411 && wait_port 4233
    sleep 1
}
stop_servers() {
    kill "$FLIN" "$REDIS" "$NATS" 2> /dev/null || true
    wait "$FLIN" "$REDIS" "$NATS" 2> /dev/null || true
}

# redis-benchmark with the server's CPU per command.
rb() {
    local pid=$1 port=$2
    shift 2
    local before after
    before=$(cpu_ticks "$pid")
    local line
    line=$(redis-benchmark -h 127.0.0.1 -p "$port" -P 16 -c 50 -n "$REDIS_REQUESTS" -q "$@" 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1 | sed 's/x\{20,\}/<100 B>/')
    after=$(cpu_ticks "$pid")
    echo "  $line  server CPU $(echo "scale=3; ($after - $before) * 1000000 / $(getconf CLK_TCK) / $REDIS_REQUESTS" | bc) us/cmd"
}

echo "stream-compare: $(nproc) cores, $(uptime | sed 's/.*load/load/'), $(date -u +%FT%TZ)"
for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    start_servers
    redis-cli -p 7410 stream.create t PARTITIONS 1 > /dev/null
    echo "redis-benchmark -P 16 -c 50 -n $REDIS_REQUESTS, 100 B:"
    rb "$REDIS" 7411 xadd s '*' f "$VALUE"
    rb "$FLIN" 7410 stream.publish t "$VALUE"
    echo "stream-bench publish (4 connections, window $WINDOW, $MESSAGES messages):"
    for target in redis:7411:$REDIS flin:7410:$FLIN nats:4233:$NATS; do
        IFS=: read -r name port pid <<< "$target"
        "$BIN/stream-bench" --target "$name" --port "$port" --workload publish \
            --messages "$MESSAGES" --window "$WINDOW" --server-pid "$pid" | sed 's/^/  /'
    done
    echo "stream-bench consume (one group consumer, batches of 100, $CONSUME_MESSAGES filled first):"
    for target in redis:7411:$REDIS flin:7410:$FLIN nats:4233:$NATS; do
        IFS=: read -r name port pid <<< "$target"
        "$BIN/stream-bench" --target "$name" --port "$port" --workload consume \
            --messages "$CONSUME_MESSAGES" --batch 100 --server-pid "$pid" | sed 's/^/  /'
    done
    echo "stream-bench latency (one producer at $RATE/s, one blocking group consumer):"
    for target in redis:7411:$REDIS flin:7410:$FLIN; do
        IFS=: read -r name port pid <<< "$target"
        "$BIN/stream-bench" --target "$name" --port "$port" --workload latency \
            --messages "$LATENCY_MESSAGES" --rate "$RATE" | sed 's/^/  /'
    done
    echo "flin-bench smpub:1000 (binary STREAM.MPUBLISH of 1,000 x 100 B, 4 connections x 4 in flight):"
    "$BIN/flin-bench" -p 7410 -t smpub:1000 -d 100 -c 4 -P 4 -n 5000 --server-pid "$FLIN" | tail -3 | sed 's/^/  /'
    stop_servers
done
