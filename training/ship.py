"""Ship a training checkpoint: ``python -m training.ship CHECKPOINT OUTPUT.pt [--recipe YAML] [--metrics JSON]``.

Writes a copy without optimiser state (``training.evaluate.ship_checkpoint``) whose training config
states its data and terms (the recipe's ``data.provenance``, which the exporter copies into the
manifest's ``training_data``) and names its data roots as ``<data root>/...`` instead of this
machine's paths. Then export it: ``efc export OUTPUT.pt -o OUTPUT.onnx --size WxH``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from efc_core.model.checkpoint import load_checkpoint
from training.config import load_config
from training.evaluate import ship_checkpoint


def ship(source: str | Path, target: str | Path, recipe: str | Path, metrics: dict[str, Any]) -> Path:
    """Write the shippable copy of checkpoint ``source`` to ``target``; returns ``target``."""
    state = load_checkpoint(source)
    train_config = dict(state.get("train_config") or {})
    data = dict(train_config.get("data") or {})
    data["provenance"] = load_config(recipe).data.provenance
    train_config["data"] = data
    state["train_config"] = train_config
    return ship_checkpoint(state, metrics, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--recipe", default="training/configs/camvid_efc_tiny.yaml",
                        help="recipe whose data.provenance the model states")
    parser.add_argument("--metrics", type=Path, default=None, help="JSON of measured metrics to store")
    args = parser.parse_args(argv)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    path = ship(args.checkpoint, args.output, args.recipe, metrics)
    print(f"shipped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
