"""benchmarks/README.md names every committed result, so a reader can tell current from archive and find its command."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _named_paths() -> set[str]:
    index = (BENCHMARKS / "README.md").read_text()
    return {name.rstrip("/") for name in re.findall(r"`(results/[^`\s]+)`", index)}


def test_every_result_file_is_reachable_from_the_index():
    named = _named_paths()
    unreachable = []
    for path in sorted((BENCHMARKS / "results").rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(BENCHMARKS).as_posix()
        parts = relative.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(2, len(parts) + 1)}
        if not prefixes & named:
            unreachable.append(relative)
    assert not unreachable, f"results not named in benchmarks/README.md: {unreachable}"


def test_scripts_do_not_write_into_committed_results_by_default():
    offenders = []
    for script in sorted(BENCHMARKS.glob("*.py")):
        for line in script.read_text().splitlines():
            if '"--out"' in line and "default=" in line and "results" in line.split("default=", 1)[1].split(",", 1)[0]:
                offenders.append(script.name)
    assert not offenders, f"--out defaults into benchmarks/results in {offenders}; default to a scratch folder under out/"
