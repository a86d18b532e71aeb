"""Command-line flags for every ``PerceptorConfig`` setting, derived from the config (not restated).

``add_perceptor_arguments(parser)`` adds ``--backend``, ``--model``, ``--input-size WxH``,
``--resize-mode``, ``--max-frame-gap`` (seconds), ``--no-streaming``, ``--threads``, ... with the
config's descriptions and choices; ``perceptor_config_from_args(args)`` turns the parsed values
into a validated ``PerceptorConfig`` (flags left out keep the config's defaults, the ones the node
uses). The bag tools and the demo use them, so they build the Perceptor the node builds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from efc_core.perceptor_config import PERCEPTOR_FIELDS, PerceptorConfig
from efc_ros.cli_args import parse_size_wh
from efc_ros.model_paths import default_model_path

#: Settings with a flag of their own shape (``--model PATH``, ``--input-size WxH``).
_SPECIAL = {"model_path", "input_width", "input_height"}
#: Flag names that differ from the ROS parameter name (CLI habit: ``--threads``).
_FLAG_NAMES = {"num_threads": "threads"}


def _flag(setting: Any) -> str:
    return "--" + _FLAG_NAMES.get(setting.ros_name, setting.ros_name).replace("_", "-")


def add_perceptor_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``PerceptorConfig`` setting to ``parser`` (defaults: the config's)."""
    group = parser.add_argument_group("perceptor (the node's parameters of the same names)")
    group.add_argument("--model", type=Path, default=None,
                       help="model file (default: the shipped real-camera model, efc_camvid_tiny)")
    group.add_argument("--input-size", default=None, help="model input WIDTHxHEIGHT (default: the model's)")
    for setting in PERCEPTOR_FIELDS:
        if setting.name in _SPECIAL:
            continue
        help_text = f"{setting.description} (default: {setting.default!r})"
        if isinstance(setting.default, bool):
            group.add_argument(_flag(setting), dest=setting.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        else:
            group.add_argument(_flag(setting), dest=setting.name, type=type(setting.default), default=None,
                               choices=setting.choices, help=help_text)


def perceptor_config_from_args(args: argparse.Namespace) -> PerceptorConfig:
    """The validated config of the flags ``add_perceptor_arguments`` added (``ValueError`` naming a bad one).

    ``--model`` defaults to the shipped real-camera model, like the node's empty ``model_path``.
    """
    values = {setting.name: getattr(args, setting.name) for setting in PERCEPTOR_FIELDS
              if setting.name not in _SPECIAL and getattr(args, setting.name, None) is not None}
    values["model_path"] = str(args.model or default_model_path())
    if args.input_size:
        values["input_height"], values["input_width"] = parse_size_wh(args.input_size)
    return PerceptorConfig(**values)
