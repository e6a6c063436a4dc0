#!/usr/bin/env bash
# Install the Debian packages PELBIOT's build and tests use, if they are missing.
#   system-deps.sh        broker, its clients, and chromium for the browser tests
#   system-deps.sh node   only Node.js and npm (to build the dashboard)
set -euo pipefail
need=()
if [ "${1:-}" = "node" ]; then
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
else
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  [ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
