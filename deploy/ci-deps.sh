#!/bin/sh
# deploy/ci-deps.sh: system packages `make test` needs beyond Python, installed only when missing:
#   systemd            systemd-analyze verify/security of the units (tests/deploy; no PID 1 needed)
#   systemd-container  systemd-nspawn, to boot Debian with systemd as PID 1 (tests/system)
#   debootstrap        to build that Debian tree once (cached, see tests/system/rootfs.py)
#   mosquitto, openssl tests/forward (brokers of their own, test certificates)
#   chromium, chromium-driver  tests/console/test_browser.py (the console in a real browser)
# Quiet and idempotent; prints one line when it installs or cannot install.
set -u
# tests/forward start Mosquitto brokers of their own (TLS, restarts) and make test certificates:
# mosquitto, mosquitto_passwd (Debian: mosquitto) and openssl. Silent when present.
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
if ! has mosquitto || ! has mosquitto_passwd || ! has openssl; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "ci-deps: installing Debian's mosquitto and openssl packages (for tests/forward)"
        if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mosquitto openssl; } \
                >/tmp/streetnode-ci-deps-mqtt.log 2>&1; then
            echo "ci-deps: apt-get install mosquitto openssl failed (see /tmp/streetnode-ci-deps-mqtt.log)"
        fi
    else
        echo "ci-deps: mosquitto or openssl missing (sudo apt-get install mosquitto openssl): tests/forward will fail"
    fi
fi
# tests/console/test_browser.py drives Debian's chromium through its chromedriver (Selenium);
# nothing downloads a browser. Without them that test skips, saying why.
if ! has chromium || ! has chromedriver; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "ci-deps: installing Debian's chromium and chromium-driver (for tests/console)"
        if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium \
                chromium-driver; } >/tmp/streetnode-ci-deps-chromium.log 2>&1; then
            echo "ci-deps: apt-get install chromium chromium-driver failed (see /tmp/streetnode-ci-deps-chromium.log): the console's browser test will be skipped"
        fi
    else
        echo "ci-deps: chromium or chromedriver missing (sudo apt-get install chromium chromium-driver): the console's browser test will be skipped"
    fi
fi
missing=""
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
missing="${missing# }"
if [ -z "$missing" ]; then
    exit 0
fi
skipped="the unit checks in tests/deploy and the systemd system test in tests/system will be skipped"
if [ "$(id -u)" != 0 ]; then
    echo "ci-deps: missing $missing and not root: $skipped (sudo apt-get install $missing)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: missing $missing and no apt-get: $skipped"
    exit 0
fi
echo "ci-deps: installing Debian's $missing (for tests/deploy and tests/system)"
# shellcheck disable=SC2086
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends $missing; } >/tmp/streetnode-ci-deps.log 2>&1; then
    echo "ci-deps: apt-get install $missing failed (see /tmp/streetnode-ci-deps.log): $skipped"
fi
exit 0
