#!/usr/bin/env bash
# `make run`: migrate, load the catalogue on first start, then serve the web app and the worker
# together in the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAILER_ENV="${MAILER_ENV:-development}"
export PATH="$PWD/.venv/bin:$PATH"

mailer db upgrade
mailer import-films --if-empty data/films.json

pids=()
stop() {
  trap - INT TERM EXIT
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

host="${MAILER_HOST:-127.0.0.1}"
port="${MAILER_PORT:-5000}"
# Links in mail must point at this server.
export MAILER_BASE_URL="${MAILER_BASE_URL:-http://$host:$port}"
mailer run --host "$host" --port "$port" &
pids+=($!)
if mailer worker --help >/dev/null 2>&1; then
  mailer worker &
  pids+=($!)
fi
echo "mailer: web on http://$host:$port/ ; mail is written to ./instance/outbox (Ctrl-C stops)"
wait -n "${pids[@]}"
