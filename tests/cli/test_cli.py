"""The ``efc`` console entry, run for real (``python -m efc_ros.cli`` in a subprocess), and the
comparison / statistics helpers behind ``verify`` and ``bench``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from efc_core.runtime import ModelOutputs
from efc_ros.bench import latency_stats, summarise, time_calls
from efc_ros.cli_args import configure_cli_logging, parse_size_wh
from efc_ros.verify import backend_for, compare_outputs, tolerance_failures

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("export", "build-engine", "verify", "bench", "bag")


def efc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "efc_ros.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("efc: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_of_every_subcommand():
    top = efc("--help")
    assert top.returncode == 0
    for command in SUBCOMMANDS:
        assert command in top.stdout
    for command in SUBCOMMANDS:
        result = efc(command, "--help")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: efc {command}")


def test_cli_imports_no_torch():
    code = ("import sys, efc_ros.cli, efc_core.runtime.engine_plan, efc_core.export.precision_plan; "
            "efc_ros.cli.build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # eight interpreter start-ups
def test_bad_inputs_exit_non_zero_with_one_line(tmp_path):
    assert_one_line_error(efc("export", tmp_path / "missing.pt", tmp_path / "x.onnx"), 2, "missing.pt")
    assert_one_line_error(efc("export", tmp_path / "missing.pt"), 2, "-o MODEL.onnx")
    assert_one_line_error(efc("export", tmp_path / "missing.pt", tmp_path / "x.onnx", "--opset", "20"), 2, "opset 20",
                          "linear")
    notes = tmp_path / "model.txt"
    notes.write_text("not a model")
    assert_one_line_error(efc("verify", notes, notes), 2, "suffix '.txt'")
    assert_one_line_error(efc("verify", tmp_path / "a.pt", tmp_path / "b.onnx"), 2, "not found")
    assert_one_line_error(efc("build-engine", tmp_path / "missing.onnx"), 2, "missing.onnx")
    assert_one_line_error(efc("bench", notes, "--backends", "openvino"), 2, "openvino")
    assert_one_line_error(efc("bench", "--sizes", "640by480"), 2, "WIDTHxHEIGHT")
    # argparse's own usage errors keep argparse's exit code 2.
    assert efc("verify").returncode == 2


def test_library_log_records_reach_the_console_once(capsys):
    # Library code logs instead of printing; the CLI shows those records as "efc: ..." lines.
    configure_cli_logging("efc")
    configure_cli_logging("efc")  # a second main() in one process must not double the lines
    logging.getLogger("efc_ros.bag.io").info("removed %s", "/tmp/x")
    logging.getLogger("efc_core.edge").warning("odd %d", 3)
    logging.getLogger("efc_core.edge").debug("not shown")
    assert capsys.readouterr().err.splitlines() == ["efc: removed /tmp/x", "efc: warning: odd 3"]


def test_library_log_records_follow_stderr_after_a_main_has_returned(monkeypatch):
    """Records after an in-process main() reach the current stderr, not the closed one it saw.

    The handler used to keep the stream of its set-up: "Logging error ... I/O operation on closed file".
    """
    first, later = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_cli_logging("efc")
    first.close()
    monkeypatch.setattr(sys, "stderr", later)
    logging.getLogger("efc_core.edge").warning("after the run")
    assert later.getvalue() == "efc: warning: after the run\n"


def test_parse_size_and_backend_inference():
    assert parse_size_wh("640x480") == (480, 640)
    with pytest.raises(ValueError, match="positive"):
        parse_size_wh("0x480")
    assert backend_for(Path("m.pt")) == "torch" and backend_for(Path("m.onnx")) == "onnxruntime"
    assert backend_for(Path("m.orin.sm87.trt10.3.0.fp16.engine")) == "tensorrt"
    assert backend_for(Path("m.bin"), "onnxruntime") == "onnxruntime"
    with pytest.raises(ValueError, match="suffix"):
        backend_for(Path("m.bin"))


def outputs(logits: np.ndarray, flow: np.ndarray) -> ModelOutputs:
    return ModelOutputs(seg_logits=logits.astype(np.float32), flow=flow.astype(np.float32),
                        occlusion=np.zeros((1, 1, *flow.shape[2:]), np.float32))


def test_compare_outputs_on_known_differences():
    logits = np.zeros((1, 2, 2, 4))
    logits[:, 0] = 1.0  # class 0 everywhere
    other = logits.copy()
    other[:, 1, :, :2] = 2.0  # class 1 wins in the left half: agreement 50 %
    flow = np.zeros((1, 2, 2, 4))
    shifted = flow.copy()
    shifted[:, 0], shifted[:, 1] = 3.0, 4.0  # end-point error 5 px everywhere
    result = compare_outputs([outputs(logits, flow)], [outputs(other, shifted)])
    assert result.logits_max_abs == pytest.approx(2.0)
    assert result.logits_mean_abs == pytest.approx(2.0 * 4 / 16)
    assert result.flow_epe_mean == pytest.approx(5.0) and result.flow_epe_max == pytest.approx(5.0)
    assert result.label_agreement == pytest.approx(0.5)
    failures = tolerance_failures(result, tol_logits=1.0, tol_epe=1.0, min_agreement=0.9)
    assert len(failures) == 3
    assert tolerance_failures(result, tol_logits=2.0, tol_epe=5.0, min_agreement=0.5) == []
    with pytest.raises(ValueError, match="shapes differ"):
        compare_outputs([outputs(logits, flow)], [outputs(logits[:, :1], flow)])


def test_latency_stats_and_timing():
    stats = latency_stats([float(v) for v in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["p90_ms"] == pytest.approx(90.1)
    assert stats["p99_ms"] == pytest.approx(99.01) and stats["throughput_hz"] == pytest.approx(1000 / 50.5)
    calls = []
    samples = time_calls(calls.append, warmup=2, iters=3)
    assert calls == [0, 1, 2, 3, 4] and len(samples) == 3 and min(samples) >= 0
    rows = [
        {"backend": "onnxruntime", "precision": "fp32", "camera_size": [480, 640], "graph": "single", "p50_ms": 10.0},
        {"backend": "onnxruntime", "precision": "fp32", "camera_size": [480, 640], "graph": "streaming", "p50_ms": 6.0},
        {"backend": "torch", "precision": "fp32", "camera_size": [480, 640], "graph": "single", "p50_ms": 25.0},
    ]
    summary = summarise(rows)
    assert summary["torch_over_onnxruntime"] == {"640x480": pytest.approx(2.5)}
    assert summary["streaming_saving"] == {"onnxruntime/fp32/640x480": pytest.approx(0.4)}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint

    folder = tmp_path_factory.mktemp("cli")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(folder / f"seed{seed}.pt", build_model("tiny", 3), train_config={}, step=0,
                                     metrics={}, class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3))
    return folder, paths


@pytest.fixture(scope="module")
def exported(checkpoints):
    """``efc export`` of the seed-0 checkpoint at a fixed 128x64 (WxH), single graph only."""
    folder, (checkpoint, _) = checkpoints
    onnx_path = folder / "seed0.onnx"
    result = efc("export", checkpoint, "-o", onnx_path, "--size", "128x64", "--no-split")  # the documented -o form
    assert result.returncode == 0, result.stderr
    return onnx_path


@pytest.mark.slow
def test_export_then_verify_passes_and_other_checkpoint_fails(checkpoints, exported, shared_data):
    folder, (checkpoint, other) = checkpoints
    manifest = json.loads((folder / "seed0.json").read_text())
    assert (manifest["input_height"], manifest["input_width"]) == (64, 128)
    assert manifest["graphs"] == {"single": "seed0.onnx"}

    report_path = folder / "verify.json"
    # Real frames (Middlebury RubberWhale 584x388), resized to 150x100 and letterboxed to 128x64.
    frames = shared_data / "middlebury-rubberwhale"
    same = efc("verify", checkpoint, exported, "--images", frames, "--size", "150x100", "--json", report_path)
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["backend_a"] == "torch" and report["backend_b"] == "onnxruntime"
    assert report["model_size"] == [64, 128] and report["image_size"] == [100, 150] and report["pairs"] == 1
    assert report["logits_max_abs"] < 1e-3 and report["flow_epe_mean"] < 0.01 and report["label_agreement"] > 0.999
    assert "PASS" in same.stdout

    different = efc("verify", other, exported, "--synthetic", "1", "--size", "128x64")
    assert different.returncode == 1, different.stdout + different.stderr
    assert "FAIL" in different.stdout and "logits max" in different.stdout


@pytest.mark.slow
def test_bench_reports_both_backends(checkpoints, exported):
    folder, (checkpoint, _) = checkpoints
    out = folder / "bench.json"
    result = efc("bench", checkpoint, exported, "--backends", "onnxruntime,torch", "--sizes", "128x64",
                 "--warmup", "1", "--iters", "3", "--threads", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    graphs = {(row["backend"], row["graph"]) for row in report["results"]}
    assert {("onnxruntime", "single"), ("onnxruntime", "pipeline-single")} <= graphs
    assert {("torch", "single"), ("torch", "streaming"), ("torch", "pipeline-streaming")} <= graphs
    for row in report["results"]:
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["model_size"] == [64, 128]
        assert row["throughput_hz"] == pytest.approx(1000.0 / row["mean_ms"])
    assert "128x64" in report["summary"]["torch_over_onnxruntime"]
    shares = report["summary"]["pre_post_share"].values()
    assert shares and all(0.0 < share < 1.0 for share in shares)
