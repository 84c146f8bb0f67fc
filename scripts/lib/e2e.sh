# shellcheck shell=bash
# Helpers shared by the end-to-end scripts (sourced, not run).

e2e_log() { printf '\n==> %s\n' "$*" >&2; }
e2e_fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# A TCP port nobody listens on right now.
e2e_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# e2e_wait_status URL STATUS SECONDS [PID]: polls until URL answers STATUS;
# fails early if PID (the server) has exited.
e2e_wait_status() {
    local url=$1 want=$2 seconds=$3 pid=${4:-} got=000 deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [ "$got" = "$want" ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            e2e_fail "$url: the server (pid $pid) exited before answering $want"
        fi
        sleep 0.2
    done
    e2e_fail "$url: expected HTTP $want within ${seconds}s, last answer $got"
}

# e2e_run_service BINARY PORT LOG [extra health probe command...]: starts the
# service on PORT, checks /health/live and /health/ready answer 200, runs the
# extra probe (if any), then stops it with SIGTERM and expects a clean exit.
e2e_run_service() {
    local binary=$1 port=$2 log=$3
    shift 3
    CHASSIS__HTTP__PORT=$port CHASSIS__HTTP__HOST=127.0.0.1 "$binary" >"$log" 2>&1 &
    local pid=$!
    # shellcheck disable=SC2064 # expand now: the pid is known now
    trap "kill $pid 2>/dev/null || true" EXIT
    e2e_wait_status "http://127.0.0.1:$port/health/live" 200 60 "$pid"
    e2e_wait_status "http://127.0.0.1:$port/health/ready" 200 30 "$pid"
    echo "GET /health/ready -> 200 ($(basename "$binary") on port $port)" >&2
    if [ $# -gt 0 ]; then
        CHASSIS__HTTP__PORT=$port "$@" || e2e_fail "probe \`$*\` failed against a ready service"
    fi
    kill -TERM "$pid"
    local status=0
    wait "$pid" || status=$?
    trap - EXIT
    if [ $status -ne 0 ]; then
        cat "$log" >&2
        e2e_fail "$(basename "$binary") exited with $status after SIGTERM (expected a graceful 0)"
    fi
}

# Keeps ~/.cargo's crates.io index and downloads but nothing of registries
# started by a test: every run gets a fresh CARGO_HOME (same-version crates
# republished with new content must not be taken from a stale cache).
e2e_isolated_cargo_home() {
    local home=$1 real=${CARGO_HOME:-$HOME/.cargo} kind d
    mkdir -p "$home/registry"
    for kind in index cache src; do
        mkdir -p "$home/registry/$kind"
        for d in "$real/registry/$kind"/index.crates.io-*; do
            [ -e "$d" ] && ln -s "$d" "$home/registry/$kind/"
        done
    done
    [ -f "$real/config.toml" ] && cp "$real/config.toml" "$home/config.toml"
    return 0
}
