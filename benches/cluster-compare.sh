#!/usr/bin/env bash
# Issue 14's figures for a 3-node Flin cluster on this machine (docs/benchmarks.md, "Cluster
# (issue 14)"; the failover figure also in docs/reliability.md):
#
# 1. Failover: flin-failover kills the leader with SIGKILL KILLS times under a writer and prints
#    the time until a new leader accepted a write (p50/p90/p99/max) and the acknowledged SETs
#    lost (must be 0); with the default raft tick (50 ms) and with --raft-tick-ms 20.
# 2. Throughput: flin-bench SET (RESP, CLIENTS connections, 3-byte values, a 10^6 keyspace)
#    against a single node and against a 3-node cluster's leader at the same fsync policy,
#    one request in flight per connection (plain) and PIPELINE deep (pipelined), each for
#    DURATION seconds, fresh servers for each measurement, ROUNDS rounds in alternating order;
#    the median rate of each, the ratio cluster/single, and the server CPU per SET (user +
#    system from /proc/<pid>/stat, summed over the three nodes for the cluster).
# 3. etcd: a 3-member etcd cluster (Debian's etcd 3.4, which fsyncs every commit: compared with
#    --fsync always) and etcd-put-bench (the v3 HTTP/JSON gateway, POST /v3/kv/put, CLIENTS
#    connections spread over the three members, one put in flight each), the same seconds;
#    the ratio flin-cluster/etcd for plain and pipelined Flin; etcd runs twice, with CLIENTS
#    connections (as many puts in flight as plain Flin has SETs) and with CLIENTS x PIPELINE
#    (as many as pipelined Flin), so each ratio compares equal concurrency. ETCD_CHECK_PERF=1 adds one
#    `etcdctl check perf --load l` (60 s, gRPC) as a cross-check.
#
#   benches/cluster-compare.sh                 # full: KILLS=100 ROUNDS=3 DURATION=10
#   QUICK=1 benches/cluster-compare.sh         # quick look: KILLS=20 ROUNDS=1 DURATION=5
#   ONLY=failover|throughput|etcd benches/cluster-compare.sh   # one part (comma list)
#
# Ports (127.0.0.1 only), from PORT_BASE (default 7800): flin-failover +10..+12 (tick 50) and
# +20..+22 (tick 20), the throughput cluster +0..+2, the single node +30 (cluster ports: client
# port + 10000), etcd clients +40/+42/+44 and peers +41/+43/+45. Every process is stopped by
# its pid.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

QUICK=${QUICK:-}
KILLS=${KILLS:-$([ -n "$QUICK" ] && echo 20 || echo 100)}
ROUNDS=${ROUNDS:-$([ -n "$QUICK" ] && echo 1 || echo 3)}
DURATION=${DURATION:-$([ -n "$QUICK" ] && echo 5 || echo 10)}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-32}
POLICIES=${POLICIES:-always everysec}
TICKS=${TICKS:-50 20}
ONLY=${ONLY:-failover,throughput,etcd}
ETCD_CHECK_PERF=${ETCD_CHECK_PERF:-}
B=${PORT_BASE:-7800}
ETCD_ENDPOINTS=127.0.0.1:$((B + 40)),127.0.0.1:$((B + 42)),127.0.0.1:$((B + 44))

