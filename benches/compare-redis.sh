#!/usr/bin/env bash
# Side-by-side: redis-benchmark against redis-server and flin-server on this machine, in
# alternating rounds, reporting the median requests/s of each and the ratio flin/redis.
#
#   benches/compare-redis.sh                 # the issue's four scenarios, 3 rounds
#   ROUNDS=1 SCALE=10 benches/compare-redis.sh   # quick look: request counts divided by 10
#   ONLY=pipelined benches/compare-redis.sh  # one scenario (pipelined|plain|everysec|always)
#
# Installs Debian's redis-server/redis-tools when missing (the test suite never needs them).
# Servers listen on 127.0.0.1 only, on free ports, and are stopped by PID when the script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
CLIENTS=${CLIENTS:-50}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "installing redis-server and redis-tools" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -q -p flin-server
FLIN=target/release/flin-server

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {
    local port=$1
    for _ in $(seq 1 200); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server on port $port did not answer PING" >&2
    return 1
}

# start_redis MODE -> prints "pid port"; MODE: memory | everysec | always
start_redis() {
    local mode=$1 port dir
    port=$(free_port)
    dir=$(mktemp -d -p "$work")
    local args=(--port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --daemonize no --loglevel warning)
    case $mode in
        memory) args+=(--appendonly no) ;;
        everysec) args+=(--appendonly yes --appendfsync everysec) ;;
        always) args+=(--appendonly yes --appendfsync always) ;;
    esac
    redis-server "${args[@]}" >"$dir/log" 2>&1 &
    echo "$! $port"
}

start_flin() {
    local mode=$1 port dir
    port=$(free_port)
    dir=$(mktemp -d -p "$work")
    local args=(--port "$port" --bind 127.0.0.1)
    case $mode in
        memory) args+=(--memory) ;;
        everysec) args+=(--data "$dir/data" --fsync everysec) ;;
        always) args+=(--data "$dir/data" --fsync always) ;;
    esac
    "$FLIN" "${args[@]}" >"$dir/log" 2>&1 &
    echo "$! $port"
}

# bench PORT ARGS... -> prints "set_rps get_rps"
bench() {
    local port=$1
    shift
    redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" --csv "$@" 2>/dev/null |
        awk -F'","' '/^"SET"/ {set=$2} /^"GET"/ {get=$2} END {gsub(/"/, "", set); gsub(/"/, "", get); print set+0, get+0}'
}

median() {
    sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

# scenario NAME MODE REQUESTS ARGS...
results=()
scenario() {
    local name=$1 mode=$2 requests=$3
    shift 3
    [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && return 0
    requests=$((requests / SCALE))
    local redis_set=() redis_get=() flin_set=() flin_get=()
    for round in $(seq 1 "$ROUNDS"); do
        for server in redis flin; do
            read -r pid port < <("start_$server" "$mode")
            pids+=("$pid")
            wait_ready "$port"
            read -r set get < <(bench "$port" -n "$requests" "$@")
            kill "$pid" && wait "$pid" 2>/dev/null || true
            echo "  $name round $round $server: SET $set/s GET $get/s" >&2
            if [ $server = redis ]; then redis_set+=("$set"); redis_get+=("$get"); else flin_set+=("$set"); flin_get+=("$get"); fi
        done
    done
    local rs rg fs fg
    rs=$(printf '%s\n' "${redis_set[@]}" | median)
    rg=$(printf '%s\n' "${redis_get[@]}" | median)
    fs=$(printf '%s\n' "${flin_set[@]}" | median)
    fg=$(printf '%s\n' "${flin_get[@]}" | median)
    results+=("$(printf '| %s | SET | %.0f | %.0f | %.2f |' "$name" "$rs" "$fs" "$(echo "$fs / $rs" | bc -l)")")
    results+=("$(printf '| %s | GET | %.0f | %.0f | %.2f |' "$name" "$rg" "$fg" "$(echo "$fg / $rg" | bc -l)")")
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "redis: $(redis-server --version | cut -d' ' -f3), $ROUNDS rounds, median of each" >&2

scenario pipelined memory 2000000 -t set,get -P 16 -r 1000000
scenario plain memory 2000000 -t set,get -r 1000000
scenario everysec everysec 2000000 -t set,get -d 100 -P 16 -r 1000000
scenario always always 200000 -t set,get -r 1000000

echo
echo "| scenario | test | redis req/s | flin req/s | flin/redis |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
