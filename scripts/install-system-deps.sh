#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing: PostgreSQL (the catalog
# suite runs against a real server), Chromium (browser tests), poppler-utils (PDF reports checked
# as images and text) and nginx (the load balancer in
# front of gallery replicas; the tests run their own, never the system service). Idempotent and
# quiet when everything is already there. Needs root or passwordless sudo for apt-get.
set -euo pipefail

want=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || want+=(nginx)
fc-list 2>/dev/null | grep -qi dejavu || want+=(fonts-dejavu-core)
command -v pdftoppm >/dev/null 2>&1 || want+=(poppler-utils)

if [ ${#want[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
