#!/bin/sh
# deploy/ci-deps.sh: system packages `make test` needs beyond Python, installed only when missing.
# Debian's systemd, for `systemd-analyze verify/security` in tests/deploy (it works without
# systemd running as PID 1).  Quiet; prints one line when it installs or cannot install.
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
if command -v systemd-analyze >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ci-deps: systemd-analyze missing and not root: the unit checks in tests/deploy will be skipped (sudo apt-get install systemd)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: systemd-analyze missing and no apt-get: the unit checks in tests/deploy will be skipped"
    exit 0
fi
echo "ci-deps: installing Debian's systemd package (for systemd-analyze)"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd; } \
    >/tmp/streetnode-ci-deps.log 2>&1; then
    echo "ci-deps: apt-get install systemd failed (see /tmp/streetnode-ci-deps.log): unit checks will be skipped"
fi
exit 0
