"""Configuration from the central, on the node: which version runs, the last good one, the trial.

The pole's file stays the local truth; the central's layers (node/remote_keys.py) go over it. A
version fetched from the central (`Fleet.prepare`, after the receipt verified) is checked again here,
written, then applied in-process by the agent, which runs a `HealthCheck`: within
``[fleet] health_window`` every sensor that sampled before must sample again and one upload must
complete with the new settings, else the agent goes back to the last good version (`Fleet.revert`)
and the failed version and the reason travel in the health of every batch.

Everything the node must remember lives in one JSON file in the state directory, replaced
atomically (write, fsync, rename, fsync of the directory) at each step, the last good version beside
the current one: a power loss leaves either the file before the step or the file after it, so the
node comes back on the old or the new configuration, never a mix. A restart during a health check
resumes it (a power cut is not the configuration's fault); after `MAX_TRIAL_STARTS` restarts within
one check the version counts as failed (a configuration that makes the agent crash).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node.config import Config, load_raw, validate
from node.errors import ConfigError
from node.remote_keys import check_layer, layer_hash, merge, overlay

log = logging.getLogger("streetnode.fleet")

STATE_FILE = "fleet-config.json"
MAX_TRIAL_STARTS = 3
REASON_MAX = 240  # a health value is at most 256 characters (docs/protocol.md)


@dataclass(frozen=True)
class Version:
    """One desired configuration as the central sent it: its label, hash and layers (TOML)."""

    version: str
    hash: str
    layers: tuple[dict[str, Any], ...]  # {"id", "scope", "target", "toml"}, group first

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "hash": self.hash, "layers": list(self.layers)}

    @classmethod
    def from_json(cls, doc: Any) -> Version:
        """From the central's answer or the state file; raises `ConfigError` on a malformed one."""
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str) \
                or not isinstance(doc.get("hash"), str) or not isinstance(doc.get("layers"), list):
            raise ConfigError("central configuration: expected version, hash and layers")
        layers = []
        for i, layer in enumerate(doc["layers"]):
            if not isinstance(layer, dict) or not isinstance(layer.get("toml"), str):
                raise ConfigError(f"central configuration: layers[{i}]: expected a table with its toml")
            layers.append({k: layer.get(k) for k in ("id", "scope", "target", "toml")})
        return cls(doc["version"], doc["hash"], tuple(layers))


