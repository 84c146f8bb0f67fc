# shellcheck shell=bash
# Retrying a download from a package registry (sourced, not run). A
# registry, or the proxy in front of it, answers 502 now and then for a
# minute or two (seen: npm, E502, in a clean-root run); the clients' own
# retries give up within that. Callers define log().

# retry WHAT COMMAND...: runs COMMAND up to RETRY_ATTEMPTS times (default 3),
# 30 s and then 90 s apart; fails with the last exit status.
retry() {
  local what=$1 attempt=1 status max=${RETRY_ATTEMPTS:-3}
  shift
  while true; do
    "$@" && return 0
    status=$?
    if [ "$attempt" -ge "$max" ]; then
      log "$what failed $attempt times (exit $status); giving up"
      return "$status"
    fi
    local wait=$((attempt == 1 ? 30 : 90))
    log "$what failed (exit $status); trying again in ${wait}s"
    sleep "$wait"
    attempt=$((attempt + 1))
  done
}
