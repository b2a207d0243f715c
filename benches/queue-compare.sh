#!/usr/bin/env bash
# Flin's queues side by side with RabbitMQ and Redis on this machine (issue 11; the figures are
# in docs/benchmarks.md, "Message queues").
#
#   benches/queue-compare.sh            # ROUNDS=2 MESSAGES=200000 RABBIT_MESSAGES=100000
#
# - RabbitMQ (Debian's rabbitmq-server, a private node on 127.0.0.1:5673): a durable queue,
#   persistent messages, publisher confirms, manual acks, prefetch 100, against Flin's durable
#   queue under --fsync always (RabbitMQ confirms a persistent message once it is on disk) and
#   --fsync everysec. queue-bench runs the same workloads on both: confirmed publish, consume+ack
#   of a filled queue (by subscription; Flin also by BPOP COUNT 100 + ACK), and the end-to-end latency at a rate both sustain (RATE, 2000/s).
# - Redis (AOF everysec): redis-benchmark -P 16 LPUSH and RPOP against Flin's QUEUE.PUSH and
#   QUEUE.POP NOACK (the same client, commands for commands), and Flin's pop with acks under
#   everysec (queue-bench --consume-by pop) beside Redis's RPOP.
# Payload sizes: SIZES ("100 1024"). Every server is started here, on a scratch directory,
# and stopped by its pid at the end. Each run is bounded (queue-bench stops itself at 120 s).
set -euo pipefail

ROUNDS=${ROUNDS:-2}
MESSAGES=${MESSAGES:-200000}
RABBIT_MESSAGES=${RABBIT_MESSAGES:-100000}
SIZES=${SIZES:-"100 1024"}
RATE=${RATE:-2000}
LATENCY_MESSAGES=${LATENCY_MESSAGES:-20000}
REDIS_REQUESTS=${REDIS_REQUESTS:-1000000}