def build_config(local_raw: dict[str, Any], source: str, version: Version | None) -> Config:
    """The effective configuration: the pole's parsed file with ``version``'s layers over it.
    Raises `ConfigError` (one line per problem) when the node refuses the version."""
    if version is None:
        return validate(local_raw, source=source)
    merged: dict[str, Any] = {}
    problems: list[str] = []
    for layer in version.layers:
        name = f"{layer.get('scope')} layer v{layer.get('id')}"
        try:
            doc = tomllib.loads(layer["toml"])
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{name}: not valid TOML: {e}") from None
        problems += check_layer(doc)
        merged = merge(merged, doc)
    if problems:
        raise ConfigError(problems)
    if layer_hash(merged) != version.hash:
        raise ConfigError(f"central configuration {version.version}: hash {version.hash} does not match "
                          f"its layers ({layer_hash(merged)})")
    raw, problems = overlay(local_raw, merged)
    url = (merged.get("central") or {}).get("url")
    if isinstance(url, str) and urlsplit(url).scheme == "http":
        from node.upload_transport import is_loopback

        if not is_loopback(urlsplit(url).hostname):
            problems.append("central.url: plain http:// is only allowed to a loopback host; use https://")
    if problems:
        raise ConfigError(problems)
    return validate(raw, source=f"{source} + central {version.version}")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: write a temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """One step at a time: the sampling thread, the upload thread and a SIGHUP reload all call in."""

    @functools.wraps(method)
    def run(self: Fleet, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


class Fleet:
    """The node's side of fleet configuration: ``Fleet(local_raw, source, state_dir)``."""

    def __init__(self, local_raw: dict[str, Any], source: str, state_dir: Path, *,
                 wall: Callable[[], float] = time.time) -> None:
        self.local_raw = local_raw
        self.source = source
        self.path = Path(state_dir) / STATE_FILE
        self._wall = wall
        self._lock = threading.RLock()
        self.current: Version | None = None  # what runs (None: the pole's file alone)
        self.last_good: Version | None = None  # what to go back to
        self.trial: dict[str, Any] | None = None  # {"version", "starts"} while a health check runs
        self.failed: dict[str, Any] | None = None  # {"version", "hash", "reason", "at"}
        self._load()

    # ------------------------------------------------------------ the state file
    def _load(self) -> None:
        for stale in self.path.parent.glob(f".{STATE_FILE}.*.tmp"):  # a write a power cut interrupted
            try:
                stale.unlink()
            except OSError:
                pass
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:  # rename is atomic, so this is damage, not a torn write
            log.error("%s unreadable (%s): running on the pole's file alone", self.path, e)
            return
        try:
            self.current = None if doc.get("current") is None else Version.from_json(doc["current"])
            self.last_good = None if doc.get("last_good") is None else Version.from_json(doc["last_good"])
        except ConfigError as e:
            log.error("%s: %s: running on the pole's file alone", self.path, e)
            self.current = self.last_good = None
            return
        self.trial = doc.get("trial") if isinstance(doc.get("trial"), dict) else None
        self.failed = doc.get("failed") if isinstance(doc.get("failed"), dict) else None

    def _save(self) -> None:
        doc = {"current": self.current and self.current.as_json(),
               "last_good": self.last_good and self.last_good.as_json(),
               "trial": self.trial, "failed": self.failed}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(doc, indent=1) + "\n")

    # ------------------------------------------------------------ start and SIGHUP
    @_locked
    def startup(self) -> Config:
        """The configuration to start with; a health check a restart interrupted resumes (or, the
        `MAX_TRIAL_STARTS`-th time, counts as failed)."""
        if self.trial is not None and self.current is not None:
            self.trial["starts"] = int(self.trial.get("starts", 1)) + 1
            if self.trial["starts"] > MAX_TRIAL_STARTS:
                return self.revert(f"the agent restarted {self.trial['starts'] - 1} times during the "
                                   "health check")
            self._save()
            log.warning("configuration %s: the health check was interrupted by a restart; checking again",
                        self.current.version)
        return self.effective()

    @_locked
    def effective(self) -> Config:
        """The pole's file with the current version over it; if the file no longer accepts it (a
        technician changed it), the last good version, else the file alone, and the failure noted."""
        for candidate in (self.current, self.last_good):
            if candidate is None:
                continue
            try:
                return build_config(self.local_raw, self.source, candidate)
            except ConfigError as e:
                self._note_failure(candidate, f"no longer fits the pole's file: {e.problems[0]}")
                self.current = self.last_good if candidate is self.current else None
                self.trial = None
                self._save()
        self.current = self.last_good = None
        return validate(self.local_raw, source=self.source)

    @_locked
    def reload(self, path: str) -> Config:
        """SIGHUP: read the pole's file again and put the current version over it."""
        raw, self.source = load_raw(path)
        validate(raw, source=self.source)  # the file alone must be valid, else nothing changes
        self.local_raw = raw
        return self.effective()

    # ------------------------------------------------------------ a new version
    @_locked
    def wants(self, hint: Any) -> bool:
        """Does the desired ``{"version", "hash"}`` of an ingest answer call for a fetch?"""
        if not isinstance(hint, dict) or not isinstance(hint.get("version"), str) or self.trial is not None:
            return False
        if self.current is not None and hint["version"] == self.current.version:
            return False
        failed = self.failed or {}
        return not (hint["version"] == failed.get("version") and hint.get("hash") == failed.get("hash"))

    @_locked
    def prepare(self, answer: Any) -> tuple[Version, Config]:
        """Check a fetched (receipt-verified) answer; raises `ConfigError` (then call `refuse`)."""
        version = Version.from_json(answer)
        return version, build_config(self.local_raw, self.source, version)

    @_locked
    def refuse(self, answer: Any, reason: str) -> None:
        """Remember a version the node would not apply, so it is reported and not fetched again."""
        doc = answer if isinstance(answer, dict) else {}
        self.failed = {"version": str(doc.get("version")), "hash": doc.get("hash"),
                       "reason": _short(reason), "at": self._wall()}
        self._save()

    @_locked
    def begin(self, version: Version, sensors: Iterable[str] = ()) -> None:
        """Written before the agent applies ``version``: it is current, on trial; the running one is
        the last good. ``sensors``: those that sampled before (the check resumes with them after a
        restart)."""
        if self.trial is None:
            self.last_good = self.current
        self.current = version
        self.trial = {"version": version.version, "starts": 1, "at": self._wall(),
                      "sensors": sorted(sensors)}
        self._save()

    @_locked
    def commit(self) -> None:
        """The health check passed: the current version is the last good one."""
        assert self.current is not None
        self.last_good = self.current
        self.trial = None
        if self.failed is not None and self.failed.get("version") != self.current.version:
            self.failed = None  # a newer version works: the old failure is history
        self._save()

    @_locked
    def revert(self, reason: str) -> Config:
        """The health check failed: back to the last good version; returns its configuration."""
        if self.current is not None:
            self._note_failure(self.current, reason)
        self.current = self.last_good
        self.trial = None
        self._save()
        return self.effective()

    def _note_failure(self, version: Version, reason: str) -> None:
        self.failed = {"version": version.version, "hash": version.hash, "reason": _short(reason),
                       "at": self._wall()}
        log.error("configuration %s failed: %s", version.version, reason)

    # ------------------------------------------------------------ reporting
    @_locked
    def report(self) -> dict[str, Any]:
        """Health keys (docs/protocol.md): version, origin, state, the last failure."""
        failed = self.failed or {}
        return {"config_version": self.current.version if self.current else None,
                "config_origin": "central" if self.current else "local",
                "config_state": "trial" if self.trial is not None else "ok",
                "config_failed_version": failed.get("version"),
                "config_failed_reason": failed.get("reason")}


