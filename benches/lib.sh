# shellcheck shell=bash
# What the side-by-side scripts share; sourced, not run:
#
#   source "$(dirname "$0")/lib.sh"
#   refuse_busy_ports NAME PORT...   exit 1 (naming the port) if anything listens on one: it
#                                    would be measured in place of the server the script starts
#   wait_port PORT [SECONDS]         0 once 127.0.0.1:PORT accepts a connection, or 1 after
#                                    SECONDS (30), saying so
#   PIDS+=($!)                       every process the script starts; `stop_started` (call it from
#                                    the script's EXIT trap) sends them TERM, then KILL a second
#                                    later, and touches no other process

PIDS=()

port_open() {
    (echo > "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

refuse_busy_ports() {
    local name=$1 port
    shift
    for port in "$@"; do
        if port_open "$port"; then
            echo "$name: 127.0.0.1:$port is in use (another run?); nothing started" >&2
            exit 1
        fi
    done
}

wait_port() {
    local tries=$((${2:-30} * 4))
    for _ in $(seq "$tries"); do
        port_open "$1" && return 0
        sleep 0.25
    done
    echo "nothing listens on port $1" >&2
    return 1
}

stop_started() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2> /dev/null || true; done
}

# For the scripts that run a 3-node cluster of their own, PORTS holding its client ports and
# NODE_PIDS its pids (0 while a node is down):
#   cluster_field PORT KEY      one field of that node's CLUSTER INFO (empty if it does not answer)
#   cluster_leader              the index in PORTS of the node that accepts writes, within 20 s
#   need_redis_cli              installs redis-tools if redis-cli is missing (the two above use it)
#   wait_commit PORT TARGET START   waits for that node's commit_index to reach TARGET without
#                               forking (prints the seconds since START)
need_redis_cli() {
    command -v redis-cli > /dev/null && return
    echo "installing redis-tools (redis-cli) from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools > /dev/null
}
cluster_info() { redis-cli -p "$1" CLUSTER INFO 2> /dev/null | tr -d '\r' || true; }
# wait_commit PORT TARGET START: waits until the node on PORT reports commit_index >= TARGET
# and prints the seconds since START (a `date +%s.%N`). One process and one connection,
# asking every 50 ms: a loop of redis-cli | awk forks five processes a turn, and on a 2-core
# machine that cost the leader's clients more than what it waited for (docs/benchmarks.md).
wait_commit() {
    python3 - "$1" "$2" "$3" << 'EOF'
import socket, sys, time
port, target, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sock = None
while True:
    try:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            reply = sock.makefile("rb")
        sock.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
        length = int(reply.readline()[1:])
        body = reply.read(length + 2).decode()
        fields = dict(line.split(":", 1) for line in body.split("\r\n") if ":" in line)
        if int(fields.get("commit_index", "0")) >= target:
            print("%.2f" % (time.time() - start))
            break
    except (OSError, ValueError):
        if sock is not None:
            sock.close()
        sock = None
    time.sleep(0.05)
EOF
}
cluster_field() { cluster_info "$1" | awk -F: -v key="$2" '$1 == key {print $2}'; }
cluster_leader() {
    local i
    for _ in $(seq 200); do
        for i in 0 1 2; do
            [ "${NODE_PIDS[$i]}" -gt 0 ] && cluster_info "${PORTS[$i]}" | grep -q '^accepting_writes:1' && {
                echo "$i"
                return
            }
        done
        sleep 0.1
    done
    echo "no leader within 20 s" >&2
    exit 1
}
