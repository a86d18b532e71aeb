"""Checkpoints that carry their own model config, so a model is rebuilt from the file alone.

Format (``format_version`` 1), a dict saved with ``torch.save``: ``format_version``,
``model_config`` (``ModelConfig.to_dict()``), ``model_state``, ``train_config``, ``step``,
``git_revision``, ``metrics``, ``class_names``, ``palette``, ``optimizer_state``,
``scheduler_state``, ``scaler_state``, ``extra``. Everything except state dicts is converted to
plain Python types on save, so ``torch.load(weights_only=True)`` (no pickled code) reads it.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from efc_core.errors import ModelError
from efc_core.model.config import ModelConfig
from efc_core.model.efc_net import EFCNet

FORMAT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = (
    "format_version", "model_config", "model_state", "train_config", "step", "git_revision",
    "metrics", "class_names", "palette", "optimizer_state", "scheduler_state", "scaler_state",
)


def git_revision() -> str:
    """``git rev-parse HEAD`` of the repository holding this file, or ``"unknown"``."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def _to_plain(value: Any) -> Any:
    """Recursively turn numpy values, paths and tuples into JSON-like Python types (tensors kept)."""
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(path: str | Path, model: EFCNet, *, train_config: dict, step: int, metrics: dict,
                    class_names: list[str] | tuple[str, ...], palette: Any,
                    optimizer_state: dict | None = None, scheduler_state: dict | None = None,
                    scaler_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (temporary file + rename) and return its path.

    Args:
        palette: (K, 3) uint8 RGB colours, array or nested list.
        step: optimisation step reached; metrics: name -> value of the latest evaluation.
    """
    if not isinstance(model, EFCNet):
        raise ValueError(f"model must be an EFCNet, got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "train_config": _to_plain(train_config),
        "step": int(step),
        "git_revision": git_revision(),
        "metrics": _to_plain(metrics),
        "class_names": [str(name) for name in class_names],
        "palette": _to_plain(palette),
        "optimizer_state": optimizer_state,
        "scheduler_state": _to_plain(scheduler_state),
        "scaler_state": _to_plain(scaler_state),
        "extra": _to_plain(extra or {}),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)
    return path


def _safe_torch_load(path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors that say what the file is not.

    Checkpoints are only ever loaded safely: a file that needs pickled code is refused, and the
    message never suggests ``weights_only=False``.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
    # torch.save writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle (0x80).
    if not zipfile.is_zipfile(path) and not head.startswith((b"\x80", b"PK\x03\x04")):
        raise ModelError(f"{path} is not a PyTorch checkpoint: neither a zip archive nor a pickle "
                         f"(it starts with {head!r})")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise ModelError(f"{path} is not an EFC checkpoint: it holds Python objects{what} that safe loading "
                         f"(weights_only=True) refuses; checkpoints are never loaded unsafely") from None
    except Exception as error:  # torch raises many types (zip, runtime, key, unicode) for a bad file
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"cannot read checkpoint {path}: not a valid PyTorch file "
                         f"({type(error).__name__}: {first_line})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dict; ``ModelError`` when missing, unreadable or not in this format."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    checkpoint = _safe_torch_load(path, map_location)
    if not isinstance(checkpoint, dict):
        raise ModelError(f"{path} holds a {type(checkpoint).__name__}, not an EFC checkpoint "
                         f"(a dict written by efc_core.model.checkpoint.save_checkpoint)")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        bare_state_dict = checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
        hint = " (a bare state_dict?)" if bare_state_dict else ""
        raise ModelError(f"{path} is not an EFC checkpoint{hint}: it lacks keys {missing}")
    if checkpoint["format_version"] != FORMAT_VERSION:
        raise ModelError(f"checkpoint {path} has format_version {checkpoint['format_version']!r}, "
                         f"this code reads {FORMAT_VERSION}")
    return checkpoint


def load_model(path: str | Path) -> tuple[EFCNet, dict]:
    """Rebuild the model stored in a checkpoint, in eval mode on the CPU, with the checkpoint dict."""
    checkpoint = load_checkpoint(path)
    try:
        config = ModelConfig.from_dict(checkpoint["model_config"])
    except (TypeError, ValueError) as error:
        raise ModelError(f"checkpoint {path} has an invalid model_config: {error}") from error
    model = EFCNet(config)
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError as error:  # missing / unexpected keys or shape mismatches
        raise ModelError(f"checkpoint {path} does not match its model_config: {error}") from error
    model.eval()
    return model, checkpoint
