"""What the benchmark ran on: CPU and caches (lscpu), memory, load, versions, commit; RSS probes."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

__all__ = ["lscpu", "llc_bytes", "machine_info", "git_commit", "vm_status", "reset_peak_rss",
           "load_average"]

REPO = Path(__file__).resolve().parent.parent

_LSCPU_KEYS = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)",
               "L1d cache", "L1i cache", "L2 cache", "L3 cache", "NUMA node(s)", "Flags")


def lscpu() -> Dict[str, str]:
    """The fields of ``lscpu`` the report shows ({} if lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in _LSCPU_KEYS:
            fields[key.strip()] = value.strip()
    flags = fields.pop("Flags", "").split()
    fields["SIMD flags"] = " ".join(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
    return fields


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def llc_bytes(info: Dict[str, str]) -> Optional[int]:
    """Size of the last-level cache in bytes from lscpu fields ("480 MiB (1 instance)")."""
    for key in ("L3 cache", "L2 cache"):
        m = re.match(r"\s*([\d.]+)\s*([KMG]?)i?B", info.get(key, ""))
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2)])
    return None


def load_average() -> list:
    """The 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def git_commit() -> Dict[str, object]:
    """HEAD's hash and whether tracked files differ from it (read-only git calls)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True, env=env).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": head, "dirty": bool(dirty),
            "modified_files": [line[3:] for line in dirty.splitlines()]}


def machine_info() -> Dict[str, object]:
    """CPU, memory, OS and library versions."""
    import numpy
    import moelab

    mem = vm_status("/proc/meminfo", ("MemTotal",))
    info = {"lscpu": lscpu(), "mem_total_bytes": mem.get("MemTotal"),
            "os": platform.platform(), "python": sys.version.split()[0],
            "numpy": numpy.__version__, "moelab": moelab.__version__,
            "moelab_build_info": moelab.build_info(), "git": git_commit()}
    try:
        import torch
        import transformers
        info["torch"] = torch.__version__
        info["transformers"] = transformers.__version__
        info["torch_parallel_info"] = torch.__config__.parallel_info().splitlines()[:8]
    except ImportError as exc:
        info["torch"] = f"not importable: {exc}"
    return info


def vm_status(path: str = "/proc/self/status", keys=("VmRSS", "VmHWM")) -> Dict[str, int]:
    """Selected ``kB`` fields of a /proc status file, in bytes."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