cd "$(dirname "$0")/.."
source benches/lib.sh
# The ports are fixed: a second run (or anything else on them) would be measured in place of
# the servers this run starts, so refuse to start instead.
refuse_busy_ports queue-compare.sh 5673 25673 7398 7399 7400
need=()
command -v rabbitmq-server > /dev/null || need+=(rabbitmq-server)
command -v redis-server > /dev/null || need+=(redis-server)
command -v redis-benchmark > /dev/null || need+=(redis-tools)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" > /dev/null
fi
cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin queue-bench
BIN=target/release
SCRATCH=$(mktemp -d /tmp/flin-queue-compare.XXXXXX)
chmod 755 "$SCRATCH" # RabbitMQ runs as its own user and needs to reach its directory
EPMD_OURS=""
cleanup() {
    stop_started
    if [[ -n "$EPMD_OURS" ]]; then kill "$EPMD_OURS" 2> /dev/null || true; fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# RabbitMQ: a private node (its own directories, ports, no plugins), run as the rabbitmq user.
EPMD_BEFORE=$(pgrep -x epmd || true)
mkdir -p "$SCRATCH/rabbit/mnesia" "$SCRATCH/rabbit/log"
echo "[]." > "$SCRATCH/rabbit/enabled_plugins"
chown -R rabbitmq:rabbitmq "$SCRATCH/rabbit"
RABBITMQ_MNESIA_BASE=$SCRATCH/rabbit/mnesia RABBITMQ_LOG_BASE=$SCRATCH/rabbit/log \
    RABBITMQ_NODENAME=flinbench@localhost RABBITMQ_NODE_PORT=5673 \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT=25673 \
    RABBITMQ_ENABLED_PLUGINS_FILE=$SCRATCH/rabbit/enabled_plugins \
    RABBITMQ_PID_FILE=$SCRATCH/rabbit/pid \
    rabbitmq-server > "$SCRATCH/rabbit/out.log" 2>&1 &
PIDS+=($!)
if ! wait_port 5673 60; then
    tail -5 "$SCRATCH"/rabbit/out.log >&2 || true
    exit 1
fi
RABBIT_PID=$(cat "$SCRATCH/rabbit/pid")
PIDS+=("$RABBIT_PID")
if [[ -z "$EPMD_BEFORE" ]]; then EPMD_OURS=$(pgrep -x epmd || true); fi

"$BIN/flin-server" --port 7398 --data "$SCRATCH/flin-always" --fsync always > "$SCRATCH/flin-always.log" 2>&1 &
FLIN_ALWAYS=$!
PIDS+=($FLIN_ALWAYS)
"$BIN/flin-server" --port 7399 --data "$SCRATCH/flin-everysec" --fsync everysec > "$SCRATCH/flin-everysec.log" 2>&1 &
FLIN_EVERYSEC=$!
PIDS+=($FLIN_EVERYSEC)
redis-server --port 7400 --bind 127.0.0.1 --dir "$SCRATCH" --appendonly yes --appendfsync everysec \
    --save "" > "$SCRATCH/redis.log" 2>&1 &
REDIS=$!
PIDS+=($REDIS)
wait_port 7398
wait_port 7399
wait_port 7400

RESULTS=$SCRATCH/results.txt
: > "$RESULTS"
qb() { # label pid port target args...
    local label=$1 pid=$2 port=$3 target=$4
    shift 4
    local line
    line=$("$BIN/queue-bench" --target "$target" --port "$port" --server-pid "$pid" "$@")
    echo "$label $line" | tee -a "$RESULTS"
}

echo "== queue-bench (4 producers, 4 consumers, window 100, prefetch 100; rate in msg/s, latency in us p50/p99/p99.9, server CPU in us per message)"
for size in $SIZES; do
    for round in $(seq "$ROUNDS"); do
        qb flin-always $FLIN_ALWAYS 7398 flin --workload publish --messages "$MESSAGES" --size "$size"
        qb flin-everysec $FLIN_EVERYSEC 7399 flin --workload publish --messages "$MESSAGES" --size "$size"
        qb rabbit "$RABBIT_PID" 5673 rabbit --workload publish --messages "$RABBIT_MESSAGES" --size "$size"
        qb flin-always $FLIN_ALWAYS 7398 flin --workload consume --messages "$MESSAGES" --size "$size"
        qb flin-everysec $FLIN_EVERYSEC 7399 flin --workload consume --messages "$MESSAGES" --size "$size"
        qb rabbit "$RABBIT_PID" 5673 rabbit --workload consume --messages "$RABBIT_MESSAGES" --size "$size"
        qb flin-always-pop $FLIN_ALWAYS 7398 flin --workload consume --consume-by pop --messages "$MESSAGES" --size "$size"
        qb flin-everysec-pop $FLIN_EVERYSEC 7399 flin --workload consume --consume-by pop --messages "$MESSAGES" --size "$size"
        qb flin-always $FLIN_ALWAYS 7398 flin --workload both --rate "$RATE" --messages "$LATENCY_MESSAGES" --size "$size"
        qb flin-everysec $FLIN_EVERYSEC 7399 flin --workload both --rate "$RATE" --messages "$LATENCY_MESSAGES" --size "$size"
        qb rabbit "$RABBIT_PID" 5673 rabbit --workload both --rate "$RATE" --messages "$LATENCY_MESSAGES" --size "$size"
    done
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rb() { # label pid port command...
    local label=$1 pid=$2 port=$3
    shift 3
    local before after rate
    before=$(cpu_ticks "$pid")
    rate=$(redis-benchmark -p "$port" -P 16 -n "$REDIS_REQUESTS" -q "$@" 2>&1 | tr '\r' '\n' |
        grep "requests per second" | tail -1 | sed 's/.*: \([0-9.]*\) requests.*/\1/')
    after=$(cpu_ticks "$pid")
    echo "$label redis-benchmark $1 rate=$rate server_cpu_us_per_msg=$(awk -v t=$((after - before)) -v n="$REDIS_REQUESTS" 'BEGIN{printf "%.2f", t*10000/n}')" | tee -a "$RESULTS"
}
echo "== redis-benchmark -P 16 -n $REDIS_REQUESTS (50 connections), 100-byte values, Flin --fsync everysec, Redis AOF everysec"
redis-cli -p 7399 QUEUE.DECLARE rb.q > /dev/null
V=$(head -c 100 /dev/zero | tr '\0' 'v')
for round in $(seq "$ROUNDS"); do
    rb flin-everysec $FLIN_EVERYSEC 7399 QUEUE.PUSH rb.q "$V"
    rb redis $REDIS 7400 LPUSH rb.q "$V"
    rb flin-everysec $FLIN_EVERYSEC 7399 QUEUE.POP rb.q NOACK
    rb redis $REDIS 7400 RPOP rb.q
done

echo "== medians"
python3 - "$RESULTS" << 'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label = line.split()[0]
    fields = dict(re.findall(r"(\S+)=(\S+)", line))
    if "workload" in fields:
        key = (label, fields["workload"], fields["size"])
    else:
        key = (label, line.split()[2], "100")
    rows.setdefault(key, []).append(fields)
def med(key, field):
    values = [float(r[field]) for r in rows.get(key, []) if r.get(field, "-") not in ("-", "")]
    return statistics.median(values) if values else None
def us(value):
    return "-" if value is None else f"{value:.2f}"
def lat(key, field, i):
    values = [float(r[field].split("/")[i]) for r in rows.get(key, []) if r.get(field, "-") != "-"]
    return statistics.median(values) if values else None
sizes = sorted({k[2] for k in rows if k[1] in ("Publish", "Consume", "Both")}, key=int)
for size in sizes:
    for workload in ("Publish", "Consume"):
        r = med(("rabbit", workload, size), "rate")
        for flin in ("flin-always", "flin-everysec", "flin-always-pop", "flin-everysec-pop"):
            f = med((flin, workload, size), "rate")
            if f and r:
                cf = med((flin, workload, size), "server_cpu_us_per_msg")
                cr = med(("rabbit", workload, size), "server_cpu_us_per_msg")
                print(f"{workload:8} {size:>5} B  {flin:17} {f:>10.0f}/s  rabbit {r:>8.0f}/s  ratio {f / r:5.1f}x   server CPU us/msg {us(cf)} vs {us(cr)}")
        f = lat((f"flin-always", workload, size), "confirm_us_p50/p99/p999", 1)
        rr = lat(("rabbit", workload, size), "confirm_us_p50/p99/p999", 1)
        if workload == "Publish" and f and rr:
            print(f"{'':8} {size:>5} B  confirm p99: flin-always {f:.0f} us, rabbit {rr:.0f} us")
    rl = [lat(("rabbit", "Both", size), "e2e_us_p50/p99/p999", i) for i in range(3)]
    for flin in ("flin-always", "flin-everysec"):
        fl = [lat((flin, "Both", size), "e2e_us_p50/p99/p999", i) for i in range(3)]
        if fl[0] and rl[0]:
            cf = med((flin, "Both", size), "server_cpu_us_per_msg")
            cr = med(("rabbit", "Both", size), "server_cpu_us_per_msg")
            print(f"e2e at the paced rate {size:>5} B  {flin} p50/p99/p99.9 {fl[0]:.0f}/{fl[1]:.0f}/{fl[2]:.0f} us, rabbit {rl[0]:.0f}/{rl[1]:.0f}/{rl[2]:.0f} us   server CPU us/msg {us(cf)} vs {us(cr)}")
for cmd_flin, cmd_redis in (("QUEUE.PUSH", "LPUSH"), ("QUEUE.POP", "RPOP")):
    f = med(("flin-everysec", cmd_flin, "100"), "rate")
    r = med(("redis", cmd_redis, "100"), "rate")
    if f and r:
        cf = med(("flin-everysec", cmd_flin, "100"), "server_cpu_us_per_msg")
        cr = med(("redis", cmd_redis, "100"), "server_cpu_us_per_msg")
        print(f"redis-benchmark -P 16  {cmd_flin:10} {f:>10.0f}/s  vs {cmd_redis:5} {r:>10.0f}/s  ratio {f / r:4.2f}x   server CPU us/op {us(cf)} vs {us(cr)}")
# Flin's pop with acks (queue-bench: 4 consumers, BPOP COUNT 100 + one ACK per batch, durable
# queue, everysec) beside Redis's RPOP: the issue's "durable and acknowledged" consume. Not the
# same client (queue-bench against redis-benchmark -P 16, 50 connections): read it as a
# rate the consumers reach, not as a command-for-command ratio.
f = med(("flin-everysec-pop", "Consume", "100"), "rate")
r = med(("redis", "RPOP", "100"), "rate")
if f and r:
    cf = med(("flin-everysec-pop", "Consume", "100"), "server_cpu_us_per_msg")
    cr = med(("redis", "RPOP", "100"), "server_cpu_us_per_msg")
    print(f"pop+ack (queue-bench)  BPOP+ACK   {f:>10.0f}/s  vs RPOP  {r:>10.0f}/s  ratio {f / r:4.2f}x   server CPU us/msg {us(cf)} vs {us(cr)}")
EOF
