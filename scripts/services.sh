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
  (apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 || true
fi
if command -v chromium >/dev/null 2>&1; then
  echo "services: chromium $(chromium --version 2>/dev/null | awk '{print $2}')"
elif [ "${CI:-}" = "true" ]; then
  echo "services: chromium is required under CI and could not be installed" >&2
  exit 1
else
  echo "services: chromium unavailable; browser tests will be skipped (not under CI)"
fi

# Node.js and npm: the OpenID provider of the federated sign-in tests and axe-core run under it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "services: installing Debian's nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  (apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends nodejs npm) >/dev/null 2>&1 || true
fi

# axe-core for the portal's accessibility checks (tests/integration/portal/axe_check.py pins it).
AXE_DIR="$(cd "$(dirname "$0")/.." && pwd)/test-output/axe"
AXE_VERSION=$(sed -n 's/^AXE_VERSION = "\(.*\)"$/\1/p' "$(dirname "$0")/../tests/integration/portal/axe_check.py")
if [ ! -f "$AXE_DIR"/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$AXE_DIR"
  (cd "$AXE_DIR" && npm install --no-audit --no-fund --silent "axe-core@${AXE_VERSION}") \
    >/dev/null 2>&1 || echo "services: npm install axe-core@${AXE_VERSION} failed"
fi
if [ -f "$AXE_DIR"/node_modules/axe-core/axe.min.js ]; then
  echo "services: axe-core ready in test-output/axe"
elif [ "${CI:-}" = "true" ]; then
  echo "services: axe-core is required under CI and could not be installed" >&2
  exit 1
else
  echo "services: axe-core unavailable; accessibility checks will be skipped (not under CI)"
fi

# oidc-provider, the real OpenID provider of the federated sign-in tests (tests/integration/portal/oidc_op.py).
OP_DIR="$(cd "$(dirname "$0")/.." && pwd)/test-output/op"
if [ ! -f "$OP_DIR"/node_modules/oidc-provider/package.json ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$OP_DIR"
  [ -f "$OP_DIR"/package.json ] || echo '{"name": "op", "private": true}' > "$OP_DIR"/package.json
  (cd "$OP_DIR" && npm install --no-audit --no-fund --silent "oidc-provider@9") \
    >/dev/null 2>&1 || echo "services: npm install oidc-provider@9 failed"
fi
if [ -f "$OP_DIR"/node_modules/oidc-provider/package.json ]; then
  echo "services: oidc-provider ready in test-output/op"
elif [ "${CI:-}" = "true" ]; then
  echo "services: oidc-provider is required under CI and could not be installed" >&2
  exit 1
else
  echo "services: oidc-provider unavailable; federated sign-in tests will be skipped (not under CI)"
fi
