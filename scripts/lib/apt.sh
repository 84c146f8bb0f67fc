# shellcheck shell=bash
# Installing Debian/Ubuntu packages from the scripts (sourced, not run).
# Callers define log().

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# apt_install PACKAGE...: installs with apt-get (index refreshed once per
# run); fails with the list of packages on a machine without apt-get.
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "not a Debian/Ubuntu machine: install these packages by hand: $*"
    return 1
  fi
  log "installing $*"
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
