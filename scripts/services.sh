#!/usr/bin/env bash
# Start or check the services the test suite needs. Under CI=true a missing service fails the run.
set -uo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! pg_up; then
  echo "services: PostgreSQL not answering on 127.0.0.1:5432, trying to start it"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
fi

if pg_up; then
  echo "services: PostgreSQL ready on 127.0.0.1:5432"
elif [ "${CI:-}" = "true" ]; then
  echo "services: PostgreSQL is required under CI and could not be started" >&2
  exit 1
else
  echo "services: PostgreSQL unavailable; PostgreSQL tests will be skipped (not under CI)"
fi

# Chromium for the portal's browser tests (Debian's package; Playwright never downloads one).
if ! command -v chromium >/dev/null 2>&1; then
  echo "services: installing Debian's chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 || true
fi
if command -v chromium >/dev/null 2>&1; then
  echo "services: chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
elif [ "${CI:-}" = "true" ]; then
  echo "services: chromium is required under CI and could not be installed" >&2
  exit 1
else
  echo "services: chromium unavailable; browser tests will be skipped (not under CI)"
fi
