#!/usr/bin/env bash
# Make sure nginx and redis-server binaries exist for the multi-replica test (deploy/replicas.py);
# install Debian's packages when missing (as root, or with sudo). Starts nothing: the test runs its
# own processes on 127.0.0.1.
set -euo pipefail
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
if [[ ${#missing[@]} == 0 ]]; then
  echo "nginx, redis-server: present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "cannot install ${missing[*]}: no apt-get (install them, or the multi-replica test is skipped)" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "installing ${missing[*]} (Debian packages)"
# policy-rc.d 101: the package must not start a system nginx on port 80
if [ -z "$SUDO" ] && [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
