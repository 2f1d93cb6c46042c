#!/bin/bash
# Profile guahao's API workers during a release rush (issue 11): runs `guahao bench rush`
# without the references and records each uvicorn worker with py-spy (200 Hz, 12 s, raw
# collapsed stacks), then prints where the CPU went with tools/pyspy_summary.py.
# py-spy is not a dependency: `.venv/bin/pip install py-spy` first. Needs ptrace (root here).
#   tools/profile_rush.sh OUT_DIR            PATIENTS=5000 EXTRA="--redis" tools/profile_rush.sh OUT
set -u
cd "$(dirname "$0")/.."
out=${1:-/tmp/guahao-profile}
mkdir -p "$out"
.venv/bin/guahao bench rush --no-references --patients "${PATIENTS:-5000}" ${EXTRA:-} > "$out/bench.txt" 2> "$out/bench.err" &
bench=$!
for _ in $(seq 1 240); do grep -q "published schedule" "$out/bench.err" 2>/dev/null && break; sleep 0.5; done
master=$(pgrep -f "uvicorn guahao.asgi:app" | head -1)
for pid in $(pgrep -P "$master"); do  # the workers (and uvicorn's resource tracker)
  .venv/bin/py-spy record --nonblocking -r 200 -d 12 -f raw -o "$out/worker-$pid.txt" -p "$pid" >/dev/null 2>&1 &
done
wait $bench
sleep 1
cat "$out/bench.txt"
.venv/bin/python tools/pyspy_summary.py "$out"/worker-*.txt | head -80
