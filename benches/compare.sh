#!/usr/bin/env bash
# Side by side on this machine: redis-server and flin-server, each started fresh on a free port on
# 127.0.0.1 for every measurement, in alternating order, ROUNDS rounds; prints per test the median
# of each and the ratio flin/redis.
#
# Three kinds of tests, so one run answers "flin vs redis" and "binary vs RESP":
#   redis-benchmark  RESP, against both (issue 3's scenarios: pipelined, plain, everysec, always)
#   flin-bench resp  RESP, against both
#   flin-bench bin   Flin's binary protocol, against flin (its redis column is the RESP figure of
#                    redis for the same workload, so the ratio is flin-binary / redis-RESP)
# and a second table with flin's binary/RESP ratio for each flin-bench workload, and a third with the
# server CPU per key (from /proc/<pid>/stat, via flin-bench --server-pid): on a shared machine it
# moves less with other users' load than throughput does.
#
#   benches/compare.sh                         # everything, 3 rounds (about 10 minutes)
#   ROUNDS=1 SCALE=10 benches/compare.sh       # quick look: request counts divided by 10
#   ONLY=pipelined,plain benches/compare.sh    # some tests (issue 3's four: pipelined,plain,
#                                              # everysec,always; flin-bench: fb-p16,fb-plain,
#                                              # fb-mset100,fb-mixed)
#   ONLY=redis-benchmark benches/compare.sh    # issue 3's four redis-benchmark scenarios
#   ONLY=flin-bench benches/compare.sh         # the flin-bench tests only
#   ONLY=cpu benches/compare.sh                # server CPU per command: SET, MSET (10 keys), GET
#                                              # with -P 16 (cpu-set-p16, cpu-mset-p16, cpu-get-p16)
#   FLIN_B=/tmp/old/flin-server ONLY=cpu benches/compare.sh   # and another build, side by side
#                                              # (redis-benchmark and cpu scenarios)
#
# Installs Debian's redis-server/redis-tools when missing (the test suite never needs them).
# Servers listen on 127.0.0.1 only and are stopped by PID after each measurement and on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
CLIENTS=${CLIENTS:-50}
# flin-server --threads (empty: its default, one event loop per core). FLIN_THREADS=1 gives flin
# the one event-loop thread Redis has, leaving the other core of a 2-core machine to the client.
FLIN_THREADS=${FLIN_THREADS:-}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "installing redis-server and redis-tools" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin flin-bench
FLIN=target/release/flin-server
BENCH=target/release/flin-bench
# FLIN_B=/path/to/another/flin-server adds that build as a third server ("flinb") to the
# redis-benchmark and cpu-per-command scenarios, for an A/B of two builds in one run.
FLIN_B=${FLIN_B:-}

work=$(mktemp -d)
# The one server running now (each is stopped before the next starts), for the exit trap; an
# exited server's pid is not kept, so the trap cannot hit a process that reused it.
running_pid=""
cleanup() {
    [ -n "$running_pid" ] && kill "$running_pid" 2>/dev/null || true
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
    # No admin port: the client port is a random free one, and port + 1000 may be taken.
    local args=(--port "$port" --bind 127.0.0.1 --admin-port 0)
    [ -n "$FLIN_THREADS" ] && args+=(--threads "$FLIN_THREADS")
    case $mode in
        memory) args+=(--memory) ;;
        everysec) args+=(--data "$dir/data" --fsync everysec) ;;
        always) args+=(--data "$dir/data" --fsync always) ;;
    esac
    "$FLIN" "${args[@]}" >"$dir/log" 2>&1 &
    echo "$! $port"
}

start_flinb() {
    FLIN="$FLIN_B" start_flin "$@"
}

# redis_benchmark_one PORT ARGS... -> prints the requests/s of the one test run
redis_benchmark_one() {
    local port=$1
    shift
    redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" --csv "$@" 2>/dev/null |
        awk -F'","' 'NR == 2 {print $2 + 0}'
}

redis_benchmark_one_at() {
    local port=${*: -1}
    redis_benchmark_one "$port" "${@:1:$#-1}"
}

# redis_benchmark PORT ARGS... -> prints "set_rps get_rps"
redis_benchmark() {
    local port=$1
    shift
    redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" --csv "$@" 2>/dev/null |
        awk -F'","' '/^"SET"/ {set=$2} /^"GET"/ {get=$2} END {gsub(/"/, "", set); gsub(/"/, "", get); print set+0, get+0}'
}

