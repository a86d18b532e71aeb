"""The robot runs without PyTorch: the runtime and the ONNX Runtime path must never import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from . import build_models

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import efc_core.runtime
    from efc_core.perceptor import Perceptor
    from efc_core.runtime import create_backend
    after_import = "torch" in sys.modules
    backend = create_backend("onnxruntime", sys.argv[1], intra_op_threads=1)
    perceptor = Perceptor(backend)
    image = np.zeros((48, 80, 3), np.uint8)
    first = perceptor.process(image, 0, "cam")
    second = perceptor.process(image, 10_000_000, "cam")
    print(json.dumps({
        "after_import": after_import,
        "after_run": "torch" in sys.modules,
        "heavy": sorted(m for m in ("torch", "torchvision", "tensorrt", "pycuda", "rclpy") if m in sys.modules),
        "flow_shape": list(second.flow.shape),
        "first_flow_none": first.flow is None,
    }))
    """
)


def test_runtime_and_onnxruntime_perceptor_do_not_import_torch(tmp_path: Path) -> None:
    build_models(tmp_path, streaming=True)
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "tiny.onnx")],
        capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"after_import": False, "after_run": False, "heavy": [],
                      "flow_shape": [48, 80, 2], "first_flow_none": True}
