#!/usr/bin/env bash
# `make bench`: install what the benchmarks need, run them all, write
# bench/results/latest.json and docs/benchmarks.md. Needs PostgreSQL and Redis on
# 127.0.0.1 (`make services` starts them); creates and removes its own database and keys.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PY=${BENCH_PYTHON:-.venv/bin/python}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v wrk >/dev/null; then
  echo "installing wrk"
  as_root apt-get update -qq && as_root apt-get install -y -qq wrk
fi
if ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing redis-tools"
  as_root apt-get update -qq && as_root apt-get install -y -qq redis-tools
fi

rm -f bench/results/*.tmp
echo "machine: $(nproc) cores, $(uname -m), $($PY -V), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" -m bench.ingest_http
"$PY" -m bench.ingest_stream
"$PY" -m bench.nearest
"$PY" -m bench.dispatch_solver
"$PY" -m bench.dispatch_quality
"$PY" -m bench.ingest_store
"$PY" -m bench.memory
"$PY" -m bench.soak
"$PY" -m bench.dispatch_latency
"$PY" -m bench.city_sim
"$PY" -m bench.report --runtime-s "$(( $(date +%s) - start ))"
echo "make bench took $(( $(date +%s) - start )) s"
