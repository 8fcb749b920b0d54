#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole suite.
# The suite starts its own embedded PostgreSQL. When a PostgreSQL answers on 127.0.0.1:5432
# (as on the CI machines), the database tests run a second time against it.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

# The browser tests (tests/e2e) drive Debian's chromium: `playwright install` cannot download
# browsers here. Without the binary those tests skip, saying why.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium for the browser tests =="
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
        echo "!! chromium could not be installed: the browser tests will be skipped" >&2
    fi
fi

python3 -m ruff check src tests bench
python3 -m mypy
python3 -m pytest "$@"

answers() {  # answers HOST PORT: is something listening there?
    python3 -c "import socket, sys; socket.create_connection(('$1', $2), timeout=1).close()" 2>/dev/null
}

if [ -z "${DATABASE_URL:-}" ] && answers 127.0.0.1 5432; then
    echo "== database tests against the PostgreSQL on 127.0.0.1:5432 =="
    DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres" python3 -m pytest tests/integration/db -q
fi

if [ -z "${REDIS_URL:-}" ] && answers 127.0.0.1 6379; then
    echo "== cache tests against the Redis on 127.0.0.1:6379 =="
    REDIS_URL="redis://127.0.0.1:6379/15" python3 -m pytest tests/integration/api/test_redis_cache.py -q
fi
