"""A debootstrapped Debian tree for the system test, built once and cached outside the checkout.

The tree is keyed by suite + package list (a new list makes a new tree); a build goes to a
temporary directory renamed into place, under a lock, so two runs never see half a tree.
Runs never write into it: each boots an overlayfs (copy-on-write) on top of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SUITE = "bookworm"
# systemd as PID 1, plus what deploy/install.sh would apt-get (so a run needs no Debian mirror)
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "i2c-tools", "procps",
            "python3-libgpiod", "ca-certificates")
CACHE_ENV = "STREETNODE_TEST_CACHE"


def cache_dir() -> Path:
    """$STREETNODE_TEST_CACHE, else /var/cache/streetnode-test (root), else $XDG_CACHE_HOME/..."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/streetnode-test")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "streetnode-test"


def tree_key() -> str:
    text = SUITE + "\n" + "\n".join(sorted(PACKAGES))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("debian"):
                        return uri
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                for w in words[1:] if words and words[0] == "deb" else []:
                    if w.startswith("http") and w.rstrip("/").endswith("debian"):
                        return w
    return "http://deb.debian.org/debian"


def ensure_tree(log: Path | None = None) -> Path:
    """The cached tree (built now if missing, ~1 minute); raises RuntimeError with the log's tail."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    tree = root / f"{SUITE}-{tree_key()}"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tree / ".streetnode-ok").exists():
            return tree
        tmp = root / f".build-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log = log or root / "debootstrap.log"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp),
               mirror()]
        with open(log, "w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed (exit {rc}); {log}:\n" + "\n".join(tail))
        # no console login prompt, no waiting for a network the container does not have
        for unit in ("getty@tty1.service", "console-getty.service"):
            (tmp / "etc/systemd/system" / unit).unlink(missing_ok=True)
            os.symlink("/dev/null", tmp / "etc/systemd/system" / unit)
        (tmp / "etc/hostname").write_text("pole\n")
        (tmp / ".streetnode-ok").write_text(" ".join(PACKAGES) + "\n")
        shutil.rmtree(tree, ignore_errors=True)
        os.rename(tmp, tree)
        return tree


if __name__ == "__main__":
    print(ensure_tree())
    sys.exit(0)
