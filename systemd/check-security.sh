#!/usr/bin/env bash
# Checks the systemd units (the daemon, the web server, the user unit) offline: `systemd-analyze verify` (syntax, known directives) and
# `systemd-analyze security --offline=true` (hardening). Fails when a system unit's
# overall exposure is above MAX_EXPOSURE (1.5; DESIGN asks 2.0 or lower). The user unit's
# exposure is printed for information only: a user manager cannot apply the mount
# namespace options, so it cannot score as low.
set -euo pipefail
cd "$(dirname "$0")"
MAX_EXPOSURE="${MAX_EXPOSURE:-1.5}"
system_unit=hillsync.service
web_unit=hillsync-web.service
user_unit=user/hillsync.service

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "check-security: systemd-analyze not found; skipping the unit checks"
  exit 0
fi
version=$(systemd-analyze --version | awk 'NR==1 {print $2}')
echo "check-security: systemd $version"

# verify wants ExecStart's binary to exist; the install path is not on a CI machine, so
# check copies whose ExecStart points at an existing program.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/user"
sed 's#^ExecStart=.*#ExecStart=/bin/true run#' "$system_unit" >"$tmp/hillsync.service"
sed 's#^ExecStart=.*#ExecStart=/bin/true run#' "$user_unit" >"$tmp/user/hillsync.service"
sed 's#^ExecStart=.*#ExecStart=/bin/true serve#' "$web_unit" >"$tmp/hillsync-web.service"
# verify exits 0 on an unknown or misspelt key, only warning "FILE:LINE: Unknown key ...":
# any warning about the unit file counts as a failure.
if out=$(systemd-analyze verify "$tmp/hillsync.service" 2>&1) \
  && ! grep -q 'hillsync.service:[0-9]' <<<"$out"; then
  echo "check-security: verify $system_unit: ok"
else
  echo "$out" | sed "s#$tmp/##g"
  echo "check-security: verify $system_unit FAILED" >&2
  exit 1
fi
if out=$(systemd-analyze verify "$tmp/hillsync-web.service" 2>&1) \
  && ! grep -q 'hillsync-web.service:[0-9]' <<<"$out"; then
  echo "check-security: verify $web_unit: ok"
else
  echo "$out" | sed "s#$tmp/##g"
  echo "check-security: verify $web_unit FAILED" >&2
  exit 1
fi
if out=$(systemd-analyze verify --user "$tmp/user/hillsync.service" 2>&1); then
  echo "check-security: verify $user_unit: ok"
elif grep -qiE 'manager|runtime|bus|XDG_RUNTIME_DIR|No such device' <<<"$out"; then
  # `verify --user` needs a user manager's runtime directory, absent in containers.
  echo "check-security: verify $user_unit skipped (no user manager here)"
else
  echo "$out" | sed "s#$tmp/##g"
  echo "check-security: verify $user_unit FAILED" >&2
  exit 1
fi

if ! systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
  echo "check-security: systemd $version has no 'security --offline' (needs 250+); skipping the exposure check"
  exit 0
fi

exposure() {
  # The last line reads "→ Overall exposure level for hillsync.service: 1.2 OK 🙂".
  systemd-analyze security --offline=true "$1" 2>&1 \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -n 1
}

system_exposure=$(exposure "$system_unit")
if [ -z "$system_exposure" ]; then
  systemd-analyze security --offline=true "$system_unit" >&2 || true
  echo "check-security: could not read the exposure of $system_unit" >&2
  exit 1
fi
user_exposure=$(exposure "$user_unit")
echo "check-security: $user_unit exposure ${user_exposure:-unknown} (information only)"
if awk -v e="$system_exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e > m) }'; then
  systemd-analyze security --offline=true "$system_unit" | grep -v '✓' >&2 || true
  echo "check-security: $system_unit exposure $system_exposure is above $MAX_EXPOSURE" >&2
  exit 1
fi
echo "check-security: $system_unit exposure $system_exposure (at most $MAX_EXPOSURE): ok"
web_exposure=$(exposure "$web_unit")
if [ -z "$web_exposure" ] || awk -v e="$web_exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e > m) }'; then
  systemd-analyze security --offline=true "$web_unit" | grep -v '✓' >&2 || true
  echo "check-security: $web_unit exposure ${web_exposure:-unknown} is above $MAX_EXPOSURE" >&2
  exit 1
fi
echo "check-security: $web_unit exposure $web_exposure (at most $MAX_EXPOSURE): ok"
