"""Uniform weight average of checkpoints of one network ("model soup"):
``python -m training.average A.pt B.pt [...] --output OUT.pt``.

Runs that start from the same checkpoint and differ in one setting (augmentation, class weights)
stay in one basin of the loss, so the mean of their weights is a model too, and usually a
better one than either (Wortsman et al., ICML 2022). Floating-point tensors are averaged (batch
norm statistics included); integer buffers (``num_batches_tracked``) come from the first
checkpoint, and so do the training config, class names and palette. The output records its
sources in ``extra.weight_average_of`` and has no optimiser state: it is a model, not a run to
resume. Refused, with the reason: checkpoints of different network configs or parameter names
and shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from efc_core.errors import ModelError
from efc_core.model.checkpoint import load_checkpoint


def average_checkpoints(paths: Sequence[str | Path]) -> dict:
    """The checkpoint dict whose ``model_state`` is the mean of those of ``paths`` (two or more)."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    states = [load_checkpoint(path) for path in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state["model_config"] != first["model_config"]:
            raise ModelError(f"{path} has another network config than {paths[0]}: "
                             f"{state['model_config']} vs {first['model_config']}")
        shapes = {k: tuple(v.shape) for k, v in state["model_state"].items()}
        expected = {k: tuple(v.shape) for k, v in first["model_state"].items()}
        if shapes != expected:
            differing = sorted(set(shapes.items()) ^ set(expected.items()))[:3]
            raise ModelError(f"{path} and {paths[0]} differ in parameters, e.g. {differing}")
    averaged = {}
    for key, tensor in first["model_state"].items():
        if tensor.is_floating_point():
            averaged[key] = torch.stack([state["model_state"][key].float() for state in states]).mean(0).to(
                tensor.dtype)
        else:
            averaged[key] = tensor.clone()
    output = dict(first)
    output.update(model_state=averaged, optimizer_state=None, scheduler_state=None, scaler_state=None, metrics={})
    extra = {k: v for k, v in (first.get("extra") or {}).items() if k != "torch_rng_state"}
    extra["weight_average_of"] = [{"path": str(path), "step": int(state.get("step") or 0)}
                                  for path, state in zip(paths, states)]
    output["extra"] = extra
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        averaged = average_checkpoints(args.checkpoints)
    except (ModelError, ValueError) as error:
        print(f"average: error: {error}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(averaged, args.output)
    print(f"wrote {args.output}: mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
