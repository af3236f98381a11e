#!/usr/bin/env bash
# Usage: ensure_packages.sh COMMAND:DEBIAN_PACKAGE ...   (COMMAND may be a library's soname, lib*.so*)
# Install each Debian package whose command (or library) is missing (as root, or with sudo), without
# starting its service. Never fails: without apt-get it says what is missing, and the tests needing it
# are skipped.
set -euo pipefail
missing=()
for pair in "$@"; do
  cmd="${pair%%:*}" pkg="${pair#*:}"
  if [[ $cmd == lib*.so* ]]; then
    /sbin/ldconfig -p 2>/dev/null | grep -qF "$cmd" || missing+=("$pkg")
  else
    command -v "$cmd" >/dev/null || [[ -x "/usr/sbin/$cmd" ]] || missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} == 0 ]]; then
  echo "present: ${*%%:*}"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "cannot install ${missing[*]}: no apt-get (install them, or the tests that need them are skipped)" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "installing ${missing[*]} (Debian packages)"
# policy-rc.d 101: a package must not start its system service (nginx on 80, prometheus on 9090)
if [ -z "$SUDO" ] && [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || \
  echo "could not install ${missing[*]}; the tests that need them are skipped" >&2
