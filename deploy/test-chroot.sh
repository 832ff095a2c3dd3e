#!/usr/bin/env bash
# deploy/test-chroot.sh: the slow end-to-end test of deploy/install.sh (minutes, not in `make test`).
#
# Makes a minimal Debian with debootstrap (cached under $STREETNODE_CHROOT_DIR, default
# /var/tmp/streetnode-chroot), copies it fresh for every run, and inside it via chroot:
#   0. checks that a node without network for apt fails early (exit 69) and changes nothing,
#   1. runs the whole installer as on a Pi (apt, user, venv + pip, config, key, unit),
#   2. runs it again and expects "0 changes"; installs systemd with deploy/ci-deps.sh and runs
#      systemd-analyze verify/security on the unit as installed,
#   3. runs `streetnode diag --emulate` (when this version has diag),
#   4. upgrades over a non-empty buffer and checks it stays byte-identical,
#   5. --uninstall keeps config/key/buffer; --uninstall --purge removes them and the user.
# The Debian mirror is the one this machine's apt uses (/etc/apt/sources.list*).
# Usage: sudo deploy/test-chroot.sh [SUITE]     (SUITE: bookworm (default) or trixie)
#        STREETNODE_CHROOT_SRC=/path/to/other/checkout: install that checkout's committed package
#        (e.g. a branch with diag) with this checkout's installer.
# Exit: 0 all steps passed, 1 a step failed, 69 debootstrap/mirror unavailable, 77 not root.
set -euo pipefail

SUITE="${1:-bookworm}"
WORK="${STREETNODE_CHROOT_DIR:-/var/tmp/streetnode-chroot}"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$WORK/base-$SUITE"
TARGET="$WORK/run-$SUITE"
FAILS=0

say() { echo "test-chroot: $*"; }
die() { local c="$1"; shift; echo "test-chroot: error: $*" >&2; exit "$c"; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

[[ $EUID -eq 0 ]] || die 77 "must run as root (debootstrap and chroot)"
command -v debootstrap >/dev/null || die 69 "debootstrap not installed (apt-get install debootstrap)"

# the Debian mirror this machine already uses (deb822 URIs: or one-line deb entries)
mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/) { print $i; exit } }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*debian\/?$/) { print $i; exit } }' "$f")"
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    return 1
}

MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT

bind() { mkdir -p "$TARGET$1"; mount --bind "$1" "$TARGET$1"; MOUNTS+=("$TARGET$1"); }

# pip inside the chroot uses this machine's index settings: its PIP_* variables and CA bundle
CHROOT_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
for v in PIP_INDEX_URL PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK; do
    [[ -n "${!v:-}" ]] && CHROOT_ENV+=("$v=${!v}")
done
HOST_CA="${PIP_CERT:-${SSL_CERT_FILE:-}}"
[[ -n "$HOST_CA" && -f "$HOST_CA" ]] && CHROOT_ENV+=(PIP_CERT=/etc/streetnode-test-ca.pem)
in_chroot() { chroot "$TARGET" /usr/bin/env -i "${CHROOT_ENV[@]}" "$@"; }

# ---------------------------------------------------------------- the Debian tree
if [[ ! -f "$BASE/.streetnode-debootstrap-ok" ]]; then
    MIRROR="$(mirror)" || die 69 "no Debian mirror found in /etc/apt/sources.list*"
    say "debootstrap $SUITE from $MIRROR into $BASE (a few minutes)"
    rm -rf "$BASE"
    mkdir -p "$WORK"
    debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR" >"$WORK/debootstrap-$SUITE.log" 2>&1 \
        || die 69 "debootstrap failed, see $WORK/debootstrap-$SUITE.log"
    touch "$BASE/.streetnode-debootstrap-ok"
else
    say "reusing the debootstrap tree $BASE"
fi
say "fresh copy -> $TARGET"
rm -rf "$TARGET"
cp -a "$BASE" "$TARGET"
mount -t proc proc "$TARGET/proc"; MOUNTS+=("$TARGET/proc")
mount -t sysfs sys "$TARGET/sys"; MOUNTS+=("$TARGET/sys")
bind /dev
bind /dev/pts
cp -L /etc/resolv.conf "$TARGET/etc/resolv.conf"
[[ -n "$HOST_CA" && -f "$HOST_CA" ]] && cp -L "$HOST_CA" "$TARGET/etc/streetnode-test-ca.pem"

