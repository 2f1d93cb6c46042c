#!/bin/bash
# Profile guahao's API workers during the browse storm (issue 11): runs `guahao bench browse`
# and records each uvicorn worker of its guahao phase with py-spy (200 Hz, 15 s, raw collapsed
# stacks), then prints where the CPU went (tools/pyspy_summary.py). py-spy is not a
# dependency: `.venv/bin/pip install py-spy` first. Needs ptrace (root here).
#   tools/profile_browse.sh OUT_DIR        EXTRA="--pollers 200" tools/profile_browse.sh OUT
set -u
cd "$(dirname "$0")/.."
out=${1:-/tmp/guahao-profile-browse}
mkdir -p "$out"
.venv/bin/guahao bench browse ${EXTRA:-} > "$out/bench.txt" 2> "$out/bench.err" &
bench=$!
for _ in $(seq 1 240); do grep -q "pollers from T0" "$out/bench.err" 2>/dev/null && break; sleep 0.5; done
sleep 3
master=$(pgrep -f "uvicorn guahao.asgi:app" | head -1)
for pid in $(pgrep -P "$master"); do
  .venv/bin/py-spy record --nonblocking -r 200 -d 15 -f raw -o "$out/worker-$pid.txt" -p "$pid" >/dev/null 2>&1 &
done
wait $bench
sleep 1
cat "$out/bench.txt"
.venv/bin/python tools/pyspy_summary.py "$out"/worker-*.txt | head -100
