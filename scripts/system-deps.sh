#!/usr/bin/env bash
# Debian packages the tests need: Chromium (browser tests), PostgreSQL 15 (tests/postgres),
# curl (the serve smoke run). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)  # scripts/smoke-serve.sh
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)  # tests/postgres (POSTGRES)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing ${need[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "system-deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
