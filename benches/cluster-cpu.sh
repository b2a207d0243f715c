#!/usr/bin/env bash
# Server CPU per SET of a 3-node cluster, per node, for A/B comparisons of server builds on a
# shared machine (where wall-clock rates are too noisy to compare; docs/benchmarks.md,
# "Cluster (issue 14)"). Starts three nodes of SERVER_BIN on 127.0.0.1:BASEPORT..+2 (cluster
# ports +10000, fresh data directories), finds the leader, runs flin-bench SET (RESP, 50
# connections, 3-byte values, a 10^6 keyspace, PIPELINE deep, DURATION seconds) against it,
# and prints the rate and the CPU (user + system, /proc/<pid>/stat) per SET of the leader, of
# its raft thread alone, and of each follower. PERF=prefix also records `perf record -e
# cpu-clock -g` of the leader and a follower (prefix.leader, prefix.follower). Every process
# is stopped by its pid. "switches/SET" counts the context switches (voluntary and not) of
# every thread of the three nodes, per SET. THREADS=1 also prints, per node and thread name, the
# CPU and context switches per SET. SERVER_ARGS adds flags to every node (e.g. "--threads 1");
# WARM=S runs S seconds of plain SETs first, unmeasured.
#
#   benches/cluster-cpu.sh SERVER_BIN POLICY PIPELINE DURATION BASEPORT [LABEL]
#   benches/cluster-cpu.sh target/release/flin-server everysec 32 8 7600 new
# the leader, prints rate and CPU us per SET for the leader and each follower.
set -euo pipefail
BIN=$1; POLICY=$2; PIPE=$3; DUR=$4; BASE=$5; LABEL=${6:-}
BENCH=${CARGO_TARGET_DIR:-target}/release/flin-bench
DIR=$(mktemp -d /tmp/flin-cluster-cpu.XXXXXX)
PIDS=()
PERFPIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
members="1=127.0.0.1:$BASE,2=127.0.0.1:$((BASE+1)),3=127.0.0.1:$((BASE+2))"
for id in 1 2 3; do
  "$BIN" --bind 127.0.0.1 --port $((BASE+id-1)) --admin-port 0 --data "$DIR/n$id" --node-id $id --cluster "$members" --fsync "$POLICY" ${SERVER_ARGS:-} > "$DIR/n$id.log" 2>&1 &
  PIDS+=($!)
