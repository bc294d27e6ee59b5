#!/usr/bin/env bash
# `make test`: the suite on SQLite, then again on a throwaway PostgreSQL database.
# PostgreSQL is found at MAILER_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432).
# In CI (CI=true) an unreachable PostgreSQL is an error; elsewhere it is reported and skipped.
# Arguments go to pytest, e.g. `--clock-offset=365d` (what `make test-clock-ahead` passes).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
export PATH="$BIN:$PATH"
pg_base="${MAILER_TEST_PG:-postgresql+psycopg://postgres@127.0.0.1:5432}"

# Any failing exit fails the script, "no tests ran" (5) included: a run that tested nothing
# must not pass for a green one.
run_pytest() {
  local status=0
  "$BIN/pytest" "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    echo "error: no tests ran" >&2
  fi
  return "$status"
}

echo "== tests on SQLite"
(unset MAILER_TEST_DATABASE_URL; run_pytest "$@")

db_name="mailer_test_$(date +%s)_$$"
if ! "$BIN/python" - "$pg_base" "$db_name" <<'PY'
import sys
from sqlalchemy import create_engine, text
base, name = sys.argv[1], sys.argv[2]
try:
    engine = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
except Exception as exc:
    print(f"cannot reach PostgreSQL at {base}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
then
  if [ "${CI:-}" = "true" ]; then
    echo "error: PostgreSQL is required in CI and could not be reached at $pg_base" >&2
    exit 1
  fi
  echo "warning: PostgreSQL not reachable; the PostgreSQL run was skipped" >&2
  exit 0
fi
drop_db() {
  "$BIN/python" - "$pg_base" "$db_name" <<'PY'
import sys
from sqlalchemy import create_engine, text
engine = create_engine(f"{sys.argv[1]}/postgres", isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(text(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)'))
PY
}
trap drop_db EXIT
echo "== tests on PostgreSQL ($db_name)"
MAILER_TEST_DATABASE_URL="$pg_base/$db_name" run_pytest "$@"
