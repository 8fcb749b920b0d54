#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole suite.
# The suite starts its own embedded PostgreSQL. When a PostgreSQL answers on 127.0.0.1:5432
# (as on the CI machines), the database tests run a second time against it.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

python3 -m ruff check src tests bench
python3 -m mypy
python3 -m pytest "$@"

if [ -z "${DATABASE_URL:-}" ] && python3 - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
except OSError:
    sys.exit(1)
PY
then
    echo "== database tests against the PostgreSQL on 127.0.0.1:5432 =="
    DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres" python3 -m pytest tests/integration/db -q
fi
