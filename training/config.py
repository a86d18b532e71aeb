"""Typed training configuration and its strict YAML loader.

Every hyperparameter of a run lives in :class:`TrainConfig` (docs/STYLE.md) and every checkpoint stores
it as a dict. YAML files and ``--set key.sub=value`` overrides are checked against the dataclasses:
an unknown key anywhere is a ``ValueError`` naming the key and its path (``loss.weights.smoth``), so
a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from efc_core.losses.composer import LossConfig, LossWeights


@dataclass
class ModelSection:
    """Which network to build: ``build_model(preset, num_classes, pretrained_backbone, **overrides)``."""

    preset: Literal["tiny", "realtime", "paper"] = "tiny"
    num_classes: int = 6
    pretrained_backbone: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Start from this checkpoint's weights only (step, optimiser and schedule start afresh), e.g.
    #: Cityscapes weights before KITTI or own-bag adaptation. ``--resume`` continues a run instead.
    init_checkpoint: str | None = None


@dataclass
class SyntheticDataSection:
    """Synthetic video (``efc_core.data.video_dataset.SyntheticVideoDataset``); sizes in pixels."""

    height: int = 64
    width: int = 128
    num_frames: int = 8
    label_every: int = 5
    train_sequences: int = 64
    val_sequences: int = 4
    pairs_per_sequence: int = 8
    min_gap: int = 1
    max_gap: int = 5
    labelled_anchor_fraction: float = 0.5
    min_objects: int = 2
    max_objects: int = 8
    max_translation: float = 6.0
    background_motion: float = 3.0
    noise_std: float = 0.0
    brightness_change: float = 0.0
    cache_size: int = 64
    # Scene realism (efc_core.data.synthetic.SyntheticConfig): photo textures, camera motion,
    # photometric changes. Defaults keep the procedural generator.
    max_rotation_deg: float = 3.0
    max_scale_change: float = 0.03
    background_rotation_deg: float = 0.0
    background_scale_change: float = 0.005
    contrast_change: float = 0.0
    blur_sigma_max: float = 0.0
    texture_source: str = "procedural"
    texture_dirs: list[str] = field(default_factory=list)
    object_tint: float = 0.5
    bundled_photo_weight: int = 1


@dataclass
class DataSection:
    """Dataset, loader and sampling; ``options`` go to ``build_dataset`` for non-synthetic data.

    ``provenance`` names the data and its terms for the manifest.
    """

    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = 4
    num_workers: int = 0
    synthetic: SyntheticDataSection = field(default_factory=SyntheticDataSection)
    options: dict[str, Any] = field(default_factory=dict)
    #: What the model was trained on and under which terms: ``{name, what, terms}`` per source.
    #: Copied into the exported manifest (``training_data``) so a deployed model states it.
    provenance: list[dict[str, str]] = field(default_factory=list)


@dataclass
class OptimizerSection:
    """Optimiser; ``grad_clip_norm`` <= 0 disables clipping."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    nesterov: bool = False
    grad_clip_norm: float = 5.0


@dataclass
class ScheduleSection:
    """Learning-rate schedule and the two training stages (docs/METHOD.md §3, "Training schedule").

    Stage 1 (steps ``[0, stage2_start_step)``): unsupervised flow + occlusion with the range-map
    target, supervised segmentation on labelled frames; ``O_seg`` and ``L_tc`` are off whatever
    ``loss`` says. Stage 2: ``L_tc`` (``loss.weights.temporal``) and ``O_seg``
    (``loss.config.use_seg_mask`` / ``seg_mask_gamma``) take their configured values; from
    ``fb_check_start_step`` (if set) the occlusion target becomes the forward-backward check.
    """

    total_steps: int = 300
    warmup_steps: int = 20
    warmup_start_factor: float = 0.1
    decay: Literal["poly", "cosine", "constant"] = "poly"
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    stage2_start_step: int = 150
    fb_check_start_step: int | None = None
    #: Ground truth (``loss.supervised_flow`` / ``loss.supervised_occlusion``) is used only before
    #: this step; later steps are the self-supervised EFC objective. None = the whole run.
    supervised_end_step: int | None = None
    #: Stop (and write ``final.pt``) after this much training wall time, for shared machines.
    max_wall_minutes: float | None = None
    #: After every step of the full objective, this many segmentation-only steps (flow, occlusion
    #: and temporal terms off, so the flow branch is skipped). A segmentation step costs a fifth to a
    #: sixth of a joint one on a CPU, so labels get many more passes for the same wall time while
    #: the joint steps keep the flow decoder aligned with the shared encoder. 0 = every step joint.
    seg_only_steps_per_joint_step: int = 0


