"""Fixtures of the call-contract tests: strict TensorRT / CUDA stand-ins per recorded release.

These tests run the project's TensorRT and CUDA code against stand-ins generated from the
recorded API surface of each release (``standins.py``); they check calls, arguments, threads and
buffers, never what a real engine computes (see ``README.md`` in this folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from . import standins

#: Releases the code targets: JetPack 5.1 (8.5), JetPack 6.0 (8.6), JetPack 6.1/6.2 (10.3), x86 11.x.
VERSIONS = tuple(standins.TENSORRT_VERSIONS)
WEAKLY_TYPED = tuple(v for v in VERSIONS if not v.startswith("11"))


@pytest.fixture(params=VERSIONS)
def trt_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch, trt_version: str) -> standins.StandIns:
    """cuda-python + TensorRT stand-ins of ``trt_version`` in ``sys.modules`` for this test."""
    return standins.install(monkeypatch, trt_version)


#: What a build, verify or calibration writes next to its ONNX file (engines, sidecars, caches).
BUILD_OUTPUTS = ("timing.*", "*.engine", "*.engine.json", "*.cache", "*.cache.json")


def _build_outputs(folder: Path) -> set[str]:
    return {path.name for pattern in BUILD_OUTPUTS for path in folder.glob(pattern)}


@pytest.fixture
def shipped_copy(demo_model: Path, tmp_path: Path) -> Iterator[Path]:
    """The shipped demo model's ONNX graphs and manifest in ``tmp_path``, so that engines, timing and
    calibration caches are written there, never into ``models/``; a test that still writes build
    outputs into the shipped model's folder fails.

    The graphs are hard links or copies, not symlinks: the manifest resolves its graph paths
    (``Manifest.graph_path``), which would lead a build back to ``models/`` (where the TensorRT
    timing cache is written next to the ONNX file).
    """
    folder = tmp_path / "model"
    folder.mkdir()
    stem = demo_model.name.removesuffix(".onnx")
    for path in demo_model.parent.glob(f"{stem}*"):
        if path.suffix == ".onnx":
            try:
                os.link(path.resolve(), folder / path.name)
            except OSError:  # another file system, or no hard links there
                shutil.copy(path, folder / path.name)
        elif path.name == f"{stem}.json":
            shutil.copy(path, folder / path.name)
    before = _build_outputs(demo_model.parent)
    yield folder / demo_model.name
    written = sorted(_build_outputs(demo_model.parent) - before)
    assert not written, f"the test wrote into {demo_model.parent}: {written}"
