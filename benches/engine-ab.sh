#!/usr/bin/env bash
# A/B of the engine's criterion benchmarks between two commits, in one run: builds the bench
# binary at OLD (in a temporary git worktree) and at the working tree, then runs them
# alternately, ROUNDS rounds, and prints every figure and the ratio of the medians (new/old).
# On a shared machine the host's load moves single figures by 10-25%; alternating the two
# builds makes the ratio the thing to read.
#
#   benches/engine-ab.sh 5aabc98                      # every benchmark, 3 rounds
#   ROUNDS=5 FILTER='^put/|^batch_put/' benches/engine-ab.sh 5aabc98
#
# OLD may also be a path to an already built criterion binary (target/release/deps/engine-*).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=${1:?usage: benches/engine-ab.sh OLD_COMMIT_OR_BINARY}
ROUNDS=${ROUNDS:-3}
FILTER=${FILTER:-.}

work=$(mktemp -d)
cleanup() {
    if [ -d "$work/old" ]; then git worktree remove --force "$work/old" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# bench_binary DIR: builds DIR's engine bench, copies the binary to $work and prints its path.
bench_binary() {
    local dir=$1 name=$2 exe
    exe=$(cd "$dir" && cargo bench -p flin-benches --bench engine --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])')
    cp "$exe" "$work/$name"
    echo "$work/$name"
}

if [ -x "$OLD" ] && [ -f "$OLD" ]; then
    cp "$OLD" "$work/old-bin"
    old_bin=$work/old-bin
else
    git worktree add --detach "$work/old" "$OLD" >/dev/null 2>&1
    # The old tree builds into its own target directory, so the new one's is not disturbed.
    old_bin=$(CARGO_TARGET_DIR=$work/old-target bench_binary "$work/old" old-bin)
fi
new_bin=$(bench_binary . new-bin)

echo "engine-ab: old=$OLD new=$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty') rounds=$ROUNDS filter=$FILTER" >&2
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')" >&2

for round in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        bin=$work/$side-bin
        # Criterion prints "name  time: [...]" then "thrpt: [low mid high]"; keep the middle one.
        "$bin" --bench "$FILTER" 2>&1 | python3 -c '
import re, sys
side, rnd = sys.argv[1], sys.argv[2]
name = None
for line in sys.stdin:
    m = re.match(r"^(\S+/\S+)\s+time:", line) or re.match(r"^(\S+/\S+)$", line.strip())
    if m:
        name = m.group(1)
    if "thrpt:" in line and name and "%" not in line:
        values = re.findall(r"([\d.]+) (\w+)/s", line)
        if values:
            print(side, rnd, name, values[1][0], values[1][1] + "/s")
            name = None
' "$side" "$round" | tee -a "$work/figures"
    done
done

echo
python3 - "$work/figures" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
units = {}
for line in open(sys.argv[1]):
    side, _, name, value, unit = line.split()
    runs[name][side].append(float(value))
    units[name] = unit
print("| benchmark | old, each round | new, each round | new/old (medians) |")
print("|---|---|---|---|")
for name, sides in runs.items():
    old, new = sides["old"], sides["new"]
    if not old or not new:
        continue
    fmt = lambda xs: ", ".join("%.3g" % x for x in xs)
    print(f"| {name} ({units[name]}) | {fmt(old)} | {fmt(new)} | {statistics.median(new) / statistics.median(old):.2f} |")
EOF
