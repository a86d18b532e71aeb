"""Call-contract tests of ``efc build-engine`` -> ``efc verify`` -> ``efc bench`` on the shipped
model, against the recorded TensorRT 8.5 / 8.6 / 10.3 / 11.x APIs (strict stand-ins, no GPU).
They check the commands' calls, options and messages; the stand-in engine's outputs come from
ONNX Runtime, so ``verify`` here proves the wiring, not TensorRT's accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efc_ros.cli import main

from . import standins
from .conftest import WEAKLY_TYPED


def _engine_from_output(text: str) -> Path:
    lines = [line for line in text.splitlines() if line.startswith("engine: ")]
    assert lines, text
    return Path(lines[0].removeprefix("engine: "))  # the single graph (streaming prints encoder, decoder next)


def test_build_verify_bench_fp32(stand_ins: standins.StandIns, shipped_copy: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["build-engine", str(shipped_copy), "--precision", "fp32", "--streaming",
                 "--output", str(shipped_copy.parent)]) == 0
    engine = _engine_from_output(capsys.readouterr().out)
    report = tmp_path / "verify.json"
    assert main(["verify", str(shipped_copy), str(engine), "--synthetic", "2", "--json", str(report)]) == 0
    verified = json.loads(report.read_text())
    assert verified["passed"] and verified["tf32_b"] is True and verified["tolerance_set"].startswith("tf32")
    assert verified["logits_max_abs"] == 0.0  # the stand-in runs ONNX Runtime: wiring, not accuracy
    encoder = next(shipped_copy.parent.glob("*.encoder.*.fp32.engine"))
    bench = tmp_path / "bench.json"
    assert main(["bench", str(encoder), "--backends", "tensorrt", "--sizes", "320x256", "--warmup", "1",
                 "--iters", "2", "--threads", "2", "--cuda-graph", "--json", str(bench)]) == 0
    rows = json.loads(bench.read_text())["results"]
    assert {row["graph"] for row in rows} >= {"single", "streaming"}
    assert all(row["cuda_graph"] for row in rows) and stand_ins.cudart.graph_launches > 0


@pytest.mark.parametrize("version", WEAKLY_TYPED)
def test_build_fp16_and_int8_then_verify(monkeypatch, version: str, shipped_copy: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    stand_ins = standins.install(monkeypatch, version)
    assert main(["build-engine", str(shipped_copy), "--precision", "fp16", "--output", str(tmp_path)]) == 0
    fp16 = _engine_from_output(capsys.readouterr().out)
    report = tmp_path / "verify.json"
    assert main(["verify", str(shipped_copy), str(fp16), "--synthetic", "1", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["tolerance_set"].startswith("reduced")
    assert main(["build-engine", str(shipped_copy), "--precision", "int8", "--calib-synthetic", "3",
                 "--output", str(tmp_path), "--device", "1"]) == 0
    int8 = _engine_from_output(capsys.readouterr().out)
    assert "nvidia-rtx-a2000" in int8.name and stand_ins.trt.calibration[-1]["batches"] == 2
    assert (shipped_copy.parent / (shipped_copy.name.removesuffix(".onnx") + ".int8.cache.json")).is_file()


def test_no_tf32_engine_is_verified_strictly(monkeypatch, shipped_copy: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    standins.install(monkeypatch, "10.3.0")
    assert main(["build-engine", str(shipped_copy), "--precision", "fp32", "--no-tf32", "--output", str(tmp_path)]) == 0
    engine = _engine_from_output(capsys.readouterr().out)
    report = tmp_path / "verify.json"
    assert main(["verify", str(shipped_copy), str(engine), "--synthetic", "1", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["tolerance_set"].startswith("strict")


def test_tensorrt_11_refuses_reduced_precision_in_one_line(monkeypatch, shipped_copy: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    stand_ins = standins.install(monkeypatch, "11.4.0")
    assert main(["build-engine", str(shipped_copy), "--precision", "fp16", "--output", str(tmp_path)]) == 2
    assert "no FP16 builder flag" in capsys.readouterr().err
    assert main(["build-engine", str(shipped_copy), "--precision", "int8", "--calib-synthetic", "3",
                 "--output", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "implicit INT8 calibration" in error and "Traceback" not in error
    assert stand_ins.trt.builds == []
    assert main(["build-engine", str(shipped_copy), "--precision", "fp32", "--output", str(tmp_path)]) == 0
