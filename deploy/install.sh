#!/usr/bin/env bash
# deploy/install.sh: turn a fresh Raspberry Pi OS (Bookworm/Trixie, 32- or 64-bit) into a streetnode
# node, repeatably.  Run it again to upgrade; --uninstall [--purge] to remove.  See docs/install.md.
#
# Every action is reported as one line: "changed: ...", "unchanged: ...", "skipped: ...",
# "removed: ..." (with --dry-run: "would change: ...").  The last line counts the changes;
# a second run on an installed node prints "install.sh: 0 changes".
set -euo pipefail
umask 022

PROG="install.sh"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICE_USER="streetnode"
PREFIX="/opt/streetnode"
VENV="$PREFIX/venv"
ETC_DIR="/etc/streetnode"
CONFIG="$ETC_DIR/config.toml"
KEY="$ETC_DIR/node.key"
STATE_DIR="/var/lib/streetnode"
UNIT_NAME="streetnode.service"
UNIT_DIR="/etc/systemd/system"
WANTS_DIR="$UNIT_DIR/multi-user.target.wants"
MODULES_FILE="/etc/modules-load.d/streetnode.conf"
STAMP="$PREFIX/.installed"
MIN_PY_MAJOR=3
MIN_PY_MINOR=11
# procps: /bin/kill for the unit's ExecReload= (missing on a minimal Debian)
BASE_PACKAGES=(python3 python3-venv i2c-tools procps)
# installed when the distribution has them (Raspberry Pi OS has all; Debian lacks python3-lgpio)
OPTIONAL_PACKAGES=(python3-lgpio python3-libgpiod)

# exit codes, as node/errors.py
EX_FAILURE=1 EX_USAGE=2 EX_UNAVAILABLE=69 EX_NOPERM=77 EX_CONFIG=78

NODE_ID="" CENTRAL_URL="" KEY_FILE="" KEY_TMP="" ROOT="" WHEEL=""
DRY_RUN=0 UNINSTALL=0 PURGE=0 NO_DEPS=0 DIAG="auto" DIAG_EMULATE=0
NO_SYSTEM=0 CENTRAL=0
PKG_EXTRA=""  # "[central]" with --central
# seconds a (re)started unit must stay active before the installer believes it
SETTLE_S="${STREETNODE_INSTALL_SETTLE_S:-3}"
[[ "${STREETNODE_INSTALL_TEST:-}" == "1" ]] && NO_SYSTEM=1
PIP_ARGS=()
PYTHON="${STREETNODE_PYTHON:-python3}"
OS_RELEASE="${STREETNODE_OS_RELEASE:-/etc/os-release}"
CHANGES=0
CONFIG_BAD=0

usage() {
    cat <<EOF
Usage: deploy/install.sh [OPTIONS]
Install (or upgrade) the streetnode agent on this Raspberry Pi, as root.

  --node-id ID        the node's id, as registered with 'streetnode-central node add ID'
                      (required on the first install; an existing config is never rewritten)
  --central-url URL   the city's receiver, https://...; without it the node only buffers
  --key-file PATH     the node key printed by 'streetnode-central node add'; stored as
                      $KEY, mode 0600, owned by $SERVICE_USER ('-': read it from stdin)
  --wheel FILE        install this streetnode wheel instead of the checkout $SRC_DIR
  --root DIR          stage everything under DIR instead of / (images, tests): no apt, no
                      raspi-config, no systemctl; the unit is enabled by its wants symlink
  --dry-run           print every action, change nothing
  --uninstall         stop and remove the service, unit and $PREFIX; keeps the config,
                      the key and the buffer ($ETC_DIR, $STATE_DIR)
  --purge             with --uninstall: also remove $ETC_DIR, $STATE_DIR and the user
  --no-system         test mode (same as STREETNODE_INSTALL_TEST=1): skip apt, raspi-config,
                      user/group creation, file ownership and systemctl; files, modes, the venv
                      and the enable symlink are still made.  Needs --root unless you are root.
  --no-deps           install the package without its Python dependencies (tests, or images
                      that ship them otherwise)
  --pip-arg ARG       pass ARG to pip (repeatable), e.g. --pip-arg=--no-index
                      --pip-arg=--find-links=/media/usb/wheels for an offline install
  --diag / --no-diag  run 'streetnode diag' at the end (default: yes, except with --root)
  --emulate           run the final diag on emulated hardware (diag --emulate)
  --central           install (or with --uninstall remove) the city's receiver instead:
                      /opt/streetnode-central/venv and streetnode-central.service
                      (DynamicUser, state in /var/lib/streetnode-central); see docs/install.md
  -h, --help          this help

Environment: STREETNODE_PYTHON (interpreter for the venv, default python3),
STREETNODE_INSTALL_TEST=1 (as --no-system), STREETNODE_OS_RELEASE (os-release file to check).
Exit codes: 0 ok, 1 failure, 2 usage, 69 unavailable (no network, not Debian-like, Python too
old), 77 not root, 78 bad argument value.
EOF
}

# ------------------------------------------------------------------ messages (issue #19)
# The installer's lines in the reader's language; kept in this file so install.sh stays one file.
#
# t FORMAT [ARG...] prints FORMAT (a printf format, the English text) with ARGs, in Vietnamese when
# the locale asks for it and the table has the line; no newline. The language is chosen as the node
# chooses it (node/i18n.py, GNU gettext's rules): the locale is the first set of LC_ALL,
# LC_MESSAGES, LANG; C/POSIX (or none) is English; else LANGUAGE (a list like vi:en), then the
# locale's own language.
# Terms: docs/vi/glossary.md. tests/deploy/test_install_vi.py checks that every format printed by t
# below is in the table with the same %s count. Bash only: no gettext tools on a fresh image.

installer_lang() {
    local locale="${LC_ALL:-${LC_MESSAGES:-${LANG:-}}}" want
    locale="${locale%%.*}"
    locale="${locale%%@*}"
    case "$locale" in "" | C | POSIX) echo en; return 0 ;; esac
    local -a prefs=()
    IFS=: read -r -a prefs <<<"${LANGUAGE:-}"
    for want in "${prefs[@]}" "$locale"; do
        want="${want%%[_.@-]*}"
        case "$want" in vi | en) echo "$want"; return 0 ;; esac
    done
    echo en
}