done
info() { python3 - "$1" << 'PY' 2>/dev/null || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
data = b""
while True:
    c = s.recv(65536); data += c
    h, _, r = data.partition(b"\r\n")
    if not c or (h.startswith(b"$") and len(r) >= int(h[1:]) + 2) or h.startswith(b"-"): break
print(data.decode(errors="replace").replace("\r", ""))
PY
}
LEADER=""
for _ in $(seq 300); do
  for id in 1 2 3; do
    if info $((BASE+id-1)) | grep -q '^accepting_writes:1'; then LEADER=$id; break 2; fi
  done
  sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader"; exit 1; }
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
# Context switches (voluntary + involuntary) of every thread of a process.
switches() { local t s=0; for t in /proc/$1/task/*; do s=$((s + $(awk '/ctxt_switches/ {n += $2} END {print n}' $t/status))); done; echo $s; }
raft_ticks() { local t s=0; for t in /proc/$1/task/*; do [ "$(cat $t/comm)" = flin-raft ] && s=$((s + $(awk '{print $14 + $15}' $t/stat))); done; echo $s; }
# One line per thread: node index, thread name, CPU ticks, context switches.
threads() { local i t; for i in 0 1 2; do for t in /proc/${PIDS[$i]}/task/*; do
  echo "$i $(tr ' ' _ < $t/comm) $(awk '{print $14 + $15}' $t/stat) $(awk '/ctxt_switches/ {n += $2} END {print n}' $t/status)"
done; done; }
# WARM=S: a plain load of S seconds first, not measured (cluster-compare.sh measures the
# pipelined load right after the plain one, on the same nodes).
if [ -n "${WARM:-}" ]; then
  "$BENCH" -p $((BASE+LEADER-1)) --protocol resp -t set -c 50 -d 3 -r 1000000 -n 100000000 --duration "$WARM" --json -q > /dev/null
fi
[ -n "${THREADS:-}" ] && threads > "$DIR/threads.before"
declare -a before after
sw_before=0; for i in 0 1 2; do before[$i]=$(ticks ${PIDS[$i]}); sw_before=$((sw_before + $(switches ${PIDS[$i]}))); done
rb=$(raft_ticks ${PIDS[$((LEADER-1))]})
PARGS=(); [ "$PIPE" -gt 1 ] && PARGS=(-P "$PIPE")
if [ -n "${PERF:-}" ]; then
  LPID=${PIDS[$((LEADER-1))]}; FPID=${PIDS[$((LEADER % 3))]}
  (sleep 1; perf record -e cpu-clock -g -p "$LPID" -o "$PERF.leader" -- sleep $((DUR-2)) >/dev/null 2>&1) &
  PERFPIDS+=($!)
  (sleep 1; perf record -e cpu-clock -g -p "$FPID" -o "$PERF.follower" -- sleep $((DUR-2)) >/dev/null 2>&1) &
  PERFPIDS+=($!)
fi
json=$("$BENCH" -p $((BASE+LEADER-1)) --protocol resp -t set -c 50 -d 3 -r 1000000 -n 100000000 --duration "$DUR" --json -q "${PARGS[@]}")
sw_after=0; for i in 0 1 2; do after[$i]=$(ticks ${PIDS[$i]}); sw_after=$((sw_after + $(switches ${PIDS[$i]}))); done
ra=$(raft_ticks ${PIDS[$((LEADER-1))]})
[ -n "${THREADS:-}" ] && threads > "$DIR/threads.after"
[ ${#PERFPIDS[@]} -gt 0 ] && wait "${PERFPIDS[@]}" 2>/dev/null || true
python3 - "$json" "$LEADER" "${before[@]}" "${after[@]}" "$LABEL $POLICY P$PIPE" $((ra - rb)) $((sw_after - sw_before)) << 'PY'
import json, sys
r = json.loads(sys.argv[1])["results"][0]
leader = int(sys.argv[2]) - 1
b = list(map(int, sys.argv[3:6])); a = list(map(int, sys.argv[6:9]))
n = max(r["requests"], 1)
us = [(a[i] - b[i]) * 1e4 / n for i in range(3)]
fol = [us[i] for i in range(3) if i != leader]
print("%s: %.0f SET/s  leader %.2f us/SET (raft thread %.2f)  followers %.2f %.2f  total %.2f  switches/SET %.2f" % (sys.argv[9], r["keys_per_sec"], us[leader], int(sys.argv[10]) * 1e4 / n, fol[0], fol[1], sum(us), int(sys.argv[11]) / n))
PY
if [ -n "${THREADS:-}" ]; then
  python3 - "$DIR/threads.before" "$DIR/threads.after" "$json" "$LEADER" << 'PY'
import collections, json, sys
def load(path):
    d = collections.defaultdict(lambda: [0, 0])
    for line in open(path):
        node, name, cpu, sw = line.split()
        v = d[(int(node), name)]
        v[0] += int(cpu); v[1] += int(sw)
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
n = max(json.loads(sys.argv[3])["results"][0]["requests"], 1)
leader = int(sys.argv[4]) - 1
print("node       thread            us/SET  switches/SET")
for key in sorted(a):
    d = [a[key][i] - b.get(key, [0, 0])[i] for i in range(2)]
    if d[0] == 0 and d[1] * 1000 < n:
        continue
    role = "leader" if key[0] == leader else "follower%d" % (key[0] + 1)
    print("%-10s %-16s %7.2f %13.3f" % (role, key[1], d[0] * 1e4 / n, d[1] / n))
PY
fi
