"""Building blocks of the training loop: processes, data order, optimiser, schedule, loss stages."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from efc_core.contract import IMAGENET_MEAN, IMAGENET_STD
from efc_core.losses.composer import LossConfig, LossWeights
from training.config import OptimizerSection, ScheduleSection, TrainConfig

LOG = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """Rank, world size and device of this process; a no-op when ``WORLD_SIZE`` is 1."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, config: TrainConfig) -> "DistributedContext":
        """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; init the process group if > 1."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' requested but CUDA is not available")
        if use_cuda:
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        initialised = False
        if world_size > 1 and not dist.is_initialized():
            backend = config.distributed.backend
            if backend == "auto":
                backend = "nccl" if use_cuda else "gloo"
            dist.init_process_group(
                backend=backend, rank=rank, world_size=world_size,
                timeout=datetime.timedelta(seconds=config.distributed.timeout_s),
            )
            initialised = True
        return cls(rank, world_size, local_rank, device, initialised)

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool) -> torch.nn.Module:
        """``DistributedDataParallel`` around ``model`` when several processes train it."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def close(self) -> None:
        if self.initialised and dist.is_initialized():
            dist.destroy_process_group()


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (works for one process too) that can start mid-epoch.

    The order is a function of ``(seed, epoch)`` only (torch's own sampler), so a resumed run that
    calls ``set_epoch(e)`` and ``set_start(k)`` sees exactly the samples the original run would
    have seen after its first ``k`` samples of epoch ``e``.
    """

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank in the current epoch."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        # The full epoch length: the loop derives steps per epoch from it.
        return self.num_samples


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Train and validation datasets of ``config.data`` (sample dicts, ARCHITECTURE.md)."""
    data = config.data
    if data.dataset == "synthetic":
        from efc_core.data.video_dataset import SyntheticVideoDataset

        synth = data.synthetic
        common = {
            "seed": config.seed, "height": synth.height, "width": synth.width, "num_frames": synth.num_frames,
            "label_every": synth.label_every, "num_classes": config.model.num_classes,
            "noise_std": synth.noise_std, "brightness_change": synth.brightness_change, "cache_size": synth.cache_size,
            "min_objects": synth.min_objects, "max_objects": synth.max_objects,
            "max_translation": synth.max_translation, "background_motion": synth.background_motion,
            "max_rotation_deg": synth.max_rotation_deg, "max_scale_change": synth.max_scale_change,
            "background_rotation_deg": synth.background_rotation_deg,
            "background_scale_change": synth.background_scale_change, "contrast_change": synth.contrast_change,
            "blur_sigma_max": synth.blur_sigma_max, "texture_source": synth.texture_source,
            "texture_dirs": tuple(synth.texture_dirs), "object_tint": synth.object_tint,
            "bundled_photo_weight": synth.bundled_photo_weight,
        }
        train = SyntheticVideoDataset(
            split="train", num_sequences=synth.train_sequences, pairs_per_sequence=synth.pairs_per_sequence,
            min_gap=synth.min_gap, max_gap=synth.max_gap,
            labelled_anchor_fraction=synth.labelled_anchor_fraction, **common,
        )
        val = None
        if synth.val_sequences > 0:
            val = SyntheticVideoDataset(split="val", num_sequences=synth.val_sequences, **common)
        return train, val
    from efc_core.data.datasets import build_dataset

    train = build_dataset(data.dataset, data.root, data.train_split, **data.options)
    val = build_dataset(data.dataset, data.root, data.val_split, **data.options) if data.val_split else None
    return train, val


def class_info(config: TrainConfig, inherited: tuple[list[str], list[list[int]]] | None = None
               ) -> tuple[list[str], list[list[int]]]:
    """Class names and palette stored with checkpoints of this run.

    The dataset's own table (Cityscapes, CamVid, synthetic) when it has one; else the classes of
    the checkpoint the run was initialised from (own-video adaptation keeps Cityscapes names);
    else numbered placeholders.
    """
    from efc_core.data.datasets import dataset_class_info

    count = config.model.num_classes
    known = dataset_class_info(config.data.dataset, config.data.options) or inherited
    if known is not None and len(known[0]) >= count:
        return list(known[0][:count]), [list(colour) for colour in known[1][:count]]
    placeholder_palette = [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(count)]
    return [f"class_{i}" for i in range(count)], placeholder_palette


def initialise_from_checkpoint(model: torch.nn.Module, path: str) -> tuple[list[str], list[list[int]]] | None:
    """Copy a checkpoint's weights into ``model`` (weights only: no step, optimiser or schedule).

    Tensors whose shape differs (e.g. a classifier for another number of classes) keep their fresh
    initialisation and are logged. Returns the checkpoint's class names and palette, if any.
    """
    from efc_core.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    own = model.state_dict()
    loaded = {k: v for k, v in checkpoint["model_state"].items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(loaded))
    model.load_state_dict(loaded, strict=False)
    LOG.info("initialised %d of %d tensors from %s%s", len(loaded), len(own), path,
             f"; kept fresh: {', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''}" if skipped else "")
    names, palette = checkpoint.get("class_names"), checkpoint.get("palette")
    return (list(names), [list(c) for c in palette]) if names and palette else None


def build_optimizer(model: torch.nn.Module, section: OptimizerSection) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable parameters; no weight decay on norms and biases."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": section.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if section.name == "adamw":
        return torch.optim.AdamW(groups, lr=section.lr, betas=section.betas)
    if section.name == "sgd":
        return torch.optim.SGD(groups, lr=section.lr, momentum=section.momentum, nesterov=section.nesterov)
    raise ValueError(f"unknown optimizer {section.name!r}; expected 'adamw' or 'sgd'")


def lr_factor(step: int, section: ScheduleSection) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then poly/cosine decay."""
    if step < section.warmup_steps:
        start = section.warmup_start_factor
        return start + (1.0 - start) * step / max(section.warmup_steps, 1)
    span = max(section.total_steps - section.warmup_steps, 1)
    progress = min(max(step - section.warmup_steps, 0) / span, 1.0)
    if section.decay == "poly":
        shape = (1.0 - progress) ** section.poly_power
    elif section.decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif section.decay == "constant":
        shape = 1.0
    else:
        raise ValueError(f"unknown decay {section.decay!r}")
    return section.min_lr_ratio + (1.0 - section.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, section: ScheduleSection) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` of :func:`lr_factor` (its state is the step count, so it resumes)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, section))


def stage_loss_settings(config: TrainConfig, step: int) -> tuple[LossWeights, LossConfig]:
    """Composer ``(LossWeights, LossConfig)`` in effect at ``step`` (docs/METHOD.md §3 schedule).

    Stage 1 (``step < schedule.stage2_start_step``): ``L_tc`` and ``O_seg`` off, range-map
    occlusion target. Stage 2: the configured ``loss`` values; the FB check from its own step.
    Flow / occlusion supervision follow ``loss.supervised_flow`` / ``loss.supervised_occlusion``
    until ``schedule.supervised_end_step``. With ``schedule.seg_only_steps_per_joint_step = N``,
    only every ``(N + 1)``-th step (0, N + 1, ...) is joint; the others keep only ``seg``.
    """
    schedule = config.schedule
    weights, loss_config = config.loss.weights, config.loss.config
    fb_check = schedule.fb_check_start_step is not None and step >= schedule.fb_check_start_step
    target = "fb_check" if fb_check else "range_map"
    supervised = schedule.supervised_end_step is None or step < schedule.supervised_end_step
    loss_config = dataclasses.replace(
        loss_config, occlusion_target=target,
        supervised_flow=config.loss.supervised_flow and supervised,
        supervised_occlusion=config.loss.supervised_occlusion and supervised,
    )
    if step < schedule.stage2_start_step:
        weights = dataclasses.replace(weights, temporal=0.0)
        loss_config = dataclasses.replace(loss_config, use_seg_mask=False)
    if step % (schedule.seg_only_steps_per_joint_step + 1) != 0:
        weights = dataclasses.replace(weights, photometric=0.0, smoothness=0.0, occlusion=0.0, temporal=0.0,
                                      supervised_flow=0.0)
        loss_config = dataclasses.replace(loss_config, supervised_flow=False, supervised_occlusion=False)
    return weights, loss_config


def normalise_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> ImageNet-normalised network input (contract)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