# the checkout as a technician would have it (no venv, caches or git metadata)
mkdir -p "$TARGET/root/streetnode"
tar -C "$SRC_DIR" --exclude=.venv --exclude=.git --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude='*.egg-info' --exclude=build --exclude=dist -cf - . \
    | tar -C "$TARGET/root/streetnode" -xf -
if [[ -n "${STREETNODE_CHROOT_SRC:-}" ]]; then
    # integration preview: the package (node/ drivers/ central/) as committed in another
    # checkout, installed by this checkout's deploy/ and systemd/
    say "package from $STREETNODE_CHROOT_SRC ($(git -C "$STREETNODE_CHROOT_SRC" rev-parse --short HEAD))"
    rm -rf "$TARGET/root/streetnode/"{node,drivers,central,pyproject.toml}
    git -C "$STREETNODE_CHROOT_SRC" archive HEAD node drivers central pyproject.toml \
        | tar -C "$TARGET/root/streetnode" -xf -
fi
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$TARGET/root/node.key" && echo >>"$TARGET/root/node.key"

LOG="$WORK/run-$SUITE.log"
: >"$LOG"
step() {  # step NAME CMD...: run in the chroot, log, keep the output in $OUT
    say "$1"
    local rc=0
    OUT="$(in_chroot "${@:2}" 2>&1)" || rc=$?
    printf '\n===== %s (exit %s)\n%s\n' "$1" "$rc" "$OUT" >>"$LOG"
    return "$rc"
}
# no --central-url: the chroot has no receiver, so the node only buffers (tests/deploy cover the URL)
INSTALL=(/root/streetnode/deploy/install.sh --node-id chroot-pole-1 --key-file /root/node.key --emulate)

# 0. no network for apt: fails early, with one line, before changing anything
mkdir -p "$WORK/apt-saved"
cp -a "$TARGET/etc/apt/sources.list" "$WORK/apt-saved/" 2>/dev/null || true
echo "deb http://127.0.0.1:9/debian $SUITE main" >"$TARGET/etc/apt/sources.list"
rc=0; step "install without network" "${INSTALL[@]}" || rc=$?
if ((rc == 69)) && grep -q "no network to the package mirrors" <<<"$OUT" && [[ ! -e "$TARGET/opt/streetnode" ]]; then
    pass "no network for apt: exit 69, clear message, nothing installed"
else
    fail "no network for apt: exit $rc"; tail -5 <<<"$OUT"
fi
cp -a "$WORK/apt-saved/sources.list" "$TARGET/etc/apt/sources.list"

# 1. the real install
if step "install" "${INSTALL[@]}"; then
    pass "install.sh on a fresh $SUITE (apt, user, venv, pip from the index)"
else
    fail "install.sh on a fresh $SUITE (see $LOG)"
    echo "$OUT" | tail -20
    exit 1
fi
echo "$OUT" | grep -E '^(changed|skipped|install.sh)' | sed 's/^/    /'

check() {  # check DESCRIPTION TEST...: a test run on the host against the chroot's tree
    if "${@:2}" >/dev/null 2>&1; then pass "$1"; else fail "$1"; fi
}
mode_owner() { chroot "$TARGET" stat -c '%a %U:%G' "$1"; }
check "config 0640 root:streetnode" [ "$(mode_owner /etc/streetnode/config.toml)" = "640 root:streetnode" ]
check "key 0600 streetnode:streetnode" [ "$(mode_owner /etc/streetnode/node.key)" = "600 streetnode:streetnode" ]
check "state dir 0750 streetnode" [ "$(mode_owner /var/lib/streetnode)" = "750 streetnode:streetnode" ]
check "unit enabled by its wants symlink" \
    [ "$(readlink "$TARGET/etc/systemd/system/multi-user.target.wants/streetnode.service")" = /etc/systemd/system/streetnode.service ]
check "user streetnode in groups i2c and gpio" in_chroot sh -c 'id -nG streetnode | grep -qw i2c && id -nG streetnode | grep -qw gpio'
check "streetnode --version runs" in_chroot /opt/streetnode/venv/bin/streetnode --version
check "config check as the service user" in_chroot runuser -u streetnode -- /opt/streetnode/venv/bin/streetnode config check /etc/streetnode/config.toml