@dataclass
class LossSection:
    """Loss weights and options of the composer (stage-2 values; see :class:`ScheduleSection`).

    ``supervised_flow`` is the one switch for flow labels: ground-truth flow enters a loss only
    when it is true (EFC learns flow without labels); it sets ``config.supervised_flow``.
    ``supervised_occlusion`` likewise lets ground-truth occlusion (synthetic data) be the target
    of the occlusion head. Both stop at ``schedule.supervised_end_step``.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    config: LossConfig = field(default_factory=LossConfig)
    supervised_flow: bool = False
    supervised_occlusion: bool = False


@dataclass
class LoggingSection:
    """Progress, TensorBoard, checkpoints and periodic evaluation (0 disables a periodic action)."""

    log_every: int = 10
    checkpoint_every: int = 0
    eval_every: int = 0
    tensorboard: bool = True
    progress_bar: bool = True


@dataclass
class DistributedSection:
    """``torchrun`` settings; ``backend: auto`` is NCCL on CUDA, gloo on CPU."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"
    find_unused_parameters: bool = False
    timeout_s: int = 600


@dataclass
class TrainConfig:
    """A complete training run."""

    name: str = "efc"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 0
    amp: bool = True
    deterministic: bool = False
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)


# ---------------------------------------------------------------------------- generic loader
def _convert(value: Any, annotation: Any, path: str) -> Any:
    """Check ``value`` against ``annotation`` and build dataclasses; ``ValueError`` naming ``path``."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, path)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(f"{path}: {value!r} matches none of {annotation}: {'; '.join(errors)}")
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"{path}: {value!r} is not one of {typing.get_args(annotation)}")
        return value
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{path}: expected a list, got {value!r}")
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        _, item = typing.get_args(annotation)
        return {str(k): _convert(v, item, f"{path}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept any numeric spelling.
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{path}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ValueError(f"{path}: cannot read {value!r} as {annotation}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys raise ``ValueError`` with their path."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'config'}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ValueError(f"unknown config key {key!r} at {key_path!r}; expected one of {sorted(names)}")
        kwargs[key] = _convert(value, hints[key], key_path)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML, checkpoints and manifests."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict, in order.

    A number selects an element of a list: ``data.options.sources.0.weight=0.5`` sets the weight
    of the first source of a mixture.
    """
    for override in overrides:
        if "=" not in override:
            raise ValueError(f"override {override!r} is not of the form key.sub=value")
        dotted, raw = override.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ValueError(f"override {override!r} has an empty key")
        node: Any = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ValueError(f"override {override!r}: {key!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(key)] = yaml.safe_load(raw)
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last:
                    node[key] = yaml.safe_load(raw)
                else:
                    node = node.setdefault(key, {})
            else:
                raise ValueError(f"override {override!r}: {keys[depth - 1]!r} is not a section")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML file (or the defaults when ``path`` is None), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    data = apply_overrides(data, list(overrides or []))
    config = from_dict(TrainConfig, data)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Cross-field checks the types cannot express; ``ValueError`` naming the value."""
    schedule = config.schedule
    if schedule.total_steps < 1:
        raise ValueError(f"schedule.total_steps must be >= 1, got {schedule.total_steps}")
    if not 0 <= schedule.warmup_steps < max(schedule.total_steps, 1) + 1:
        raise ValueError(f"schedule.warmup_steps={schedule.warmup_steps} outside [0, total_steps]")
    if schedule.seg_only_steps_per_joint_step < 0:
        raise ValueError(f"schedule.seg_only_steps_per_joint_step must be >= 0, "
                         f"got {schedule.seg_only_steps_per_joint_step}")
    if config.data.batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {config.data.batch_size}")
    if config.optimizer.lr <= 0:
        raise ValueError(f"optimizer.lr must be > 0, got {config.optimizer.lr}")
    if config.loss.config.supervised_flow and not config.loss.supervised_flow:
        raise ValueError("loss.config.supervised_flow is true: set loss.supervised_flow instead (the one switch)")
    if config.loss.config.supervised_occlusion and not config.loss.supervised_occlusion:
        raise ValueError("loss.config.supervised_occlusion is true: set loss.supervised_occlusion instead "
                         "(the one switch)")
    if config.model.num_classes < 2:
        raise ValueError(f"model.num_classes must be >= 2, got {config.model.num_classes}")
