"""The inference benchmark runs end to end on tiny inputs and writes readable results (no timing is asserted)."""

from __future__ import annotations

import builtins
import json

import pytest
import torch

from effnet.bench import format_markdown, run_inference_bench, write_results

pytest.importorskip("timm")
pytest.importorskip("torchvision")

# the benchmark warns when the machine is busy (other tests running in parallel): irrelevant here
pytestmark = [
    pytest.mark.filterwarnings("ignore:.* CPUs are busy:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:.* got only .* of their CPU time:RuntimeWarning"),
]


@pytest.fixture(scope="module")
def results():
    threads = torch.get_num_threads()
    rows = run_inference_bench(("efficientnet_b0",), batch_sizes=(1,), threads=1, resolution=64, warmup=1, repeats=2)
    assert torch.get_num_threads() == threads  # the caller's setting is restored
    return rows


def test_rows_per_library(results):
    assert [r["library"] for r in results] == ["effnet", "timm", "torchvision"]
    for r in results:
        assert r["model"] == "efficientnet_b0" and r["batch_size"] == 1 and r["resolution"] == 64 and r["threads"] == 1
        assert not r["skipped"] and r["repeats"] == 2
        assert r["throughput"] > 0 and r["ratio_vs_timm"] > 0
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["throughput"] == pytest.approx(1e3 / r["median_ms"])
        assert 0 < r["cpu_share"] <= 1.5  # process CPU time / (wall x threads); a bit over 1 from torch's helper threads
    assert next(r for r in results if r["library"] == "timm")["ratio_vs_timm"] == pytest.approx(1.0)
    # the three libraries build the same network
    assert len({r["params"] for r in results}) == 1


def test_write_results(results, tmp_path):
    json_path, md_path = write_results(results, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["results"] == results
    assert data["environment"]["versions"]["torch"] == torch.__version__
    markdown = md_path.read_text()
    assert markdown.startswith(format_markdown(results))
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert table[0].startswith("| model | batch | library | median ms")
    assert len(table) == 2 + len(results)
    assert all(line.count("|") == table[0].count("|") for line in table)
    assert "| efficientnet_b0 | 1 | timm |" in markdown


def test_missing_library_is_skipped(monkeypatch):
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.split(".")[0] == "torchvision":
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    rows = run_inference_bench(("b0",), batch_sizes=(1,), threads=1, resolution=32, warmup=0, repeats=1, libraries=("effnet", "torchvision"))
    effnet_row, torchvision_row = rows
    assert effnet_row["throughput"] > 0 and effnet_row["ratio_vs_timm"] is None  # no timm to compare with
    assert torchvision_row["skipped"] and torchvision_row["throughput"] is None
    assert "pip install torchvision" in torchvision_row["note"]
    markdown = format_markdown(rows)
    assert "| torchvision | skipped |" in markdown and "n/a" in markdown


def test_rejects_unknown_library():
    with pytest.raises(ValueError, match="unknown libraries"):
        run_inference_bench(libraries=("keras",))
