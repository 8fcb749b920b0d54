#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole suite.
# The suite starts its own embedded PostgreSQL. Optional passes run when what they need is here
# (a PostgreSQL on 127.0.0.1:5432, a Redis on 127.0.0.1:6379) and say why when they skip.
# Every pass runs even when an earlier one fails; the summary at the end lists each pass and the
# exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]' || {
    echo "!! installing the project and its test dependencies failed" >&2
    exit 1
}

# The browser tests (tests/e2e) drive Debian's chromium: `playwright install` cannot download
# browsers here. Without the binary those tests skip, saying why.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium for the browser tests =="
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
        echo "!! chromium could not be installed: the browser tests will be skipped" >&2
    fi
fi

results=()
failed=0

run_pass() {  # run_pass NAME COMMAND...: run one pass, remember how it ended
    local name=$1
    shift
    echo "== $name =="
    local start=$SECONDS
    if "$@"; then
        results+=("passed   $name ($((SECONDS - start)) s)")
    else
        results+=("FAILED   $name ($((SECONDS - start)) s)")
        failed=1
    fi
}

skip_pass() {  # skip_pass NAME REASON
    echo "== $1: skipped, $2 =="
    results+=("skipped  $1: $2")
}

answers() {  # answers HOST PORT: is something listening there?
    python3 -c "import socket, sys; socket.create_connection(('$1', $2), timeout=1).close()" 2>/dev/null
}

free_port() {  # free_port: print a TCP port nobody listens on at 127.0.0.1
    python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

timescaledb_suite() {  # timescaledb_suite ARGS...: the suite on a scratch TimescaleDB server
    local dir url rc
    dir=$(mktemp -d /tmp/ka-timescaledb.XXXXXX) && chmod 755 "$dir" || return 1
    if ! url=$("$timescaledb/start-server.sh" "$dir/server" "$(free_port)" | tail -n 1); then
        echo "!! the TimescaleDB server did not start (see $dir/server/server.log)" >&2
        return 1
    fi
    env DATABASE_URL="$url" python3 -m pytest "$@"
    rc=$?
    "$timescaledb/start-server.sh" --stop "$dir/server"
    rm -rf "$dir"
    return "$rc"
}

run_pass "lint (ruff)" python3 -m ruff check src tests bench scripts
run_pass "types (mypy --strict)" python3 -m mypy
run_pass "suite on the embedded PostgreSQL" python3 -m pytest "$@"

# The project's CI machine keeps a TimescaleDB build next to the repository; a user's clone has
# none, so this pass is optional — but it says loudly why it did not run.
timescaledb="$(pwd)/../shared/timescaledb"
if [ ! -x "$timescaledb/start-server.sh" ]; then
    skip_pass "suite on TimescaleDB" "!! NOT RUN: no $timescaledb/start-server.sh (the TimescaleDB build lives only on the CI machine)"
elif [ "$(id -u)" -ne 0 ]; then
    skip_pass "suite on TimescaleDB" "!! NOT RUN: $timescaledb/start-server.sh must run as root"
else
    run_pass "suite on TimescaleDB ($timescaledb)" timescaledb_suite "$@"
fi

if [ -n "${DATABASE_URL:-}" ]; then
    skip_pass "database tests on 127.0.0.1:5432" "DATABASE_URL is set, so the suite above already ran on it"
elif answers 127.0.0.1 5432; then
    run_pass "database tests on the PostgreSQL at 127.0.0.1:5432" \
        env DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres" python3 -m pytest tests/integration/db -q
else
    skip_pass "database tests on 127.0.0.1:5432" "no PostgreSQL answers there"
fi

if [ -n "${REDIS_URL:-}" ]; then
    skip_pass "cache tests on Redis" "REDIS_URL is set, so the suite above already ran them on it"
elif answers 127.0.0.1 6379; then
    run_pass "cache tests on the Redis at 127.0.0.1:6379" \
        env REDIS_URL="redis://127.0.0.1:6379/15" python3 -m pytest tests/integration/api/test_redis_cache.py -q
else
    skip_pass "cache tests on Redis" "no Redis answers on 127.0.0.1:6379"
fi

echo
echo "== summary =="
printf '  %s\n' "${results[@]}"
exit "$failed"
