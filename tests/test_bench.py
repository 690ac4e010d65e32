"""The inference benchmark runs end to end on tiny inputs and writes readable results (no timing is asserted)."""

from __future__ import annotations

import builtins
import json

import pytest
import torch

from effnet.experiments.bench import (
    TrainBenchConfig,
    format_markdown,
    format_report,
    plot_report,
    run_inference_bench,
    run_train_bench,
    write_report,
    write_results,
)
from effnet.experiments.bench.child import child_argv
from effnet.experiments.bench.train_worker import measure_training, parse_args

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
    assert table[0].startswith("| model | batch | path | median ms")
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


def test_fast_paths_run_and_match_plain_outputs():
    rows = run_inference_bench(("b0",), batch_sizes=(2,), threads=1, resolution=32, warmup=0, repeats=1, paths=("effnet", "effnet-fast", "timm"))
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {"effnet", "effnet-fast", "timm"} and by_path["effnet-fast"]["library"] == "effnet"
    assert by_path["effnet"]["max_rel_diff_vs_effnet"] == 0.0
    assert by_path["effnet-fast"]["max_rel_diff_vs_effnet"] < 1e-4  # BN folded: the same logits, relative to the largest
    assert by_path["timm"]["max_rel_diff_vs_effnet"] is None and by_path["timm"]["ratio_vs_timm"] == pytest.approx(1.0)
    assert by_path["effnet-fast"]["params"] == by_path["effnet"]["params"]  # of the model before folding
    assert all(r["first_call_s"] > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown paths"):
        run_inference_bench(paths=("effnet-turbo",))


def test_train_config_keys_round_trip_and_reject_bad_ones():
    for key in ("effnet", "effnet+lean", "effnet+lean+ckpt+compile", "timm+compile", "timm+compile+budget"):
        assert TrainBenchConfig.parse(key).key == key
    with pytest.raises(ValueError, match="effnet options"):
        TrainBenchConfig.parse("timm+lean")
    with pytest.raises(ValueError, match="bad training configuration"):
        TrainBenchConfig.parse("effnet+turbo")
    with pytest.raises(ValueError, match="add \\+compile"):
        TrainBenchConfig.parse("effnet+budget")


def test_train_worker_runs_lean_steps():
    result = measure_training("effnet+lean", batch_size=2, resolution=32, threads=1, warmup=1, steps=1, device="cpu", amp=None, channels_last=True)
    assert result["config"] == "effnet+lean" and result["images_per_s"] > 0 and len(result["step_s"]) == 1
    assert result["params"] == 5288548 and result["first_loss"] > 0


def test_workers_take_named_options():
    options = {"config": "effnet+ckpt", "batch_size": 2, "resolution": 32, "threads": 1, "warmup": 1, "steps": 1, "device": "cpu", "amp": None}
    argv = child_argv("effnet.experiments.bench.train_worker", options | {"channels_last": True})
    assert argv[1:3] == ["-m", "effnet.experiments.bench.train_worker"] and "--amp" not in argv and argv[-1] == "--channels-last"
    assert vars(parse_args(argv[3:])) == options | {"channels_last": True}
    assert child_argv("effnet.experiments.bench.aot_child", {"package": "b0.pt2", "shape": [32, 3, 224, 224]})[3:] == [
        "--package",
        "b0.pt2",
        "--shape",
        "32",
        "3",
        "224",
        "224",
    ]


def test_train_bench_runs_a_worker_process():
    payload = run_train_bench(("effnet",), batch_size=2, resolution=32, threads=1, warmup=1, steps=1)
    (row,) = payload["results"]
    assert not row["skipped"], row.get("note")
    assert row["config"] == "effnet" and row["images_per_s"] > 0 and row["params"] == 5288548 and row["peak_rise_mb"] is not None
    assert payload["runs"]["effnet"][0]["step_s"] and payload["settings"]["channels_last"] is True


def test_report_markdown_and_chart(tmp_path, results):
    train = {
        "settings": {"batch_size": 2, "resolution": 32, "threads": 1, "warmup": 1, "steps": 1, "rounds": 1, "device": "cpu", "amp": None}
        | {"channels_last": True, "optimizer": "RMSprop", "loss": "CE", "memory_measure": "RSS"},
        "results": [
            {"config": "timm", "images_per_s": 10.0, "peak_rise_mb": 100.0, "first_step_s": 1.0, "cpu_share": 1.0}
            | {"speed_vs_timm": 1.0, "speed_vs_timm_compiled": None, "memory_vs_timm": 1.0, "memory_vs_timm_compiled": None},
            {"config": "effnet+lean", "images_per_s": 9.0, "peak_rise_mb": 60.0, "first_step_s": 1.0, "cpu_share": 1.0}
            | {"speed_vs_timm": 0.9, "speed_vs_timm_compiled": None, "memory_vs_timm": 0.6, "memory_vs_timm_compiled": None},
        ],
    }
    payload = {"environment": {"cpu": "test", "cpu_count": 2, "versions": {"torch": torch.__version__}}, "settings": {"device": "cpu", "threads": 1}}
    payload |= {"inference": results, "train": train, "busy_cpus_at_start": 0.1, "busy_cpus_at_end": 0.2, "wall_s": 1.0}
    markdown = format_report(payload)
    assert "## Inference, EfficientNet-B0" in markdown and "| effnet+lean | 9.00 | 0.90x | n/a | 60 | 0.60x |" in markdown
    written = write_report(payload, tmp_path)
    assert [p.name for p in written][:2] == ["bench.json", "bench.md"]
    pytest.importorskip("matplotlib")
    assert plot_report(payload, tmp_path / "chart.png") and (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