# 2. idempotent
step "second run" "${INSTALL[@]}" || true
if grep -q '^install.sh: 0 changes' <<<"$OUT"; then pass "second run: 0 changes"; else
    fail "second run changed something"; grep -E '^changed' <<<"$OUT" | sed 's/^/    /'; fi

# 2b. the CI prerequisite script installs systemd; then check the unit as really installed
step "deploy/ci-deps.sh" sh /root/streetnode/deploy/ci-deps.sh || true
check "ci-deps.sh installed systemd-analyze" in_chroot sh -c 'command -v systemd-analyze'
rc=0; step "systemd-analyze verify" systemd-analyze verify /etc/systemd/system/streetnode.service || rc=$?
if ((rc == 0)) && [[ -z "$OUT" ]]; then pass "systemd-analyze verify of the installed unit: clean"; else
    fail "systemd-analyze verify of the installed unit: exit $rc"; while IFS= read -r l; do echo "    $l"; done <<<"$OUT"; fi
rc=0; step "systemd-analyze security" systemd-analyze security --offline=yes --threshold=20 \
    /etc/systemd/system/streetnode.service || rc=$?
EXPOSURE="$(grep -o 'Overall exposure level[^:]*: [0-9.]*' <<<"$OUT" || true)"
if ((rc == 0)); then pass "security of the installed unit: ${EXPOSURE##* } <= 2.0"; else
    fail "security of the installed unit: exit $rc (${EXPOSURE##* })"; fi

# 3. diag --emulate
if in_chroot /opt/streetnode/venv/bin/streetnode diag --help >/dev/null 2>&1; then
    rc=0; step "diag --emulate" runuser -u streetnode -- /opt/streetnode/venv/bin/streetnode \
        --config /etc/streetnode/config.toml diag --emulate || rc=$?
    echo "$OUT" | tail -25 | sed 's/^/    /'
    # diag exits 1 on warnings (a chroot has no synced clock and no buffer yet), 2 on failures
    if ((rc <= 1)); then pass "streetnode diag --emulate: exit $rc, no FAIL (${OUT##*$'\n'})"; else
        fail "streetnode diag --emulate: exit $rc"; fi
else
    say "NOT RUN: streetnode diag --emulate (this checkout has no diag command yet)"
fi

# 4. upgrade over a non-empty buffer: a changed checkout forces a reinstall of the package
head -c 65536 /dev/urandom >"$TARGET/var/lib/streetnode/buffer.db"
cp "$TARGET/var/lib/streetnode/buffer.db" "$WORK/buffer.before"
cp "$TARGET/etc/streetnode/config.toml" "$WORK/config.before"
echo "# upgrade marker $RANDOM" >>"$TARGET/root/streetnode/node/__init__.py"
step "upgrade" /root/streetnode/deploy/install.sh --no-diag || true
check "upgrade reinstalled the package" grep -q '^changed: /opt/streetnode/venv: install' <<<"$OUT"
check "upgrade kept the buffer byte-identical" cmp -s "$WORK/buffer.before" "$TARGET/var/lib/streetnode/buffer.db"
check "upgrade kept the config byte-identical" cmp -s "$WORK/config.before" "$TARGET/etc/streetnode/config.toml"
check "upgrade kept the key" cmp -s "$TARGET/root/node.key" "$TARGET/etc/streetnode/node.key"

# 5. uninstall, then purge
step "uninstall" /root/streetnode/deploy/install.sh --uninstall || true
check "uninstall removed /opt/streetnode and the unit" \
    [ ! -e "$TARGET/opt/streetnode" -a ! -e "$TARGET/etc/systemd/system/streetnode.service" ]
check "uninstall kept buffer, config and key" test -f "$TARGET/etc/streetnode/node.key" -a -f "$TARGET/etc/streetnode/config.toml" \
    -a -f "$TARGET/var/lib/streetnode/buffer.db"
step "purge" /root/streetnode/deploy/install.sh --uninstall --purge || true
check "purge removed data and the user" sh -c "[ ! -e '$TARGET/etc/streetnode' ] && [ ! -e '$TARGET/var/lib/streetnode' ] && ! grep -q '^streetnode:' '$TARGET/etc/passwd'"

say "log: $LOG"
if ((FAILS)); then say "$FAILS check(s) FAILED"; exit 1; fi
say "all checks passed"