declare -A MESSAGES_VI=(
    ["warning: %s"]="cảnh báo: %s"
    ["error: %s"]="lỗi: %s"
    ["changed: %s"]="đã thay đổi: %s"
    ["would change: %s"]="sẽ thay đổi: %s"
    ["unchanged: %s"]="không đổi: %s"
    ["skipped: %s"]="bỏ qua: %s"
    ["removed: %s"]="đã gỡ: %s"
    ["would remove: %s"]="sẽ gỡ: %s"
    ["would run: %s"]="sẽ chạy: %s"
    ["%s changes"]="%s thay đổi"
    ["dry run: %s changes would be made"]="chạy thử: sẽ có %s thay đổi"
    ["installing streetnode from %s into %s"]="đang cài streetnode từ %s vào %s"
    ["installing streetnode from %s into %s (dry run)"]="đang cài streetnode từ %s vào %s (chạy thử)"
    ["installing streetnode-central from %s into %s"]="đang cài streetnode-central từ %s vào %s"
    ["installing streetnode-central from %s into %s (dry run)"]="đang cài streetnode-central từ %s vào %s (chạy thử)"
    ["removing %s from %s"]="đang gỡ %s khỏi %s"
    [" (purge)"]=" (xóa sạch)"
    [" (dry run)"]=" (chạy thử)"
    ["%s needs a value (see --help)"]="%s cần một giá trị (xem --help)"
    ["unknown option '%s' (see --help)"]="tùy chọn không hợp lệ '%s' (xem --help)"
    ["--purge only goes with --uninstall"]="--purge chỉ dùng cùng --uninstall"
    ["--central takes no --node-id, --central-url or --key-file"]="--central không nhận --node-id, --central-url hay --key-file"
    ["--node-id: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, got '%s'"]="--node-id: cần 1-64 chữ cái, chữ số, '.', '_' hoặc '-', bắt đầu bằng chữ cái hoặc chữ số, nhưng nhận được '%s'"
    ["--central-url: expected an http:// or https:// URL, got '%s'"]="--central-url: cần một URL http:// hoặc https://, nhưng nhận được '%s'"
    ["--key-file -: no key on standard input"]="--key-file -: không có khóa nào ở đầu vào chuẩn"
    ["--key-file: cannot read '%s'"]="--key-file: không đọc được '%s'"
    ["--key-file: '%s' is empty"]="--key-file: '%s' trống"
    ["--key-file: '%s' does not hold a node key (expected 64 hex digits, as printed by 'streetnode-central node add')"]="--key-file: '%s' không chứa khóa của trạm (cần 64 chữ số hex, như 'streetnode-central node add' in ra)"
    ["--wheel: expected a .whl file, got '%s'"]="--wheel: cần một tệp .whl, nhưng nhận được '%s'"
    ["--root: '%s' is not a directory"]="--root: '%s' không phải thư mục"
    ["not root: a real run must be started as root (sudo)"]="không phải root: lần chạy thật phải chạy với quyền root (sudo)"
    ["must be run as root (try: sudo %s)"]="phải chạy với quyền root (thử: sudo %s)"
    ["not a Debian-like system (ID='%s' in %s); streetnode needs Raspberry Pi OS or Debian"]="không phải hệ thống giống Debian (ID='%s' trong %s); streetnode cần Raspberry Pi OS hoặc Debian"
    ["apt-get/dpkg-query not found; streetnode needs Raspberry Pi OS or Debian"]="không tìm thấy apt-get/dpkg-query; streetnode cần Raspberry Pi OS hoặc Debian"
    ["Python %s is too old: streetnode needs Python %s or newer (Raspberry Pi OS Bookworm or later)"]="Python %s quá cũ: streetnode cần Python %s trở lên (Raspberry Pi OS Bookworm trở lên)"
    ["user '%s' or group '%s' missing in %s"]="thiếu người dùng '%s' hoặc nhóm '%s' trong %s"
    ["%s mode %s -> %s"]="%s quyền %s -> %s"
    ["%s owner %s -> %s"]="%s chủ sở hữu %s -> %s"
    ["%s (directory, mode %s, %s)"]="%s (thư mục, quyền %s, %s)"
    ["%s (updated, mode %s)"]="%s (đã cập nhật, quyền %s)"
    ["%s (new, mode %s)"]="%s (mới, quyền %s)"
    ["apt packages (--no-system)"]="gói apt (--no-system)"
    ["apt packages (--root: install in the image: %s)"]="gói apt (--root: cài trong ảnh hệ thống: %s)"
    ["apt packages (%s)"]="gói apt (%s)"
    ["apt packages: install %s"]="gói apt: cài %s"
    ["apt-get update failed: no network to the package mirrors? connect the node and run again"]="apt-get update thất bại: mất kết nối tới máy chủ gói? hãy kết nối trạm rồi chạy lại"
    ["apt-get install %s failed (see above)"]="apt-get install %s thất bại (xem ở trên)"
    ["enable I2C (--root/--no-system: set dtparam=i2c_arm=on in the image's config.txt)"]="bật I2C (--root/--no-system: đặt dtparam=i2c_arm=on trong config.txt của ảnh hệ thống)"
    ["I2C enabled (raspi-config)"]="I2C đã bật (raspi-config)"
    ["I2C: raspi-config nonint do_i2c 0 (takes effect after a reboot)"]="I2C: raspi-config nonint do_i2c 0 (có hiệu lực sau khi khởi động lại máy)"
    ["enable I2C: raspi-config not found; on a Pi add 'dtparam=i2c_arm=on' to /boot/firmware/config.txt (Bookworm+) and reboot"]="bật I2C: không tìm thấy raspi-config; trên Pi hãy thêm 'dtparam=i2c_arm=on' vào /boot/firmware/config.txt (Bookworm trở lên) rồi khởi động lại máy"
    ["group %s"]="nhóm %s"
    ["group %s (system)"]="nhóm %s (hệ thống)"
    ["user %s and groups i2c, gpio (--no-system)"]="người dùng %s và các nhóm i2c, gpio (--no-system)"
    ["user %s (system, groups i2c gpio, no login)"]="người dùng %s (hệ thống, nhóm i2c gpio, không đăng nhập được)"
    ["user %s in group %s"]="người dùng %s trong nhóm %s"
    ["user %s: add to group %s"]="người dùng %s: thêm vào nhóm %s"
    ["user %s"]="người dùng %s"
    ["no pyproject.toml in %s: run install.sh from a streetnode checkout or pass --wheel"]="không có pyproject.toml trong %s: hãy chạy install.sh từ thư mục mã streetnode hoặc dùng --wheel"
    ["%s (new virtualenv, with system site packages for lgpio/gpiod)"]="%s (môi trường ảo mới, dùng gói hệ thống cho lgpio/gpiod)"
    ["%s stopped for the upgrade"]="%s đã dừng để nâng cấp"
    ["%s: install streetnode from %s"]="%s: cài streetnode từ %s"
    ["could not build the streetnode wheel from %s (pip needs setuptools from PyPI: network?)"]="không đóng gói được streetnode từ %s (pip cần setuptools từ PyPI: mất kết nối?)"
    ["pip could not install streetnode and its dependencies (network to PyPI/piwheels?)"]="pip không cài được streetnode và các gói phụ thuộc (mất kết nối tới PyPI/piwheels?)"
    ["pip could not reinstall streetnode from %s"]="pip không cài lại được streetnode từ %s"
    ["GPIO backend lgpio importable"]="thư viện GPIO lgpio dùng được"
    ["lgpio is not importable in %s: GPIO sensors will not work; on Raspberry Pi OS 'apt-get install python3-lgpio', elsewhere '%s/bin/pip install lgpio'"]="không nạp được lgpio trong %s: các cảm biến GPIO sẽ không chạy; trên Raspberry Pi OS dùng 'apt-get install python3-lgpio', ở máy khác '%s/bin/pip install lgpio'"
    ["%s (kept as it is)"]="%s (giữ nguyên)"
    ["%s keeps node id '%s', not '%s': edit the file to change it"]="%s giữ mã trạm '%s', không phải '%s': hãy sửa tệp để đổi"
    ["%s keeps its [central] url; edit the file to use %s"]="%s giữ url trong [central]; hãy sửa tệp để dùng %s"
    ["--node-id is required on the first install (no %s yet)"]="lần cài đầu tiên cần --node-id (chưa có %s)"
    ["no --central-url: the node will only buffer until [central] url is set in %s"]="không có --central-url: trạm chỉ lưu vào bộ đệm cho đến khi đặt url trong [central] của %s"
    ["%s (kept)"]="%s (giữ nguyên)"
    ["no node key: uploads stay off until you run again with --key-file (from 'streetnode-central node add')"]="chưa có khóa của trạm: không tải lên cho đến khi chạy lại với --key-file (từ 'streetnode-central node add')"
    ["%s is valid (streetnode config check)"]="%s hợp lệ (streetnode config check)"
    ["%s is not valid (above): the service will not start until it is fixed"]="%s không hợp lệ (xem ở trên): dịch vụ sẽ không khởi động cho đến khi sửa xong"
    ["systemctl (no running systemd here: the service starts at the next boot)"]="systemctl (ở đây systemd không chạy: dịch vụ sẽ khởi động ở lần bật máy tới)"
    ["%s running"]="%s đang chạy"
    ["%s (re)started"]="%s đã khởi động (lại)"
    ["%s active (main PID %s)"]="%s đang hoạt động (PID chính %s)"
    ["%s is not running (state: %s); its last log lines:"]="%s không chạy (trạng thái: %s); các dòng nhật ký cuối:"
    ["%s did not become active: fix the cause above and run install.sh again"]="%s không hoạt động được: hãy sửa nguyên nhân ở trên rồi chạy lại install.sh"
    ["streetnode diag (--root/--no-system/--no-diag; run it on the node)"]="streetnode diag (--root/--no-system/--no-diag; hãy chạy trên trạm)"
    ["streetnode diag (this version has no diag command)"]="streetnode diag (phiên bản này không có lệnh diag)"
    ["running: %s"]="đang chạy: %s"
    ["diag: all checks passed"]="diag: mọi mục kiểm tra đều đạt"
    ["diag: exit %s (warnings or failures above, e.g. sensors not wired yet); the install itself is complete"]="diag: mã thoát %s (cảnh báo hoặc lỗi ở trên, ví dụ cảm biến chưa đấu dây); bản thân việc cài đặt đã xong"
    ["%s not found (apt should have installed python3)"]="không tìm thấy %s (lẽ ra apt đã cài python3)"
    ["%s stopped and disabled"]="%s đã dừng và tắt tự khởi động"
    ["kept: %s (the store)"]="giữ lại: %s (kho dữ liệu)"
    ["kept: %s (config, node key)"]="giữ lại: %s (cấu hình, khóa của trạm)"
    ["kept: %s (buffered readings)"]="giữ lại: %s (số đo trong bộ đệm)"
    ["--uninstall --purge removes it too"]="--uninstall --purge sẽ xóa cả nó"
    ["--uninstall --purge removes them too"]="--uninstall --purge sẽ xóa cả chúng"
    ["installed, but %s is invalid: fix it, then run install.sh again"]="đã cài, nhưng %s không hợp lệ: hãy sửa rồi chạy lại install.sh"
    ["this card was copied from another machine: run 'sudo streetnode provision' on this Pi before its readings mix with the original's (docs/install.md, cloning a card)"]="thẻ này được sao chép từ máy khác: hãy chạy 'sudo streetnode provision' trên Pi này trước khi số đo của nó lẫn với số đo của thẻ gốc (docs/install.md, sao chép thẻ)"
)

