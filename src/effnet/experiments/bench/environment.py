"""What the numbers depend on and whether the machine was quiet: versions and hardware, CPUs busy with other work, RSS."""

from __future__ import annotations

import os
import platform
import threading
import time
import warnings
from typing import Any

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MB = 1024.0 * 1024.0
SAMPLE_INTERVAL_S = 0.005


def environment() -> dict[str, Any]:
    """What the numbers depend on: CPU, GPU, core count, current load, library versions."""
    import torch

    from effnet._version import __version__

    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for module in ("timm", "torchvision"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    versions["effnet"] = __version__
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def busy_cpus(interval: float = 0.5) -> float | None:
    """CPUs in use over the next `interval` seconds (Linux /proc/stat), else the 1-minute load average."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    elapsed = max(total1 - total0, 1)
    return round((1 - (idle1 - idle0) / elapsed) * (os.cpu_count() or 1), 2)


def busy_warning(threads: int) -> float | None:
    """How many CPUs other processes keep busy right now; warns when the benchmark threads would not get a core each.

    With more runnable threads than cores, each of the hundreds of parallel regions in a
    forward pass can wait a whole scheduler time slice for a descheduled worker: 2 threads
    next to one busy process measured over 10x slower than 1 thread on a 2-core machine.
    """
    busy = busy_cpus()
    cores = os.cpu_count() or threads
    if busy is not None and busy + threads > cores + 0.5:
        warnings.warn(
            f"{busy:.1f} of {cores} CPUs are busy with other processes: they compete with the {threads} benchmark thread(s), "
            "so latencies will be inflated and noisy (ratios between libraries less so, as runs are interleaved)",
            RuntimeWarning,
            stacklevel=3,
        )
    return busy


def warn_contended(cpu_share: float | None, what: str) -> None:
    """Warn when the timed threads got well under a core each (other processes ran on the same cores)."""
    if cpu_share is not None and cpu_share < 0.8:
        warnings.warn(
            f"{what}: the benchmark threads got only {cpu_share:.0%} of their CPU time while timing "
            "(other processes ran on the same cores); these latencies are inflated",
            RuntimeWarning,
            stacklevel=3,
        )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


class RssSampler:
    """Background thread recording the highest RSS (torch releases the GIL in its kernels, so it samples during a step)."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
