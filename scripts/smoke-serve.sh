#!/usr/bin/env bash
# The README's first command on this clone: `make serve` comes up, serves a tenant's fetch in
# its isolate, runs the instance it created to completion, and stops cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
port=$((20000 + RANDOM % 20000))
data=$(mktemp -d)
log="$data/serve.log"
setsid make serve SERVE_ARGS="--port $port --store sqlite:///$data/state.db" >"$log" 2>&1 &
pid=$!  # its own process group: stop it (make and the server) with one signal
stop() { kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap stop EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "smoke-serve: make serve exited"; cat "$log"; exit 1; }
  sleep 0.5
done
id=$(curl -fsS -X POST "http://127.0.0.1:$port/t/etl/runs" -d '{"flaky_attempts": 1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 120); do
  status=$(curl -fsS "http://127.0.0.1:$port/t/etl/runs/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))')
  [ "$status" = complete ] && { echo "smoke-serve: make serve ran etl instance $id to complete"; exit 0; }
  [ "$status" = errored ] && { echo "smoke-serve: instance errored"; cat "$log"; exit 1; }
  sleep 0.5
done
echo "smoke-serve: instance $id did not complete (last status $status)"; cat "$log"; exit 1