MESSAGES_LANG="$(installer_lang)"

t() {
    local format="$1"
    shift
    if [[ "$MESSAGES_LANG" == vi && -n "${MESSAGES_VI[$format]+set}" ]]; then
        format="${MESSAGES_VI[$format]}"
    fi
    # shellcheck disable=SC2059  # the format is one of the lines above
    printf -- "$format" "$@"
}

say() { echo "$PROG: $*"; }
warn() { echo "$PROG: $(t "warning: %s" "$*")" >&2; }
die() { local code="$1"; shift; echo "$PROG: $(t "error: %s" "$*")" >&2; exit "$code"; }

changed() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then t "would change: %s" "$*"; else t "changed: %s" "$*"; fi
    echo
}
unchanged() { t "unchanged: %s" "$*"; echo; }
skipped() { t "skipped: %s" "$*"; echo; }
removed() {
    CHANGES=$((CHANGES + 1))
    if ((DRY_RUN)); then t "would remove: %s" "$*"; else t "removed: %s" "$*"; fi
    echo
}
# run CMD...: execute, or only print it with --dry-run
run() {
    if ((DRY_RUN)); then t "would run: %s" "$*"; echo; else "$@"; fi
}

# ------------------------------------------------------------------ arguments
need_value() { [[ $# -ge 2 && -n "$2" ]] || die $EX_USAGE "$(t "%s needs a value (see --help)" "$1")"; }

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --node-id) need_value "$@"; NODE_ID="$2"; shift ;;
            --node-id=*) NODE_ID="${1#*=}" ;;
            --central-url) need_value "$@"; CENTRAL_URL="$2"; shift ;;
            --central-url=*) CENTRAL_URL="${1#*=}" ;;
            --key-file) need_value "$@"; KEY_FILE="$2"; shift ;;
            --key-file=*) KEY_FILE="${1#*=}" ;;
            --wheel) need_value "$@"; WHEEL="$2"; shift ;;
            --wheel=*) WHEEL="${1#*=}" ;;
            --root) need_value "$@"; ROOT="$2"; shift ;;
            --root=*) ROOT="${1#*=}" ;;
            --pip-arg) need_value "$@"; PIP_ARGS+=("$2"); shift ;;
            --pip-arg=*) PIP_ARGS+=("${1#*=}") ;;
            --dry-run) DRY_RUN=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --no-system) NO_SYSTEM=1 ;;
            --no-deps) NO_DEPS=1 ;;
            --diag) DIAG="yes" ;;
            --no-diag) DIAG="no" ;;
            --emulate) DIAG_EMULATE=1 ;;
            --central) CENTRAL=1 ;;
            -h | --help) usage; exit 0 ;;
            *) die $EX_USAGE "$(t "unknown option '%s' (see --help)" "$1")" ;;
        esac
        shift
    done
    if ((PURGE && !UNINSTALL)); then die $EX_USAGE "$(t "--purge only goes with --uninstall")"; fi
    if ((CENTRAL)); then
        [[ -z "$NODE_ID$CENTRAL_URL$KEY_FILE" ]] || die $EX_USAGE "$(t "--central takes no --node-id, --central-url or --key-file")"
        PREFIX="/opt/streetnode-central" VENV="/opt/streetnode-central/venv" STAMP="/opt/streetnode-central/.installed"
        UNIT_NAME="streetnode-central.service" PKG_EXTRA="[central]"
        OPTIONAL_PACKAGES=()
    fi
    if [[ -n "$NODE_ID" && ! "$NODE_ID" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then
        die $EX_CONFIG "$(t "--node-id: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, got '%s'" "$NODE_ID")"
    fi
    if [[ -n "$CENTRAL_URL" && ! "$CENTRAL_URL" =~ ^https?://[^/[:space:]\"]+[^[:space:]\"]*$ ]]; then
        die $EX_CONFIG "$(t "--central-url: expected an http:// or https:// URL, got '%s'" "$CENTRAL_URL")"
    fi
    if [[ "$KEY_FILE" == "-" ]]; then
        # the key on standard input, as 'streetnode-central node add' prints the command
        KEY_TMP="$(umask 077 && mktemp)"
        trap 'rm -f "$KEY_TMP"' EXIT
        cat >"$KEY_TMP"
        KEY_FILE="$KEY_TMP"
        [[ -s "$KEY_FILE" ]] || die $EX_CONFIG "$(t "--key-file -: no key on standard input")"
    fi
    if [[ -n "$KEY_FILE" ]]; then
        [[ -f "$KEY_FILE" && -r "$KEY_FILE" ]] || die $EX_CONFIG "$(t "--key-file: cannot read '%s'" "$KEY_FILE")"
        [[ -s "$KEY_FILE" ]] || die $EX_CONFIG "$(t "--key-file: '%s' is empty" "$KEY_FILE")"
        # the form node/keyfile.py accepts: 64 hex digits, surrounding whitespace ignored (the key
        # itself is never echoed: a message may end up in a log or a terminal recording)
        local key_text
        key_text="$(head -c 300 "$KEY_FILE"; printf x)"
        key_text="${key_text%x}"
        [[ "$key_text" =~ ^[[:space:]]*[0-9a-fA-F]{64}[[:space:]]*$ ]] \
            || die $EX_CONFIG "$(t "--key-file: '%s' does not hold a node key (expected 64 hex digits, as printed by 'streetnode-central node add')" "$KEY_FILE")"
    fi
    if [[ -n "$WHEEL" ]]; then
        [[ -f "$WHEEL" && "$WHEEL" == *.whl ]] || die $EX_CONFIG "$(t "--wheel: expected a .whl file, got '%s'" "$WHEEL")"
        WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
    fi
    if [[ -n "$ROOT" ]]; then
        [[ -d "$ROOT" ]] || die $EX_CONFIG "$(t "--root: '%s' is not a directory" "$ROOT")"
        ROOT="$(cd "$ROOT" && pwd)"
        if [[ "$ROOT" == "/" ]]; then ROOT=""; fi
    fi
}

# ------------------------------------------------------------------ checks that fail early
check_root() {
    if [[ $EUID -eq 0 ]]; then return; fi
    if ((NO_SYSTEM)) && [[ -n "$ROOT" ]]; then return; fi
    if ((DRY_RUN)); then warn "$(t "not root: a real run must be started as root (sudo)")"; return; fi
    die $EX_NOPERM "$(t "must be run as root (try: sudo %s)" "$0 $*")"
}

check_debian() {
    ((NO_SYSTEM)) && return
    local id="" like=""
    if [[ -r "$OS_RELEASE" ]]; then
        # shellcheck disable=SC1090
        id="$(. "$OS_RELEASE" && echo "${ID:-}")"
        # shellcheck disable=SC1090
        like="$(. "$OS_RELEASE" && echo "${ID_LIKE:-}")"
    fi
    if [[ "$id" != "debian" && "$id" != "raspbian" && " $like " != *" debian "* ]]; then
        die $EX_UNAVAILABLE "$(t "not a Debian-like system (ID='%s' in %s); streetnode needs Raspberry Pi OS or Debian" "$id" "$OS_RELEASE")"
    fi
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        die $EX_UNAVAILABLE "$(t "apt-get/dpkg-query not found; streetnode needs Raspberry Pi OS or Debian")"
    fi
}

# python_ok: exit 0 when $PYTHON exists and is new enough; else print why and return 1
check_python() {
    local v
    if ! v="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"; then
        return 1
    fi
    local major="${v%%.*}" minor="${v#*.}"
    if ((major < MIN_PY_MAJOR || (major == MIN_PY_MAJOR && minor < MIN_PY_MINOR))); then
        die $EX_UNAVAILABLE "$(t "Python %s is too old: streetnode needs Python %s or newer (Raspberry Pi OS Bookworm or later)" "$v" "$MIN_PY_MAJOR.$MIN_PY_MINOR")"
    fi
    return 0
}

# ------------------------------------------------------------------ file helpers (ROOT-aware)
R() { echo "$ROOT$1"; }

# numeric uid/gid of a name in ROOT's passwd/group ("" when unknown)
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(R /etc/passwd)" 2>/dev/null || true; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(R /etc/group)" 2>/dev/null || true; }

# owner_ids USER GROUP -> "uid gid", or "" when ownership is not managed (--no-system)
owner_ids() {
    ((NO_SYSTEM)) && return 0
    local u g
    u="$(uid_of "$1")" g="$(gid_of "$2")"
    if [[ -z "$u" || -z "$g" ]]; then
        ((DRY_RUN)) && { echo "$1 $2"; return 0; }
        die $EX_FAILURE "$(t "user '%s' or group '%s' missing in %s" "$1" "$2" "$(R /etc/passwd)")"
    fi
    echo "$u $g"
}

# fix_meta PATH MODE "UID GID" LABEL: chmod/chown when they differ
fix_meta() {
    local path="$1" mode="$2" ids="$3" label="$4" cur want
    cur="$(stat -c '%a' "$path")"
    if [[ "$cur" != "${mode#0}" ]]; then
        changed "$(t "%s mode %s -> %s" "$label" "$cur" "$mode")"
        run chmod "$mode" "$path"
    fi
    [[ -z "$ids" ]] && return 0
    cur="$(stat -c '%u %g' "$path")"
    want="$ids"
    if [[ "$cur" != "$want" ]]; then
        changed "$(t "%s owner %s -> %s" "$label" "$cur" "$want")"
        run chown "${want% *}:${want#* }" "$path"
    fi
}

# ensure_dir DIR MODE USER GROUP
ensure_dir() {
    local dir="$1" mode="$2" ids
    ids="$(owner_ids "$3" "$4")"
    if [[ -d "$(R "$dir")" ]]; then
        fix_meta "$(R "$dir")" "$mode" "$ids" "$dir"
        return 0
    fi
    changed "$(t "%s (directory, mode %s, %s)" "$dir" "$mode" "$3:$4")"
    run mkdir -p "$(R "$dir")"
    run chmod "$mode" "$(R "$dir")"
    [[ -n "$ids" ]] && run chown "${ids% *}:${ids#* }" "$(R "$dir")"
    return 0
}

# ensure_file SRC DEST MODE USER GROUP: copy when the content differs (atomically), fix mode/owner
ensure_file() {
    local src="$1" dest="$2" mode="$3" ids dst
    ids="$(owner_ids "$4" "$5")"
    dst="$(R "$dest")"
    if [[ -f "$dst" ]] && cmp -s "$src" "$dst"; then
        unchanged "$dest"
        fix_meta "$dst" "$mode" "$ids" "$dest"
        return 0
    fi
    if [[ -e "$dst" ]]; then
        changed "$(t "%s (updated, mode %s)" "$dest" "$mode")"
    else
        changed "$(t "%s (new, mode %s)" "$dest" "$mode")"
    fi
    ((DRY_RUN)) && return 0
    mkdir -p "$(dirname "$dst")"
    local tmp="$dst.new.$$"
    install -m "$mode" "$src" "$tmp"
    [[ -n "$ids" ]] && chown "${ids% *}:${ids#* }" "$tmp"
    sync -d "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$dst"
}

# ensure_symlink TARGET LINK
ensure_symlink() {
    local target="$1" link="$2" l
    l="$(R "$link")"
    if [[ -L "$l" && "$(readlink "$l")" == "$target" ]]; then
        unchanged "$link -> $target"
        return 0
    fi
    changed "$link -> $target"
    run mkdir -p "$(dirname "$l")"
    run ln -sfn "$target" "$l"
}

# remove_path PATH: rm -rf when present
remove_path() {
    local p
    p="$(R "$1")"
    if [[ -e "$p" || -L "$p" ]]; then
        removed "$1"
        run rm -rf -- "$p"
    fi
    return 0
}

systemd_running() { [[ -z "$ROOT" ]] && ((!NO_SYSTEM)) && [[ -d /run/systemd/system ]]; }

# ------------------------------------------------------------------ install steps
install_packages() {
    if ((NO_SYSTEM)); then skipped "$(t "apt packages (--no-system)")"; return 0; fi
    local all=("${BASE_PACKAGES[@]}") missing=() p
    for p in "${OPTIONAL_PACKAGES[@]}"; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || apt-cache show "$p" >/dev/null 2>&1; then
            all+=("$p")
        fi
    done
    if [[ -n "$ROOT" ]]; then
        skipped "$(t "apt packages (--root: install in the image: %s)" "${all[*]}")"
        return 0
    fi
    for p in "${all[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        unchanged "$(t "apt packages (%s)" "${all[*]}")"
        return 0
    fi
    changed "$(t "apt packages: install %s" "${missing[*]}")"
    ((DRY_RUN)) && { t "would run: %s" "apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"; echo; return 0; }
    if ! apt-get update -q >/tmp/streetnode-apt-update.log 2>&1 \
        || grep -qE '^(W|E): (Failed to fetch|Some index files failed)' /tmp/streetnode-apt-update.log; then
        sed 's/^/  apt: /' /tmp/streetnode-apt-update.log >&2
        die $EX_UNAVAILABLE "$(t "apt-get update failed: no network to the package mirrors? connect the node and run again")"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die $EX_UNAVAILABLE "$(t "apt-get install %s failed (see above)" "${missing[*]}")"
}

enable_i2c() {
    local tmp
    tmp="$(mktemp)"
    printf '# streetnode: I2C sensors (BME280, PMSA003I) via /dev/i2c-*\ni2c-dev\n' >"$tmp"
    ensure_file "$tmp" "$MODULES_FILE" 0644 root root
    rm -f "$tmp"
    if ((NO_SYSTEM)) || [[ -n "$ROOT" ]]; then
        skipped "$(t "enable I2C (--root/--no-system: set dtparam=i2c_arm=on in the image's config.txt)")"
        return 0
    fi
    if command -v raspi-config >/dev/null 2>&1; then
        if [[ "$(raspi-config nonint get_i2c 2>/dev/null || echo 1)" == "0" ]]; then
            unchanged "$(t "I2C enabled (raspi-config)")"
        else
            changed "$(t "I2C: raspi-config nonint do_i2c 0 (takes effect after a reboot)")"
            run raspi-config nonint do_i2c 0
        fi
    else
        skipped "$(t "enable I2C: raspi-config not found; on a Pi add 'dtparam=i2c_arm=on' to /boot/firmware/config.txt (Bookworm+) and reboot")"
    fi
}

ensure_group() {
    if [[ -n "$(gid_of "$1")" ]]; then unchanged "$(t "group %s" "$1")"; return 0; fi
    changed "$(t "group %s (system)" "$1")"
    run groupadd --system ${ROOT:+--root "$ROOT"} "$1"
}

create_user() {
    if ((NO_SYSTEM)); then skipped "$(t "user %s and groups i2c, gpio (--no-system)" "$SERVICE_USER")"; return 0; fi
    ensure_group i2c
    ensure_group gpio
    if [[ -z "$(uid_of "$SERVICE_USER")" ]]; then
        changed "$(t "user %s (system, groups i2c gpio, no login)" "$SERVICE_USER")"
        run useradd --system ${ROOT:+--root "$ROOT"} --user-group --groups i2c,gpio \
            --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
            --comment "streetnode agent" "$SERVICE_USER"
        return 0
    fi
    local g members
    for g in i2c gpio; do
        members="$(awk -F: -v n="$g" '$1 == n { print $4 }' "$(R /etc/group)")"
        if [[ ",$members," == *",$SERVICE_USER,"* ]]; then
            unchanged "$(t "user %s in group %s" "$SERVICE_USER" "$g")"
        else
            changed "$(t "user %s: add to group %s" "$SERVICE_USER" "$g")"
            run usermod ${ROOT:+--root "$ROOT"} -aG "$g" "$SERVICE_USER"
        fi
    done
}

# the fingerprint of what would be installed: changes when the code or the install options change
source_fingerprint() {
    {
        echo "deps=$((1 - NO_DEPS)) extra=$PKG_EXTRA"
        if [[ -n "$WHEEL" ]]; then
            sha256sum <"$WHEEL"
        else
            (cd "$SRC_DIR" && find pyproject.toml node drivers central -type f \
                ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
                | xargs -0 sha256sum)
        fi
    } | sha256sum | cut -d' ' -f1
}

install_venv() {
    local venv stamp fp py
    venv="$(R "$VENV")" stamp="$(R "$STAMP")"
    if [[ -z "$WHEEL" && ! -f "$SRC_DIR/pyproject.toml" ]]; then
        die $EX_CONFIG "$(t "no pyproject.toml in %s: run install.sh from a streetnode checkout or pass --wheel" "$SRC_DIR")"
    fi
    fp="$(source_fingerprint)"
    py="$venv/bin/python"
    if [[ -x "$py" ]] && "$py" -c 'import node' >/dev/null 2>&1 \
        && [[ -f "$stamp" && "$(cat "$stamp")" == "$fp" ]]; then
        unchanged "$VENV (streetnode $("$py" -c 'import node; print(node.__version__)'))"  # i18n: no (names only)
        return 0
    fi
    if [[ ! -x "$py" ]] || ! "$py" -c 'import sys' >/dev/null 2>&1; then
        changed "$(t "%s (new virtualenv, with system site packages for lgpio/gpiod)" "$VENV")"
        # a venv whose interpreter vanished (OS upgrade) is rebuilt; config, key and buffer stay
        run rm -rf "$venv"
        run "$PYTHON" -m venv --system-site-packages "$venv"
    fi
    local what="${WHEEL:-$SRC_DIR}"
    if systemd_running && systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null; then
        # the agent flushes its buffer on SIGTERM; it is started again by activate_unit
        changed "$(t "%s stopped for the upgrade" "$UNIT_NAME")"
        run systemctl stop "$UNIT_NAME"
    fi
    changed "$(t "%s: install streetnode from %s" "$VENV" "$what")"
    ((DRY_RUN)) && return 0
    local pip=("$py" -m pip --disable-pip-version-check --no-input -q)
    local src="$WHEEL" tmpd=""
    if [[ -z "$src" ]]; then
        tmpd="$(mktemp -d)"
        "${pip[@]}" wheel --no-deps -w "$tmpd" "${PIP_ARGS[@]}" "$SRC_DIR" \
            || die $EX_UNAVAILABLE "$(t "could not build the streetnode wheel from %s (pip needs setuptools from PyPI: network?)" "$SRC_DIR")"
        src="$(ls "$tmpd"/streetnode-*.whl)"
    fi
    local dep=()
    ((NO_DEPS)) && dep=(--no-deps)
    "${pip[@]}" install "${dep[@]}" "${PIP_ARGS[@]}" "$src$PKG_EXTRA" \
        || die $EX_UNAVAILABLE "$(t "pip could not install streetnode and its dependencies (network to PyPI/piwheels?)")"
    # the same version number may carry new code: replace the package itself every time
    "${pip[@]}" install --no-deps --force-reinstall "${PIP_ARGS[@]}" "$src" \
        || die $EX_FAILURE "$(t "pip could not reinstall streetnode from %s" "$src")"
    [[ -n "$tmpd" ]] && rm -rf "$tmpd"
    if [[ -n "$ROOT" ]]; then
        # staged venv: its scripts must name the final path, not the staging directory
        local f
        for f in "$venv"/bin/* "$venv/pyvenv.cfg"; do
            [[ -f "$f" && ! -L "$f" ]] && grep -Iq "$venv" "$f" && sed -i "s|$venv|$VENV|g" "$f"
        done
    fi
    echo "$fp" >"$stamp"
}

# on a Pi, gpiozero needs lgpio (apt's python3-lgpio on Raspberry Pi OS, seen through the venv)
check_gpio_backend() {
    ((DRY_RUN)) && return 0
    [[ -z "$ROOT" ]] || return 0
    grep -qa "Raspberry Pi" /proc/device-tree/model 2>/dev/null || return 0
    if "$(R "$VENV")/bin/python" -c 'import lgpio' >/dev/null 2>&1; then
        unchanged "$(t "GPIO backend lgpio importable")"
    else
        warn "$(t "lgpio is not importable in %s: GPIO sensors will not work; on Raspberry Pi OS 'apt-get install python3-lgpio', elsewhere '%s/bin/pip install lgpio'" "$VENV" "$VENV")"
    fi
}

write_config() {
    local ids cfg
    ids="$(owner_ids root "$SERVICE_USER")"
    cfg="$(R "$CONFIG")"
    if [[ -f "$cfg" ]]; then
        unchanged "$(t "%s (kept as it is)" "$CONFIG")"
        fix_meta "$cfg" 0640 "$ids" "$CONFIG"
        local cur_id
        cur_id="$(sed -n 's/^id *= *"\([^"]*\)".*/\1/p' "$cfg" | head -n1)"
        if [[ -n "$NODE_ID" && "$cur_id" != "$NODE_ID" ]]; then
            warn "$(t "%s keeps node id '%s', not '%s': edit the file to change it" "$CONFIG" "$cur_id" "$NODE_ID")"
        fi
        if [[ -n "$CENTRAL_URL" ]] && ! grep -qF "url = \"$CENTRAL_URL\"" "$cfg"; then
            warn "$(t "%s keeps its [central] url; edit the file to use %s" "$CONFIG" "$CENTRAL_URL")"
        fi
        return 0
    fi
    [[ -n "$NODE_ID" ]] || die $EX_USAGE "$(t "--node-id is required on the first install (no %s yet)" "$CONFIG")"
    local tmp
    tmp="$(mktemp)"
    local url_sed="s|^url = \"[^\"]*\"|# url = \"https://central.example.org\"  # set to upload; without it the node only buffers|"
    if [[ -n "$CENTRAL_URL" ]]; then
        local url_esc
        url_esc="$(printf '%s' "$CENTRAL_URL" | sed 's/[&|\\]/\\&/g')"
        url_sed="s|^url = \"[^\"]*\"|url = \"$url_esc\"|"
    fi
    sed -e "0,/^id = \"[^\"]*\"/s//id = \"$NODE_ID\"/" -e "$url_sed" \
        "$SRC_DIR/deploy/config.example.toml" >"$tmp"
    ensure_file "$tmp" "$CONFIG" 0640 root "$SERVICE_USER"
    rm -f "$tmp"
    [[ -z "$CENTRAL_URL" ]] && warn "$(t "no --central-url: the node will only buffer until [central] url is set in %s" "$CONFIG")"
    return 0
}

store_key() {
    local ids k
    ids="$(owner_ids "$SERVICE_USER" "$SERVICE_USER")"
    k="$(R "$KEY")"
    if [[ -n "$KEY_FILE" ]]; then
        ensure_file "$KEY_FILE" "$KEY" 0600 "$SERVICE_USER" "$SERVICE_USER"
    elif [[ -f "$k" ]]; then
        unchanged "$(t "%s (kept)" "$KEY")"
        fix_meta "$k" 0600 "$ids" "$KEY"
    else
        warn "$(t "no node key: uploads stay off until you run again with --key-file (from 'streetnode-central node add')")"
    fi
}

# check_config: validate the config with the installed package; remember a failure for the exit code
check_config() {
    ((DRY_RUN)) && return 0
    local out
    if out="$("$(R "$VENV")/bin/python" -m node.cli config check "$(R "$CONFIG")" 2>&1 >/dev/null)"; then
        unchanged "$(t "%s is valid (streetnode config check)" "$CONFIG")"
    else
        printf '  %s\n' "${out//$'\n'/$'\n'  }" >&2
        warn "$(t "%s is not valid (above): the service will not start until it is fixed" "$CONFIG")"
        CONFIG_BAD=1
    fi
}

# check_identity: a buffer or key made on another machine (a copied card, #20) is named, not changed:
# an image being prepared may be copied on purpose; 'streetnode provision' on the Pi fixes it
check_identity() {
    ((DRY_RUN)) && return 0
    local out rc=0
    out="$(STREETNODE_IDENTITY_ROOT="$ROOT" "$(R "$VENV")/bin/python" -m node.commands.provision \
        "$(R "$STATE_DIR")" "$(R "$KEY")" 2>&1)" || rc=$?
    ((rc == 3)) || return 0  # 0: this machine's (or never recorded); else the check itself failed
    printf '  %s\n' "${out//$'\n'/$'\n'  }" >&2
    warn "$(t "this card was copied from another machine: run 'sudo streetnode provision' on this Pi before its readings mix with the original's (docs/install.md, cloning a card)")"
}

install_unit() {
    ensure_file "$SRC_DIR/systemd/$UNIT_NAME" "$UNIT_DIR/$UNIT_NAME" 0644 root root
    ensure_symlink "$UNIT_DIR/$UNIT_NAME" "$WANTS_DIR/$UNIT_NAME"
}

# start or restart the service when systemd runs here and something changed
activate_unit() {
    if ! systemd_running; then
        skipped "$(t "systemctl (no running systemd here: the service starts at the next boot)")"
        return 0
    fi
    run systemctl daemon-reload
    if ((CHANGES == 0)) && systemctl is-active --quiet "$UNIT_NAME"; then
        unchanged "$(t "%s running" "$UNIT_NAME")"
        return 0
    fi
    changed "$(t "%s (re)started" "$UNIT_NAME")"
    ((DRY_RUN)) && { t "would run: %s" "systemctl restart $UNIT_NAME"; echo; return 0; }
    systemctl reset-failed "$UNIT_NAME" >/dev/null 2>&1 || true  # a crash loop of an earlier version
    local started=1
    # Type=notify: 'restart' returns once the agent sent READY=1, or fails when it died first
    systemctl restart "$UNIT_NAME" >/dev/null 2>&1 || started=0
    ((CONFIG_BAD)) && return 0  # exits 78 below, naming the config problem
    wait_active "$started"
}

# wait_active STARTED: the unit must be active and stay so for SETTLE_S seconds (same main PID);
# otherwise print its last journal lines and exit 1
wait_active() {
    local state="" pid="" first="" waited=0
    while ((waited <= SETTLE_S * 2)); do
        state="$(systemctl is-active "$UNIT_NAME" 2>/dev/null || true)"
        pid="$(systemctl show -p MainPID --value "$UNIT_NAME" 2>/dev/null || true)"
        if [[ "$1" == 1 && "$state" == active && "$pid" != 0 ]]; then
            [[ -z "$first" ]] && first="$pid"
            [[ "$pid" != "$first" ]] && break  # restarted under us: crashed after READY
            if ((waited >= SETTLE_S * 2)); then
                say "$(t "%s active (main PID %s)" "$UNIT_NAME" "$pid")"
                return 0
            fi
        elif [[ "$state" != activating && "$state" != reloading ]]; then
            break
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "$PROG: $(t "%s is not running (state: %s); its last log lines:" "$UNIT_NAME" "${state:-unknown}")" >&2
    journalctl -u "$UNIT_NAME" -n 20 --no-pager -o cat 2>/dev/null | sed 's/^/  /' >&2 || true
    die $EX_FAILURE "$(t "%s did not become active: fix the cause above and run install.sh again" "$UNIT_NAME")"
}

run_diag() {
    local exe="$VENV/bin/streetnode"
    if [[ "$DIAG" == "no" ]] || { [[ "$DIAG" == "auto" ]] && { [[ -n "$ROOT" ]] || ((NO_SYSTEM)); }; }; then
        skipped "$(t "streetnode diag (--root/--no-system/--no-diag; run it on the node)")"
        return 0
    fi
    if ((DRY_RUN)); then t "would run: %s" "$exe --config $CONFIG diag"; echo; return 0; fi
    local cmd=("$(R "$exe")")
    [[ -n "$ROOT" ]] && cmd=("$(R "$VENV")/bin/python" -m node.cli)
    if ! "${cmd[@]}" diag --help >/dev/null 2>&1; then
        skipped "$(t "streetnode diag (this version has no diag command)")"
        return 0
    fi
    local args=(--config "$(R "$CONFIG")" diag)
    ((DIAG_EMULATE)) && args+=(--emulate)
    local as=()
    if ((!NO_SYSTEM)) && [[ -z "$ROOT" ]] && command -v runuser >/dev/null; then
        as=(runuser -u "$SERVICE_USER" --)
    fi
    say "$(t "running: %s" "streetnode ${args[*]}")"
    local rc=0
    "${as[@]}" "${cmd[@]}" "${args[@]}" || rc=$?
    if ((rc == 0)); then
        say "$(t "diag: all checks passed")"
    else
        say "$(t "diag: exit %s (warnings or failures above, e.g. sensors not wired yet); the install itself is complete" "$rc")"
    fi
}

do_install() {
    if ((DRY_RUN)); then
        say "$(t "installing streetnode from %s into %s (dry run)" "${WHEEL:-$SRC_DIR}" "${ROOT:-/}")"
    else
        say "$(t "installing streetnode from %s into %s" "${WHEEL:-$SRC_DIR}" "${ROOT:-/}")"
    fi
    check_debian
    if [[ -z "$NODE_ID" && ! -f "$(R "$CONFIG")" ]]; then
        die $EX_USAGE "$(t "--node-id is required on the first install (no %s yet)" "$CONFIG")"
    fi
    local have_python=1
    check_python || have_python=0
    install_packages
    if ((!have_python)); then
        ((DRY_RUN)) || check_python || die $EX_UNAVAILABLE "$(t "%s not found (apt should have installed python3)" "$PYTHON")"
    fi
    enable_i2c
    create_user
    ensure_dir "$PREFIX" 0755 root root
    ensure_dir "$ETC_DIR" 0750 root "$SERVICE_USER"
    ensure_dir "$STATE_DIR" 0750 "$SERVICE_USER" "$SERVICE_USER"
    install_venv
    check_gpio_backend
    write_config
    store_key
    check_config
    check_identity
    install_unit
    activate_unit
    run_diag
}

do_central_install() {
    if ((DRY_RUN)); then
        say "$(t "installing streetnode-central from %s into %s (dry run)" "${WHEEL:-$SRC_DIR}" "${ROOT:-/}")"
    else
        say "$(t "installing streetnode-central from %s into %s" "${WHEEL:-$SRC_DIR}" "${ROOT:-/}")"
    fi
    check_debian
    local have_python=1
    check_python || have_python=0
    install_packages
    if ((!have_python)); then
        ((DRY_RUN)) || check_python || die $EX_UNAVAILABLE "$(t "%s not found (apt should have installed python3)" "$PYTHON")"
    fi
    ensure_dir "$PREFIX" 0755 root root
    install_venv
    install_unit
    activate_unit
}

# --uninstall, node or central: the service stopped and disabled, its unit gone
stop_and_remove_unit() {
    if systemd_running && [[ -f "$UNIT_DIR/$UNIT_NAME" ]]; then
        changed "$(t "%s stopped and disabled" "$UNIT_NAME")"
        run systemctl disable --now "$UNIT_NAME" || true
    fi
    remove_path "$WANTS_DIR/$UNIT_NAME"
    remove_path "$UNIT_DIR/$UNIT_NAME"
}

do_central_uninstall() {
    say "$(t "removing %s from %s" "streetnode-central" "${ROOT:-/}")$( ((PURGE)) && t " (purge)")$( ((DRY_RUN)) && t " (dry run)")"
    stop_and_remove_unit
    remove_path "$PREFIX"
    systemd_running && run systemctl daemon-reload
    if ((PURGE)); then
        remove_path /var/lib/streetnode-central
        remove_path /var/lib/private/streetnode-central
        remove_path /etc/streetnode-central
    else
        [[ -e "$(R /var/lib/private/streetnode-central)" ]] && say "$(t "kept: %s (the store)" /var/lib/streetnode-central)"
        say "$(t "--uninstall --purge removes it too")"
    fi
}

do_uninstall() {
    say "$(t "removing %s from %s" "streetnode" "${ROOT:-/}")$( ((PURGE)) && t " (purge)")$( ((DRY_RUN)) && t " (dry run)")"
    stop_and_remove_unit
    remove_path "$MODULES_FILE"
    remove_path "$PREFIX"
    systemd_running && run systemctl daemon-reload
    if ((PURGE)); then
        remove_path "$ETC_DIR"
        remove_path "$STATE_DIR"
        if ((!NO_SYSTEM)) && [[ -n "$(uid_of "$SERVICE_USER")" ]]; then
            removed "$(t "user %s" "$SERVICE_USER")"
            run userdel ${ROOT:+--root "$ROOT"} "$SERVICE_USER"
        fi
    else
        [[ -e "$(R "$ETC_DIR")" ]] && say "$(t "kept: %s (config, node key)" "$ETC_DIR")"
        [[ -e "$(R "$STATE_DIR")" ]] && say "$(t "kept: %s (buffered readings)" "$STATE_DIR")"
        say "$(t "--uninstall --purge removes them too")"
    fi
}

main() {
    parse_args "$@"
    check_root "$@"
    if ((CENTRAL && UNINSTALL)); then do_central_uninstall
    elif ((CENTRAL)); then do_central_install
    elif ((UNINSTALL)); then do_uninstall
    else do_install; fi
    if ((DRY_RUN)); then
        say "$(t "dry run: %s changes would be made" "$CHANGES")"
    else
        say "$(t "%s changes" "$CHANGES")"
    fi
    if ((CONFIG_BAD)); then die $EX_CONFIG "$(t "installed, but %s is invalid: fix it, then run install.sh again" "$CONFIG")"; fi
}

main "$@"
