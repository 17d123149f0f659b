#!/usr/bin/env bash
# Install the Debian packages simgate's tests (and, with "bench", its benchmarks) use,
# when they are missing and we are root. Otherwise say what is missing and carry on:
# the tests that need them will then fail or skip with a message naming the package.
set -euo pipefail

want=(chromium nodejs npm)
[ "${1:-}" = "bench" ] && want=(wrk)

missing=()
for pkg in "${want[@]}"; do
  case "$pkg" in
    chromium) [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    nodejs) command -v node >/dev/null 2>&1 || missing+=(nodejs) ;;  # the Action Cable client test
    npm) command -v npm >/dev/null 2>&1 || missing+=(npm) ;;
    wrk) command -v wrk >/dev/null 2>&1 || missing+=(wrk) ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
fi