# flin_bench PORT PROTOCOL ARGS... -> prints "KEYS_PER_SEC:SERVER_CPU_US_PER_KEY" per workload, in
# order (the server is the one `measure` started: $running_pid).
flin_bench() {
    local port=$1 protocol=$2
    shift 2
    "$BENCH" -p "$port" --protocol "$protocol" --server-pid "$running_pid" --json -q "$@" |
        python3 -c 'import json,sys; print(" ".join("%.0f:%.3f" % (r["keys_per_sec"], r["server_cpu_us_per_key"] or 0) for r in json.load(sys.stdin)["results"]))'
}

# stop PID: SIGTERM, then wait (bounded) until it is gone, so the next server does not share the
# CPU with this one's shutdown. The servers are started in a subshell, so `wait` cannot be used.
stop() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
}

median() {
    sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

ratio() {
    python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else '-')" "$1" "$2"
}

selected() {
    local name=$1 kind=$2
    [ -z "$ONLY" ] && return 0
    local item
    for item in ${ONLY//,/ }; do
        [ "$item" = "$name" ] || [ "$item" = "$kind" ] && return 0
    done
    return 1
}

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks (1/100 s).
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# measure SERVER MODE COMMAND... : starts SERVER (redis|flin) in MODE, runs COMMAND with the port
# as its last argument, stops the server, prints what COMMAND printed. MEASURE_CPU=1 appends the
# server's CPU ticks spent during COMMAND.
measure() {
    local server=$1 mode=$2 pid port output before
    shift 2
    read -r pid port < <("start_$server" "$mode")
    running_pid=$pid
    wait_ready "$port"
    before=$(cpu_ticks "$pid")
    output=$("$@" "$port")
    [ -n "${MEASURE_CPU:-}" ] && output="$output $(($(cpu_ticks "$pid") - before))"
    stop "$pid"
    running_pid=""
    echo "$output"
}

results=()
server_cpu=()
binary_vs_resp=()
cpu_per_key=()

# redis_benchmark_scenario NAME MODE REQUESTS ARGS...: SET and GET through redis-benchmark,
# against redis, flin (and FLIN_B's build, in the same rounds).
ab_results=()
redis_benchmark_scenario() {
    local name=$1 mode=$2 requests=$3
    shift 3
    selected "$name" redis-benchmark || return 0
    requests=$((requests / SCALE))
    local servers=(redis flin)
    [ -n "$FLIN_B" ] && servers+=(flinb)
    declare -A set_rps=() get_rps=() cpu=()
    local rb=(redis_benchmark_at -n "$requests" "$@")
    for round in $(seq 1 "$ROUNDS"); do
        local order=("${servers[@]}")
        [ $((round % 2)) -eq 0 ] && order=($(printf '%s
' "${servers[@]}" | tac))
        for server in "${order[@]}"; do
            read -r set get ticks < <(MEASURE_CPU=1 measure "$server" "$mode" "${rb[@]}")
            # Server CPU per request over the SET and GET runs, in microseconds.
            local us
            us=$(python3 -c "import sys; print('%.2f' % (int(sys.argv[1]) * 1e4 / (2 * int(sys.argv[2]))))" "$ticks" "$requests")
            echo "  redis-benchmark $name round $round $server: SET $set/s GET $get/s, server CPU $us us/request" >&2
            set_rps[$server]+="$set "
            get_rps[$server]+="$get "
            cpu[$server]+="$us "
        done
    done
    declare -A ms=() mg=() mc=()
    for server in "${servers[@]}"; do
        ms[$server]=$(printf '%s\n' ${set_rps[$server]} | median)
        mg[$server]=$(printf '%s\n' ${get_rps[$server]} | median)
        mc[$server]=$(printf '%s\n' ${cpu[$server]} | median)
    done
    results+=("$(printf '| redis-benchmark | %s SET | %.0f | %.0f | %s |' "$name" "${ms[redis]}" "${ms[flin]}" "$(ratio "${ms[flin]}" "${ms[redis]}")")")
    results+=("$(printf '| redis-benchmark | %s GET | %.0f | %.0f | %s |' "$name" "${mg[redis]}" "${mg[flin]}" "$(ratio "${mg[flin]}" "${mg[redis]}")")")
    server_cpu+=("$(printf '| %s | %.2f | %.2f | %s |' "$name" "${mc[redis]}" "${mc[flin]}" "$(ratio "${mc[redis]}" "${mc[flin]}")")")
    if [ -n "$FLIN_B" ]; then
        ab_results+=("$(printf '| %s SET | %.0f | %.0f | %s |' "$name" "${ms[flinb]}" "${ms[flin]}" "$(ratio "${ms[flin]}" "${ms[flinb]}")")")
        ab_results+=("$(printf '| %s GET | %.0f | %.0f | %s |' "$name" "${mg[flinb]}" "${mg[flin]}" "$(ratio "${mg[flin]}" "${mg[flinb]}")")")
        ab_results+=("$(printf '| %s CPU us/request | %.2f | %.2f | %s |' "$name" "${mc[flinb]}" "${mc[flin]}" "$(ratio "${mc[flin]}" "${mc[flinb]}")")")
    fi
}

# The port comes last from `measure`; redis-benchmark wants it first.
redis_benchmark_at() {
    local port=${*: -1}
    redis_benchmark "$port" "${@:1:$#-1}"
}

flin_bench_at() {
    local protocol=$1 port=${*: -1}
    flin_bench "$port" "$protocol" "${@:2:$#-2}"
}

# flin_bench_scenario NAME MODE WORKLOADS ARGS...: each workload (comma list, run in order in one
# flin-bench process) against redis (RESP), flin (RESP) and flin (binary). Figures are keys/s
# (requests/s except for MSET/MGET).
flin_bench_scenario() {
    local name=$1 mode=$2 workloads=$3
    shift 3
    selected "$name" flin-bench || return 0
    local args=(-t "$workloads" "$@")
    local -a names
    IFS=, read -r -a names <<<"$workloads"
    local count=${#names[@]}
    declare -A samples=()
    for round in $(seq 1 "$ROUNDS"); do
        local order=("redis resp" "flin resp" "flin binary")
        [ $((round % 2)) -eq 0 ] && order=("flin binary" "flin resp" "redis resp")
        for target in "${order[@]}"; do
            read -r server protocol <<<"$target"
            local figures
            figures=$(measure "$server" "$mode" flin_bench_at "$protocol" "${args[@]}")
            echo "  flin-bench $name round $round $server/$protocol: $figures (keys/s:server CPU us/key)" >&2
            local i=0
            for figure in $figures; do
                samples["$server-$protocol-$i"]+="${figure%%:*} "
                samples["cpu-$server-$protocol-$i"]+="${figure##*:} "
                i=$((i + 1))
            done
        done
    done
    for i in $(seq 0 $((count - 1))); do
        local redis flin_resp flin_binary
        redis=$(printf '%s\n' ${samples["redis-resp-$i"]} | median)
        flin_resp=$(printf '%s\n' ${samples["flin-resp-$i"]} | median)
        flin_binary=$(printf '%s\n' ${samples["flin-binary-$i"]} | median)
        local test="$name ${names[$i]}"
        results+=("$(printf '| flin-bench resp | %s | %.0f | %.0f | %s |' "$test" "$redis" "$flin_resp" "$(ratio "$flin_resp" "$redis")")")
        results+=("$(printf '| flin-bench binary | %s | %.0f (RESP) | %.0f | %s |' "$test" "$redis" "$flin_binary" "$(ratio "$flin_binary" "$redis")")")
        binary_vs_resp+=("$(printf '| %s | %.0f | %.0f | %s |' "$test" "$flin_resp" "$flin_binary" "$(ratio "$flin_binary" "$flin_resp")")")
        local cpu_redis cpu_resp cpu_binary
        cpu_redis=$(printf '%s\n' ${samples["cpu-redis-resp-$i"]} | median)
        cpu_resp=$(printf '%s\n' ${samples["cpu-flin-resp-$i"]} | median)
        cpu_binary=$(printf '%s\n' ${samples["cpu-flin-binary-$i"]} | median)
        cpu_per_key+=("$(printf '| %s | %.2f | %.2f | %.2f | %s |' "$test" "$cpu_redis" "$cpu_resp" "$cpu_binary" "$(ratio "$cpu_resp" "$cpu_binary")")")
    done
}

# cpu_scenario NAME MODE REQUESTS TEST ARGS...: one redis-benchmark test (-t TEST) against
# redis, flin (and FLIN_B's build): requests/s and the server's CPU per request.
cpu_per_command=()
cpu_scenario() {
    local name=$1 mode=$2 requests=$3 test=$4
    shift 4
    selected "$name" cpu || return 0
    requests=$((requests / SCALE))
    local servers=(redis flin)
    [ -n "$FLIN_B" ] && servers+=(flinb)
    declare -A rps=() cpu=()
    for round in $(seq 1 "$ROUNDS"); do
        local order=("${servers[@]}")
        [ $((round % 2)) -eq 0 ] && order=($(printf '%s\n' "${servers[@]}" | tac))
        for server in "${order[@]}"; do
            read -r rate ticks < <(MEASURE_CPU=1 measure "$server" "$mode" redis_benchmark_one_at -n "$requests" -t "$test" "$@")
            local us
            us=$(python3 -c "import sys; print('%.3f' % (int(sys.argv[1]) * 1e4 / int(sys.argv[2])))" "$ticks" "$requests")
            echo "  cpu $name round $round $server: $rate requests/s, server CPU $us us/request" >&2
            rps[$server]+="$rate "
            cpu[$server]+="$us "
        done
    done
    local line="| $name |" r
    for server in "${servers[@]}"; do
        r=$(printf '%s\n' ${rps[$server]} | median)
        line+=" $(printf '%.0f' "$r") |"
    done
    local redis_cpu flin_cpu
    redis_cpu=$(printf '%s\n' ${cpu[redis]} | median)
    flin_cpu=$(printf '%s\n' ${cpu[flin]} | median)
    for server in "${servers[@]}"; do
        line+=" $(printf '%s\n' ${cpu[$server]} | median) |"
    done
    line+=" $(ratio "$flin_cpu" "$redis_cpu") |"
    cpu_per_command+=("$line")
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "redis: $(redis-server --version | cut -d' ' -f3), $ROUNDS rounds, median of each; flin --threads ${FLIN_THREADS:-default}" >&2

# Issue 3's scenarios, through redis-benchmark.
redis_benchmark_scenario pipelined memory 2000000 -t set,get -P 16 -r 1000000
redis_benchmark_scenario plain memory 2000000 -t set,get -r 1000000
redis_benchmark_scenario everysec everysec 2000000 -t set,get -d 100 -P 16 -r 1000000
redis_benchmark_scenario always always 200000 -t set,get -r 1000000

# Server CPU per command under the same redis-benchmark load (issue 10's targets: flin at most
# redis's CPU per command).
cpu_scenario cpu-set-p16 memory 2000000 set -P 16 -r 1000000
cpu_scenario cpu-mset-p16 memory 400000 mset -P 16 -r 1000000
cpu_scenario cpu-get-p16 memory 2000000 get -P 16 -r 1000000

# The same workloads through flin-bench, over RESP (both servers) and the binary protocol (flin).
flin_bench_scenario fb-p16 memory set,get -c "$CLIENTS" -P 16 -d 100 -r 1000000 -n $((2000000 / SCALE))
flin_bench_scenario fb-plain memory set,get -c "$CLIENTS" -d 100 -r 1000000 -n $((400000 / SCALE))
flin_bench_scenario fb-mixed memory mixed:80 -c "$CLIENTS" -P 16 -d 100 -r 1000000 -n $((2000000 / SCALE))
# The MSET target: batches of 100 keys x 100 B, new keys (a 10^9 keyspace), 4 connections x 4 deep.
flin_bench_scenario fb-mset100 memory mset:100 -c 4 -P 4 -d 100 -r 1000000000 -n $((40000 / SCALE))

echo
echo "| tool | test | redis | flin | flin/redis |"
echo "|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
if [ ${#server_cpu[@]} -gt 0 ]; then
    echo
    echo "Server CPU (user + system) per redis-benchmark request, microseconds (SET and GET runs"
    echo "together); the last column is redis's CPU per request over flin's:"
    echo
    echo "| scenario | redis | flin | redis/flin |"
    echo "|---|---|---|---|"
    printf '%s\n' "${server_cpu[@]}"
fi
if [ ${#ab_results[@]} -gt 0 ]; then
    echo
    echo "redis-benchmark scenarios, FLIN_B's build against this one (same rounds):"
    echo
    echo "| scenario | flin-b | flin | flin/flin-b |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ab_results[@]}"
fi
if [ ${#cpu_per_command[@]} -gt 0 ]; then
    echo
    echo "redis-benchmark, one test each: requests/s, then server CPU (user + system) per request in"
    echo "microseconds, then flin's CPU per request over redis's:"
    echo
    if [ -n "$FLIN_B" ]; then
        echo "| scenario | redis req/s | flin req/s | flin-b req/s | redis us | flin us | flin-b us | flin/redis CPU |"
        echo "|---|---|---|---|---|---|---|---|"
    else
        echo "| scenario | redis req/s | flin req/s | redis us | flin us | flin/redis CPU |"
        echo "|---|---|---|---|---|---|"
    fi
    printf '%s\n' "${cpu_per_command[@]}"
fi
if [ ${#binary_vs_resp[@]} -gt 0 ]; then
    echo
    echo "| flin-bench test | flin RESP | flin binary | binary/RESP |"
    echo "|---|---|---|---|"
    printf '%s\n' "${binary_vs_resp[@]}"
    echo
    echo "Server CPU (user + system) per key, microseconds; the last column is how many binary keys"
    echo "one RESP key's server CPU pays for:"
    echo
    echo "| flin-bench test | redis RESP | flin RESP | flin binary | flin RESP/binary |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${cpu_per_key[@]}"
fi
