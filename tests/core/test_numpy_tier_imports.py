"""The numpy tier must import on a robot without PyTorch (docs/STYLE.md): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The edge layer (decoders, renderer, stamps, bag opening): every module of the package, so a
#: new one is checked without being listed.
EDGE_MODULES = sorted(f"efc_core.edge.{path.stem}" for path in (REPO_ROOT / "efc_core" / "edge").glob("*.py")
                      if path.stem != "__init__")
REQUIRED = [
    "efc_core.contract", "efc_core.errors", "efc_core.data.synthetic", "efc_core.data.formats",
    "efc_core.flow_ops", "efc_core.viz", "efc_core.metrics", "efc_core.runtime.engine_plan",
    "efc_core.perceptor_config", "efc_core.edge", *EDGE_MODULES,
]
# Written by other parts of the project; checked as soon as they exist.
OPTIONAL = [
    "efc_core.manifest", "efc_core.pairing", "efc_core.preprocess", "efc_core.postprocess",
    "efc_core.perceptor", "efc_core.runtime", "efc_ros.image_conversions",
]

_PROBE = """
import importlib, importlib.util, json, sys
required, optional = json.loads(sys.argv[1]), json.loads(sys.argv[2])
imported = []
for name in required:
    importlib.import_module(name)
    imported.append(name)
for name in optional:
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # parent package missing
        found = False
    if found:
        importlib.import_module(name)
        imported.append(name)
print(json.dumps({"imported": imported, "torch": "torch" in sys.modules,
                  "torch_importers": sorted(m for m in sys.modules if m.startswith(("torch", "torchvision")))[:5]}))
"""


def test_numpy_tier_modules_do_not_load_torch():
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(REQUIRED), json.dumps(OPTIONAL)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(REQUIRED) <= set(result["imported"])
    assert {"efc_core.edge.image_decode", "efc_core.edge.render", "efc_core.edge.bag_io"} <= set(EDGE_MODULES)
    assert not result["torch"], f"torch loaded while importing {result['imported']}: {result['torch_importers']}"
