#!/usr/bin/env bash
# Fresh set-up time: clone this repository's HEAD into a temporary directory (with ../shared
# linked beside it), point HOME at an empty directory (no pip, npm or sprachbund-router cache),
# time ./setup.sh and then the README's first command, and append the run to
# benchmarks/results/setup_time.json. Run it with nothing else on the machine:
#     bash benchmarks/setup_time.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/main"
ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
mkdir "$work/home"
cd "$work/main"
start=$(date +%s)
HOME="$work/home" ./setup.sh > "$work/setup.log" 2>&1 || { tail -20 "$work/setup.log"; exit 1; }
setup=$(( $(date +%s) - start ))
start=$(date +%s)
HOME="$work/home" .venv/bin/sbr retrieve --queries sprachbund_router/examples/queries.txt \
  --corpus sprachbund_router/examples/corpus.txt --aligned > "$work/retrieve.log" 2>&1
first=$(( $(date +%s) - start ))
build=$(grep -o "router written to .* in [0-9]*s" "$work/setup.log" | grep -o "[0-9]*s$" | tr -d s || echo null)
echo "setup.sh: ${setup} s (router build ${build} s); first command: ${first} s"
cd "$repo" && "$repo/.venv/bin/python" - "$setup" "$build" "$first" "$(git -C "$repo" rev-parse --short HEAD)" <<'PY'
import json, sys, time
from pathlib import Path
from benchmarks.machine import describe
setup, build, first, commit = sys.argv[1:]
path = Path("benchmarks/results/setup_time.json")
record = json.loads(path.read_text()) if path.is_file() else {"runs": []}
record.setdefault("runs", []).append({"commit": commit, "date": time.strftime("%Y-%m-%d"), "machine": describe(),
                                      "setup_seconds": int(setup), "router_build_seconds": None if build == "null" else int(build),
                                      "first_command_seconds": int(first)})
record.setdefault("command", "bash benchmarks/setup_time.sh")
path.write_text(json.dumps(record, indent=1) + "\n")
PY