for offset in 0 1 2 10 11 12 20 21 22 30 40 41 42 43 44 45; do
    port=$((B + offset))
    for p in "$port" $((offset < 40 ? port + 10000 : port)); do
        if (echo > "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then
            echo "cluster-compare.sh: 127.0.0.1:$p is in use (another run?); nothing started" >&2
            exit 1
        fi
    done
done
if [[ $ONLY == *etcd* ]] && ! command -v etcd > /dev/null; then
    echo "installing etcd-server etcd-client" >&2
    apt-get install -y etcd-server etcd-client > /dev/null
fi
cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin flin-bench \
    --bin flin-failover --bin etcd-put-bench
BIN=${CARGO_TARGET_DIR:-target}/release
SCRATCH=$(mktemp -d /tmp/flin-cluster-compare.XXXXXX)
cleanup() {
    stop_started
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# cpu_ticks PID...: user + system CPU of the processes so far, in clock ticks (1/100 s), summed.
cpu_ticks() {
    local pid files=()
    for pid in "$@"; do files+=("/proc/$pid/stat"); done
    awk '{s += $14 + $15} END {print s}' "${files[@]}"
}
# stop PID...: SIGTERM, then wait (bounded) until each is gone, so the next measurement does
# not share the CPU with a shutdown; SIGKILL after 5 s. Forgets them for the exit trap.
stop() {
    local pid
    for pid in "$@"; do kill "$pid" 2> /dev/null || true; done
    for pid in "$@"; do
        # An exited child stays a zombie (kill -0 succeeds) until it is waited for.
        for _ in $(seq 100); do
            kill -0 "$pid" 2> /dev/null || break
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2> /dev/null)" = Z ] && break
            sleep 0.05
        done
        kill -9 "$pid" 2> /dev/null || true
        # Reaped before the next start: a process still dying holds its ports (an etcd
        # member started next failed to bind its peer port once, and the script waited on
        # a cluster without a quorum).
        wait "$pid" 2> /dev/null || true
    done
    local kept=() p
    for p in "${PIDS[@]}"; do [[ " $* " == *" $p "* ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else '-')" "$1" "$2"; }
selected() { [[ ",$ONLY," == *",$1,"* ]]; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "commit $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'); KILLS=$KILLS ROUNDS=$ROUNDS DURATION=$DURATION CLIENTS=$CLIENTS PIPELINE=$PIPELINE" >&2

# --- 1. Failover ---------------------------------------------------------------------------
failover_rows=()
if selected failover; then
    port=$((B + 10))
    for tick in $TICKS; do
        echo "flin-failover: $KILLS kills, tick $tick ms" >&2
        line=$("$BIN/flin-failover" --kills "$KILLS" --raft-tick-ms "$tick" --fsync always \
            --port "$port" --dir "$SCRATCH" -q) || echo "flin-failover failed (exit $?)" >&2
        echo "  $line" >&2
        failover_rows+=("$(awk -v tick="$tick" '{for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}}
            END {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |", tick, v["kills"], v["p50"], v["p90"], v["p99"], v["max"], v["timed_out"], v["acknowledged"], v["lost"]}' <<< "$line")")
        port=$((port + 10))
    done
fi

# --- 2 and 3. Throughput -------------------------------------------------------------------
# start_single POLICY -> sets SERVER_PIDS, LEADER_PORT
start_single() {
    local dir=$SCRATCH/single
    rm -rf "$dir" && mkdir -p "$dir"
    "$BIN/flin-server" --bind 127.0.0.1 --port $((B + 30)) --admin-port 0 --data "$dir/data" \
        --fsync "$1" > "$dir/log" 2>&1 &
    SERVER_PIDS=("$!")
    PIDS+=("$!")
    wait_port $((B + 30))
    LEADER_PORT=$((B + 30))
}
start_cluster() {
    local dir=$SCRATCH/cluster members="1=127.0.0.1:$B,2=127.0.0.1:$((B + 1)),3=127.0.0.1:$((B + 2))" id
    rm -rf "$dir" && mkdir -p "$dir"
    SERVER_PIDS=()
    for id in 1 2 3; do
        "$BIN/flin-server" --bind 127.0.0.1 --port $((B - 1 + id)) --admin-port 0 \
            --data "$dir/node$id" --node-id "$id" --cluster "$members" --fsync "$1" \
            > "$dir/node$id.log" 2>&1 &
        SERVER_PIDS+=("$!")
        PIDS+=("$!")
    done
    for id in 1 2 3; do wait_port $((B - 1 + id)); done
    LEADER_PORT=""
    for _ in $(seq 200); do
        for id in 1 2 3; do
            if redis_info $((B - 1 + id)) | grep -q '^accepting_writes:1'; then
                LEADER_PORT=$((B - 1 + id))
                return 0
            fi
        done
        sleep 0.1
    done
    echo "no cluster leader within 20 s" >&2
    return 1
}
# redis_info PORT: CLUSTER INFO (no redis-cli needed); empty if the node does not answer.
redis_info() {
    python3 - "$1" << 'PY' 2> /dev/null || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    data += chunk
    head, _, rest = data.partition(b"\r\n")
    if not chunk or (head.startswith(b"$") and len(rest) >= int(head[1:]) + 2) or head.startswith(b"-"):
        break
print(data.decode(errors="replace").replace("\r", ""))
PY
}
start_etcd() {
    local dir=$SCRATCH/etcd i cluster=""
    rm -rf "$dir" && mkdir -p "$dir"
    for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$((B + 39 + 2 * i))"; done
    SERVER_PIDS=()
    for i in 1 2 3; do
        local client=$((B + 38 + 2 * i)) peer=$((B + 39 + 2 * i))
        etcd --name "e$i" --data-dir "$dir/e$i" \
            --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
            --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token flin-cluster-compare \
            > "$dir/e$i.log" 2>&1 &
        SERVER_PIDS+=("$!")
        PIDS+=("$!")
    done
    for _ in $(seq 120); do
        ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" --dial-timeout 1s --command-timeout 1s \
            endpoint health > /dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "etcd did not become healthy" >&2
    return 1
}

# bench_flin NAME ARGS...: flin-bench SET against LEADER_PORT; prints "rate cpu_us refused".
bench_flin() {
    local before after json
    before=$(cpu_ticks "${SERVER_PIDS[@]}")
    json=$("$BIN/flin-bench" -p "$LEADER_PORT" --protocol resp -t set -c "$CLIENTS" -d 3 -r 1000000 \
        -n 100000000 --duration "$DURATION" --json -q "$@")
    after=$(cpu_ticks "${SERVER_PIDS[@]}")
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])["results"][0]
ticks = int(sys.argv[2])
print("%.0f %.2f %d" % (r["keys_per_sec"], ticks * 1e4 / max(r["requests"], 1), r["refused"]))
' "$json" $((after - before))
}
# bench_etcd CONNECTIONS: etcd-put-bench (one put in flight per connection).
bench_etcd() {
    local before after line
    before=$(cpu_ticks "${SERVER_PIDS[@]}")
    line=$("$BIN/etcd-put-bench" --endpoints "$ETCD_ENDPOINTS" \
        -c "$1" -d 3 -r 1000000 -n 100000000 --duration "$DURATION")
    after=$(cpu_ticks "${SERVER_PIDS[@]}")
    awk -v ticks=$((after - before)) '{for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}}
        END {printf "%.0f %.2f %d\n", v["puts_per_sec"], ticks * 1e4 / (v["puts"] > 0 ? v["puts"] : 1), v["failed"]}' <<< "$line"
}

declare -A rate=() cpu=() refused=()
record() { # KEY "rate cpu refused"
    local r c f
    read -r r c f <<< "$2"
    rate[$1]+="$r "
    cpu[$1]+="$c "
    refused[$1]=$((${refused[$1]:-0} + f))
    echo "  $1: $r/s, server CPU $c us/op, refused $f" >&2
}
if selected throughput || selected etcd; then
    for round in $(seq 1 "$ROUNDS"); do
        for policy in $POLICIES; do
            kinds=()
            selected throughput && kinds+=(single cluster)
            if [ "$policy" = always ] && selected etcd; then
                selected throughput || kinds+=(cluster)
                kinds+=(etcd)
            fi
            ((${#kinds[@]})) || continue
            [ $((round % 2)) -eq 0 ] && kinds=($(printf '%s\n' "${kinds[@]}" | tac))
            for kind in "${kinds[@]}"; do
                echo "round $round, $policy, $kind" >&2
                "start_$kind" "$policy"
                if [ "$kind" = etcd ]; then
                    record "etcd-$policy-plain" "$(bench_etcd "$CLIENTS")"
                    record "etcd-$policy-deep" "$(bench_etcd $((CLIENTS * PIPELINE)))"
                else
                    record "$kind-$policy-plain" "$(bench_flin)"
                    record "$kind-$policy-pipelined" "$(bench_flin -P "$PIPELINE")"
                fi
                stop "${SERVER_PIDS[@]}"
            done
        done
    done
fi
m() { printf '%s\n' ${rate[$1]:-0} | median; }
mc() { printf '%s\n' ${cpu[$1]:-0} | median; }

if [ -n "$ETCD_CHECK_PERF" ] && selected etcd; then
    start_etcd
    echo "etcdctl check perf --load l:" >&2
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" \
        check perf --load l 2>&1 | tr '\r' '\n' | grep -v ' / 60 ' >&2 || true
    stop "${SERVER_PIDS[@]}"
fi

echo
if ((${#failover_rows[@]})); then
    echo "Failover (flin-failover, --fsync always): ms from the leader's SIGKILL to the first write a new leader acknowledged"
    echo
    echo "| raft tick ms | kills | p50 | p90 | p99 | max | timed out | acked SETs | lost acked SETs |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${failover_rows[@]}"
    echo
fi
if selected throughput; then
    echo "Throughput: SET/s, median of $ROUNDS, $CLIENTS connections, ${DURATION} s each; server CPU us per SET (cluster: three nodes)"
    echo
    echo "| fsync | mode | single SET/s | cluster SET/s | cluster/single | single CPU us/SET | cluster CPU us/SET | refused |"
    echo "|---|---|---|---|---|---|---|---|"
    for policy in $POLICIES; do
        for mode in plain pipelined; do
            s=$(m "single-$policy-$mode")
            c=$(m "cluster-$policy-$mode")
            printf '| %s | %s | %.0f | %.0f | %s | %s | %s | %s |\n' "$policy" \
                "$([ $mode = plain ] && echo "plain" || echo "-P $PIPELINE")" "$s" "$c" "$(ratio "$c" "$s")" \
                "$(mc "single-$policy-$mode")" "$(mc "cluster-$policy-$mode")" \
                "$((${refused[single-$policy-$mode]:-0} + ${refused[cluster-$policy-$mode]:-0}))"
        done
    done
    echo
fi
if selected etcd; then
    e=$(m etcd-always-plain)
    echo "etcd 3.4 (3 members, etcd-put-bench, $CLIENTS connections) against the Flin cluster at --fsync always"
    echo
    echo "| | puts/s or SET/s | server CPU us/op (3 nodes) | flin/etcd |"
    echo "|---|---|---|---|"
    deep=$(m etcd-always-deep)
    printf '| etcd put (HTTP/JSON gateway, one in flight per connection), %s connections | %.0f | %s | 1.00 |\n' "$CLIENTS" "$e" "$(mc etcd-always-plain)"
    c=$(m cluster-always-plain)
    printf '| flin cluster SET plain (%s in flight) | %.0f | %s | %s |\n' "$CLIENTS" "$c" "$(mc cluster-always-plain)" "$(ratio "$c" "$e")"
    printf '| etcd put, %s connections (as many in flight as flin -P %s) | %.0f | %s | 1.00 |\n' "$((CLIENTS * PIPELINE))" "$PIPELINE" "$deep" "$(mc etcd-always-deep)"
    c=$(m cluster-always-pipelined)
    printf '| flin cluster SET -P %s (%s in flight) | %.0f | %s | %s (against etcd at %s connections: %s) |\n' "$PIPELINE" "$((CLIENTS * PIPELINE))" "$c" \
        "$(mc cluster-always-pipelined)" "$(ratio "$c" "$deep")" "$CLIENTS" "$(ratio "$c" "$e")"
    echo "(etcd failed puts: ${refused[etcd-always-plain]:-0} at $CLIENTS connections, ${refused[etcd-always-deep]:-0} at $((CLIENTS * PIPELINE)))"
fi
