"""`python -m node.bytecode`: compile the daemon's modules before the daemon starts (issue #22).

The unit runs `streetnode run` with ``PYTHONOPTIMIZE=2`` (``python -OO``: no docstrings, no
asserts; 1.3 MiB less RSS, docs/agent.md) and ``PYTHONPYCACHEPREFIX`` in its cache directory:
the venv and the system's Python are read-only to the daemon and hold only the plain ``.pyc``
files pip and apt compiled, so the ``.opt-2.pyc`` files live in ``/var/cache/streetnode``.
A process that compiles its own modules keeps the compiler's garbage for life (+4 MiB measured),
so the unit's ``ExecStartPre=`` runs this first, in a process of its own: importing the modules
the daemon imports writes every ``.opt-2.pyc`` that is missing or stale (the first start, an
upgrade of streetnode or of Python).

The list is the daemon's own imports, not a directory walk: the cache holds what runs. The
source files it loaded are kept in ``MANIFEST`` beside the cache; when every one of them still has
a current byte-code file (the header's source mtime and size, as the import system checks), a
start costs a few hundred ``stat`` calls and nothing is imported. A module the list misses is
compiled by the daemon itself (memory, nothing fails); tests/agent/test_bytecode.py checks that
a daemon started after this compiles nothing. Exit status 0 unless ``--strict``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import py_compile
import sys
from pathlib import Path

# The roots of what `streetnode run` imports; what they import comes along. Lazy imports (inside
# functions: drivers, pin factories, the uploader's stack) are named here one by one.
DAEMON_MODULES = (
    "node.cli", "node.commands.config_cmd", "node.commands.run", "node.commands.status",
    "node.commands.demo", "node.commands.diag", "node.commands.scan", "node.commands.read",
    "node.commands.identify", "node.commands.bundle", "node.commands.provision", "node.logsetup",
    "node.agent", "node.fleet", "node.buffer", "node.keyfile", "node.uploader", "node.memory",
    "node.upload_transport",
    "drivers.i2c", "drivers.base", "drivers.bme280", "drivers.pm25", "drivers.flood",
    "drivers.rain", "drivers.health", "drivers.led", "drivers.alarm", "drivers.emulator",
    "drivers.emulator.gpio", "drivers.emulator.health", "drivers.emulator.rig",
    "gpiozero", "gpiozero.pins.mock", "gpiozero.pins.lgpio", "gpiozero.pins.native",
    "smbus2", "zoneinfo", "encodings.idna", "encodings.ascii", "html", "ctypes.util",
    "concurrent.futures.thread",
)
# Adafruit drivers load through drivers.i2c.load_adafruit (Blinka's stand-ins first)
ADAFRUIT_MODULES = ("adafruit_bme280.advanced", "adafruit_bme280.protocol", "adafruit_pm25",
                    "adafruit_pm25.i2c", "adafruit_bus_device.i2c_device")
# run as scripts, never imported here: compiled without running them
SCRIPT_MODULES = ("node.__main__",)
MANIFEST = "streetnode-bytecode.txt"
_HEADER_BYTES = 16  # PEP 552: magic, flags, source mtime, source size


def is_current(source: str) -> bool:
    """True when ``source`` has a byte-code file (at this interpreter's optimization level and
    cache prefix) that the import system would load without compiling."""
    try:
        st = os.stat(source)
        with open(importlib.util.cache_from_source(source), "rb") as f:
            header = f.read(_HEADER_BYTES)
    except (OSError, ValueError):
        return False
    if len(header) < _HEADER_BYTES or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little") != 0:  # hash-based pyc: not what we write
        return False
    mtime = int.from_bytes(header[8:12], "little")
    size = int.from_bytes(header[12:16], "little")
    return mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF


def manifest_path() -> Path | None:
    prefix = sys.pycache_prefix
    return Path(prefix) / MANIFEST if prefix else None


def all_current(manifest: Path | None) -> bool:
    """Every source file of the last full pass still has current byte code."""
    if manifest is None:
        return False
    try:
        sources = manifest.read_text().splitlines()
    except OSError:
        return False
    return bool(sources) and all(is_current(s) for s in sources)


def compile_daemon_modules() -> list[str]:
    """Import every module of the lists (writing their byte code); the names that failed."""
    sys.dont_write_bytecode = False  # the point of this process, whatever its environment says
    failed = []
    for name in SCRIPT_MODULES:
        try:
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin:
                raise ImportError(name)
            py_compile.compile(spec.origin, cfile=importlib.util.cache_from_source(spec.origin),
                               doraise=True)
        except Exception:
            failed.append(name)
    for name in DAEMON_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a pin library absent on this machine (lgpio off a Pi): nothing to cache
            failed.append(name)
    try:
        from drivers.i2c import load_adafruit
    except Exception:
        return failed + list(ADAFRUIT_MODULES)
    for name in ADAFRUIT_MODULES:
        try:
            load_adafruit(name)
        except Exception:
            failed.append(name)
    return failed


def loaded_sources() -> list[str]:
    """The source files of every module this process loaded (what the next check looks at)."""
    out = set()
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.origin == "frozen":  # inside the interpreter: no byte-code file
            continue
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and os.path.isfile(path):
            out.add(path)
    for name in SCRIPT_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            out.add(spec.origin)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    manifest = manifest_path()
    if all_current(manifest):
        return 0
    failed = compile_daemon_modules()
    if manifest is not None:
        try:
            manifest.write_text("".join(f"{s}\n" for s in loaded_sources()))
        except OSError as e:
            print(f"node.bytecode: {manifest}: {e.strerror}", file=sys.stderr)
    if failed:
        print(f"node.bytecode: not importable here (not cached): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed and "--strict" in args else 0


if __name__ == "__main__":
    sys.exit(main())
