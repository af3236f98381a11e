#!/usr/bin/env bash
# Make sure nginx and redis-server binaries exist for the multi-replica test (deploy/replicas.py);
# install Debian's packages when missing. Starts nothing: the test runs its own processes on 127.0.0.1.
set -euo pipefail
exec bash "$(dirname "$0")/ensure_packages.sh" nginx:nginx-light redis-server:redis-server
