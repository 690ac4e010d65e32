"""`effnet.models.allocator`: with the tuning, freed tensors go back to the OS; without it (glibc defaults) they stay resident.

Each case runs in a fresh interpreter, because PyTorch reads its huge-page setting once, at
the first allocation, and glibc's mmap threshold is per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
needs_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not THP.exists() or "[never]" in THP.read_text(),
    reason="needs Linux with transparent huge pages (always or madvise)",
)

# Free a 30 MiB tensor (glibc then raises its mmap threshold to 30 MiB), then allocate, touch and free 16 MiB
# tensors: how much of each stays resident after it is freed?
SCRIPT = textwrap.dedent(
    """
    import json, sys
    mode = sys.argv[1]
    if mode != "default":
        from effnet.models.allocator import tune_cpu_allocator
    if mode == "late":
        import torch
        warm = torch.ones(1000)  # PyTorch has allocated before the tuning: it cannot take effect
    settings = tune_cpu_allocator() if mode != "default" else None
    import torch

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    del_big = torch.ones(30 * 2**18); del del_big
    kept = []
    for _ in range(4):
        before = rss()
        t = torch.ones(16 * 2**18)
        del t
        kept.append((rss() - before) / 2**20)
    print(json.dumps({"kept_mb": kept, "applied": settings.applied if settings else None,
                      "reason": settings.reason if settings else "", "describe": settings.describe() if settings else ""}))
    """
)


def _run(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THP_MEM_ALLOC", "MALLOC_", "GLIBC_TUNABLES"))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_thp
def test_tuned_allocator_returns_freed_tensors_and_glibc_defaults_keep_them():
    tuned, default = _run("tuned"), _run("default")
    assert tuned["applied"], tuned["reason"]
    assert "huge pages" in tuned["describe"]
    assert max(tuned["kept_mb"]) < 2  # the 16 MiB are unmapped when freed
    # the premise: by default each freed 16 MiB block stays resident in the heap (measured 16 MiB)
    assert max(default["kept_mb"]) > 8


@needs_thp
def test_tuning_after_pytorch_allocated_changes_nothing_and_says_how_to_fix_it():
    late = _run("late")
    assert late["applied"] is False
    assert "THP_MEM_ALLOC_ENABLE=1" in late["reason"] and "CPU allocator left as it is" in late["describe"]
