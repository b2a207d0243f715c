#!/usr/bin/env bash
# Flin's documents side by side with PostgreSQL's jsonb on this machine (issue 13; the figures
# go in docs/benchmarks.md, "Documents (issue 13)").
#
#   benches/doc-compare.sh     # ROUNDS=1 POLICIES="always everysec" CONNECTIONS=8 DOCUMENTS=100000
#                              # FLIN_PORT=7420 PG_PORT=7421
#
# - PostgreSQL (Debian's postgresql, installed if missing): a private cluster made by initdb in
#   a scratch directory and run as the postgres user, on 127.0.0.1:$PG_PORT (7421), fsync on, and
#   synchronous_commit matching Flin's policy: --fsync always <-> on (a commit is on disk
#   before its reply, as a Flin write is before its reply), everysec <-> off (the WAL writer
#   flushes within about 3 x wal_writer_delay = 600 ms, as Flin's flusher does within a
#   second). shared_buffers 1 GB, so the collection stays in memory as Flin's does in the page
#   cache; max_wal_size 4 GB, so no run is cut by a checkpoint that WAL volume forces (doc-bench
#   runs CHECKPOINT before each timed run).
# - Flin: target/release/flin-server on 127.0.0.1:$FLIN_PORT (7420), a scratch data directory, the policy's
#   --fsync.
# - doc-bench (benches/src/bin/doc-bench.rs) runs each workload of WORKLOADS on Flin, then on
#   PostgreSQL, with the same documents (about 1 KB of JSON), the same questions and the same
#   number of connections (CONNECTIONS, one statement per operation): inserts (one, and 100 a
#   statement), get by _id, an equality on the indexed k, a range of k with sort and limit 10,
#   an $inc of k by _id, a $group by city with $sum. It prints PostgreSQL's EXPLAIN for each
#   read, each side's operations/s, latency, rows, server CPU per operation (/proc, the
#   server's process and its children) and the client's own CPU per operation (doc-bench's
#   threads: on 2 cores they share the machine with the server, so a client that costs more per
#   operation caps that side's rate), and Flin's rate over PostgreSQL's. A workload the
#   server refuses (DOC.INDEX or DOC.AGGREGATE before they exist) is printed FAILED, and the
#   script exits 1 at the end; ALLOW_UNINDEXED=1 runs Flin's k workloads without the index when
#   DOC.INDEX is refused (their lines say so).
# Every server is started here and stopped by its pid; doc-bench stops each run after SECONDS.
set -euo pipefail

ROUNDS=${ROUNDS:-1}
POLICIES=${POLICIES:-"always everysec"}
CONNECTIONS=${CONNECTIONS:-8}
DOCUMENTS=${DOCUMENTS:-100000}
INSERTS=${INSERTS:-20000}
OPERATIONS=${OPERATIONS:-50000}
AGGREGATIONS=${AGGREGATIONS:-20}
SECONDS_LIMIT=${SECONDS_LIMIT:-60}
WORKLOADS=${WORKLOADS:-dinsert,dinsert:100,dget,dfind,drange,dagg,dinc}
# Ports, for running beside another session's servers (its doc-compare.sh, say).
FLIN_PORT=${FLIN_PORT:-7420}
PG_PORT=${PG_PORT:-7421}
FLAGS=()
if [[ -n "${ALLOW_UNINDEXED:-}" ]]; then FLAGS+=(--allow-unindexed); fi

cd "$(dirname "$0")/.."
source benches/lib.sh
# Anything else on the ports would be measured in place of the servers this run starts, so
# refuse to start instead.
refuse_busy_ports doc-compare.sh "$FLIN_PORT" "$PG_PORT"
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1; }
if [[ -z "$(pg_bin)" ]]; then
    echo "installing postgresql" >&2
    apt-get install -y postgresql > /dev/null
fi
PG_BIN=$(pg_bin)
# PostgreSQL refuses to run as root: as root, run it as the postgres user (setpriv execs, so
# $! is the postmaster's pid).
AS_PG=()
if ((EUID == 0)); then AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
cargo build --release -q -p flin-server -p flin-benches --bin flin-server --bin doc-bench
BIN=${CARGO_TARGET_DIR:-target}/release
SCRATCH=$(mktemp -d /tmp/flin-doc-compare.XXXXXX)
chmod 755 "$SCRATCH" # the postgres user needs to reach its directory
cleanup() {
    stop_started
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# Fresh servers for each round and policy, so no run reads another's data.
start_servers() {
    local policy=$1 synchronous_commit
    case $policy in
        always) synchronous_commit=on ;;
        everysec) synchronous_commit=off ;;
        *) echo "doc-compare.sh: policy $policy has no PostgreSQL twin (always or everysec)" >&2; exit 2 ;;
    esac
    rm -rf "$SCRATCH"/{flin,pg}
    mkdir -p "$SCRATCH"/{flin,pg}
    if ((EUID == 0)); then chown postgres: "$SCRATCH/pg"; fi
    "${AS_PG[@]}" "$PG_BIN/initdb" -D "$SCRATCH/pg" -U postgres --auth=trust -E UTF8 --locale=C \
        > "$SCRATCH/initdb.log" 2>&1
    "${AS_PG[@]}" "$PG_BIN/postgres" -D "$SCRATCH/pg" -c listen_addresses=127.0.0.1 -c port="$PG_PORT" \
        -c unix_socket_directories="$SCRATCH/pg" -c fsync=on -c synchronous_commit=$synchronous_commit \
        -c shared_buffers=1GB -c max_wal_size=4GB > "$SCRATCH/pg.log" 2>&1 &
    PG=$!
    "$BIN/flin-server" --bind 127.0.0.1 --port "$FLIN_PORT" --data "$SCRATCH/flin" --fsync "$policy" \
        > "$SCRATCH/flin.log" 2>&1 &
    FLIN=$!
    PIDS+=("$PG" "$FLIN")
    wait_port "$FLIN_PORT" && wait_port "$PG_PORT"
    for _ in $(seq 60); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.5
    done
    echo "PostgreSQL: $("$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc \
        "SELECT version(), current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers')" | tr '|' ' ')"
    echo "Flin: $(head -1 "$SCRATCH/flin.log")"
}
stop_servers() {
    kill -INT "$PG" 2> /dev/null || true # fast shutdown
    kill "$FLIN" 2> /dev/null || true
    wait "$PG" "$FLIN" 2> /dev/null || true
}

echo "doc-compare: $(nproc) cores, $(uptime | sed 's/.*load/load/'), $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
FAILED=()
for round in $(seq "$ROUNDS"); do
    for policy in $POLICIES; do
        echo "== round $round, Flin --fsync $policy"
        start_servers "$policy"
        if ! "$BIN/doc-bench" --workload "$WORKLOADS" --connections "$CONNECTIONS" \
            --documents "$DOCUMENTS" --inserts "$INSERTS" --operations "$OPERATIONS" \
            --aggregations "$AGGREGATIONS" --seconds "$SECONDS_LIMIT" \
            --flin-port "$FLIN_PORT" --flin-pid "$FLIN" --postgres-port "$PG_PORT" --postgres-pid "$PG" \
            ${FLAGS[@]+"${FLAGS[@]}"}; then
            FAILED+=("round $round $policy")
        fi
        stop_servers
    done
done
if ((${#FAILED[@]})); then
    echo "doc-compare: workloads FAILED in: ${FAILED[*]} (the FAILED lines above say why)" >&2
    exit 1
fi
