"""A Debian container booted with systemd as PID 1 (systemd-nspawn), for the system test.

The cached tree (`rootfs.ensure_tree`) is the read-only lower layer of an overlayfs; the run's
changes go to an upper directory removed afterwards, so runs never pollute the cache. The
container has its own network namespace (loopback only: nothing it runs can clash with the
host's ports) and is always stopped and unmounted, even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

NSPAWN_ENV = {"SYSTEMD_SECCOMP": "0", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
INSIDE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
              "HOME=/root", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]


class ContainerError(RuntimeError):
    pass


class Container:
    """``with Container(tree) as c: c.run("systemctl", "is-active", "x")``."""

    def __init__(self, tree: Path, work_parent: Path) -> None:
        self.tree, self.work_parent = tree, work_parent
        self.work: Path | None = None
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.boot_s = 0.0

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, boot_timeout_s: float = 60.0) -> None:
        self.work_parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_parent))
        for d in ("upper", "ovlwork", "root"):
            (self.work / d).mkdir()
        self.root = self.work / "root"
        layers = f"lowerdir={self.tree},upperdir={self.work / 'upper'},workdir={self.work / 'ovlwork'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(self.root)], check=True,
                       capture_output=True)
        t0 = time.monotonic()
        log = open(self.work / "nspawn.log", "wb")  # noqa: SIM115 (kept open for the container's life)
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "--boot", "--register=no", "--keep-unit",
             "--console=passive", "--capability=all", "--private-network", f"--machine=pole{os.getpid()}"],
            env={**os.environ, **NSPAWN_ENV}, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.pid1 = self._find_pid1(deadline=time.monotonic() + 20)
        deadline = time.monotonic() + boot_timeout_s
        state = ""
        while time.monotonic() < deadline:  # 'offline' until PID 1 listens on its private socket
            state = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=max(1.0, deadline - time.monotonic())).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.1)
        self.boot_s = time.monotonic() - t0
        if state not in ("running", "degraded"):
            raise ContainerError(f"the container did not boot within {boot_timeout_s:g} s: is-system-running "
                                 f"says {state!r}\n{self.log_tail()}")

    def _find_pid1(self, deadline: float) -> int:
        """The container's init: a descendant of systemd-nspawn whose PID in its namespace is 1."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerError("systemd-nspawn exited: " + self.log_tail())
            for pid in _descendants(self.proc.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
                if len(nspid) >= 2 and nspid[-1] == "1":
                    return pid
            time.sleep(0.05)
        raise ContainerError("the container's PID 1 did not appear within 20 s: " + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.work / "nspawn.log").read_text(errors="replace") if self.work else ""
        except OSError:
            text = ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Power the container off (SIGKILL after 20 s), unmount, remove the run's files."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1:
                try:
                    os.kill(self.pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.root is not None:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
        self.proc, self.root, self.work = None, None, None

    # ------------------------------------------------------------ inside
    def run(self, *cmd: str, check: bool = True, timeout: float = 120.0, input: str | None = None,
            env: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        """``cmd`` inside the container (all its namespaces), with a clean environment."""
        full = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *INSIDE_ENV, *(env or []), *cmd]
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise ContainerError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout[-3000:]}\n"
                                 f"{r.stderr[-3000:]}")
        return r

    def path(self, inside: str) -> Path:
        """A path of the container's file system, seen from the host."""
        assert self.root is not None
        return self.root / inside.lstrip("/")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            out.append(c)
            todo.append(c)
    return out