def read_report(state_dir: Path) -> dict[str, Any]:
    """`Fleet.report` from the state file alone (`streetnode status` when the daemon is stopped)."""
    try:
        doc = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return local_report()
    current = doc.get("current") if isinstance(doc, dict) else None
    failed = doc.get("failed") if isinstance(doc.get("failed"), dict) else {}
    return {"config_version": current.get("version") if isinstance(current, dict) else None,
            "config_origin": "central" if isinstance(current, dict) else "local",
            "config_state": "trial" if doc.get("trial") else "ok",
            "config_failed_version": failed.get("version"), "config_failed_reason": failed.get("reason")}


def describe(cfg: Config) -> str:
    """One line for `streetnode diag`: the central's version (or the file alone) and the effective
    hash, computed from the state file without changing it."""
    from node.config import config_hash

    report = read_report(cfg.state_dir)
    version = report["config_version"]
    effective = cfg
    if version is not None:
        try:
            doc = json.loads((cfg.state_dir / STATE_FILE).read_text(encoding="utf-8"))
            raw, source = load_raw(cfg.source)
            effective = build_config(raw, source, Version.from_json(doc["current"]))
        except (OSError, ValueError, KeyError, ConfigError):
            pass
    from node.i18n import _

    digest = config_hash(effective)
    if version:
        text = _("config version {version} from the central (hash {hash})").format(version=version,
                                                                                     hash=digest)
    else:
        text = _("config: the local file only (hash {hash})").format(hash=digest)
    if report["config_state"] == "trial":
        text += "; " + _("health check running")
    if report["config_failed_version"]:
        text += "; " + _("version {version} failed: {reason}").format(
            version=report["config_failed_version"], reason=report["config_failed_reason"])
    return text


def local_report() -> dict[str, Any]:
    """The same keys for a node that takes no configuration from the central."""
    return {"config_version": None, "config_origin": "local", "config_state": "ok",
            "config_failed_version": None, "config_failed_reason": None}


def _short(text: str) -> str:
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= REASON_MAX else one_line[:REASON_MAX - 3] + "..."


class HealthCheck:
    """After applying a version: every sensor that sampled before samples again, and one upload
    completes with the new settings, within ``window_s`` (on the agent's monotonic clock)."""

    def __init__(self, version: str, started: float, window_s: float, sensors: Iterable[str],
                 generation: int) -> None:
        self.version = version
        self.started = started
        self.window_s = window_s
        self.sensors = set(sensors)
        self.generation = generation  # the upload loop's settings generation that carries the change
        self.uploaded = False
        self.upload_error: str | None = None

    def upload_round(self, generation: int, acked_batches: int, error: str | None) -> None:
        """From the upload thread: one round ended, run with settings ``generation``."""
        if generation < self.generation:
            return
        if acked_batches > 0:
            self.uploaded = True
        elif error:
            self.upload_error = error

    def verdict(self, now: float, sampled: dict[str, float | None]) -> bool | str:
        """True (healthy), a reason (failed: the window passed), or False (not decided yet).
        ``sampled``: sensor name -> monotonic time of its last good sample (None: never)."""
        missing = sorted(n for n in self.sensors if n in sampled and
                         (sampled[n] is None or sampled[n] < self.started))  # type: ignore[operator]
        if not missing and self.uploaded:
            return True
        if now - self.started < self.window_s:
            return False
        reasons = []
        if not self.uploaded:
            last = f" (last error: {self.upload_error})" if self.upload_error else ""
            reasons.append(f"no upload completed with the new settings within {self.window_s:g}s{last}")
        if missing:
            reasons.append(f"sensors not sampled within {self.window_s:g}s: {', '.join(missing)}")
        return "; ".join(reasons)
