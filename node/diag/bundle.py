"""The support archive a technician sends to the city's operators.

`write_bundle(ctx, path)` writes a tar.gz with ``diag.json``, ``config.toml`` (the
effective configuration, secrets redacted), ``journal.txt`` (where journalctl
exists), ``buffer.json`` and ``versions.json``. Every member is scrubbed of the
node key and of URL credentials before it is written, whatever produced it.
"""

from __future__ import annotations

import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node import __version__, config
from node.diag.checks import run_diag
from node.diag.context import SERVICE_NAME, DiagContext
from node.diag.render import to_dict
from node.diag.storage import BUFFER_FILE

PACKAGES = ("streetnode", "gpiozero", "smbus2", "adafruit-circuitpython-bme280",
            "adafruit-circuitpython-pm25", "requests")
JOURNAL_LINES = 2000


def secrets_of(ctx: DiagContext) -> list[str]:
    """Strings that must never leave the node: the key (as stored and as hex), URL credentials."""
    out: list[str] = []
    if ctx.cfg is None:
        return out
    url = ctx.cfg.central["url"]
    if url:
        parts = urlsplit(url)
        out += [s for s in (parts.password, parts.query) if s]
        if parts.username and parts.password:
            out.append(f"{parts.username}:{parts.password}")
    try:
        raw = Path(ctx.cfg.central["key_file"]).read_bytes().strip()
        if raw:
            out.append(raw.decode("utf-8", "replace"))
            if re.fullmatch(rb"[0-9a-fA-F]+", raw):
                out += [raw.decode().lower(), raw.decode().upper()]
    except OSError:
        pass
    return sorted({s for s in out if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


def _journal(ctx: DiagContext) -> str:
    journalctl = shutil.which("journalctl")
    if not journalctl:
        return "journalctl not available on this system\n"
    try:
        p = subprocess.run([journalctl, "-u", SERVICE_NAME, "-n", str(JOURNAL_LINES), "--no-pager",
                            "-o", "short-iso-precise"], capture_output=True, text=True, timeout=5,
                           check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"journalctl failed: {e}\n"
    return p.stdout + (f"\n[journalctl exit {p.returncode}: {p.stderr.strip()}]\n" if p.returncode else "")


def _buffer(ctx: DiagContext) -> dict[str, Any]:
    if ctx.cfg is None:
        return {"error": "configuration invalid"}
    from node.buffer import SqliteBuffer
    from node.errors import StorageError

    path = ctx.state_dir / BUFFER_FILE
    try:
        return {"path": str(path), **asdict(SqliteBuffer.inspect(path, check=False))}
    except StorageError as e:
        return {"path": str(path), "error": str(e)}


def _versions(ctx: DiagContext) -> dict[str, Any]:
    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    os_release = {}
    try:
        for line in ctx.path("/etc/os-release").read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                os_release[k] = v.strip('"')
    except OSError:
        pass
    return {"streetnode": __version__, "python": sys.version, "platform": platform.platform(),
            "machine": platform.machine(), "packages": pkgs,
            "os": os_release.get("PRETTY_NAME"), "model": _model(ctx)}


def _model(ctx: DiagContext) -> str | None:
    try:
        return ctx.path("/proc/device-tree/model").read_text().strip("\0\n ")
    except OSError:
        return None


def default_name(ctx: DiagContext, now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"streetnode-bundle-{ctx.node_id or 'unknown'}-{stamp}.tar.gz"


def write_bundle(ctx: DiagContext, path: Path) -> tuple[Path, int]:
    """Write the archive; returns (path, diag exit code)."""
    report = run_diag(ctx)
    members: dict[str, str] = {
        "diag.json": json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n",
        "journal.txt": _journal(ctx),
        "buffer.json": json.dumps(_buffer(ctx), indent=2) + "\n",
        "versions.json": json.dumps(_versions(ctx), indent=2) + "\n",
    }
    if ctx.cfg is not None:
        members["config.toml"] = config.to_toml(ctx.cfg)
    else:
        problems = ctx.config_error.problems if ctx.config_error else []
        members["config-errors.txt"] = "\n".join(problems) + "\n"
    secrets = secrets_of(ctx)
    now = ctx.wall()
    top = path.name.removesuffix(".tar.gz")
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for name, text in members.items():
            data = scrub(text, secrets).encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path, report.exit_code
