"""Training and evaluation datasets, all yielding the sample dict of ARCHITECTURE.md.

``build_dataset(name, root, split, **options)`` is the one entry point of the training recipes
(``data.options`` of a YAML config). Options common to every name:

* ``resize: [H, W]``: resize every sample first (flow scaled, labels nearest);
* ``augment: {crop_size, scale_range, hflip_p, jitter}``: random augmentations
  (:func:`transforms.build_transforms`), off unless given;
* ``pairs: {min_gap, max_gap, directions, unlabelled_per_labelled, seed}``: pair sampling of the
  sequence datasets (:class:`PairSamplingConfig`);
* ``per_split: {split_name: {...}}``: options merged in only for that split, because the training
  loop passes one options dict to both the training and the validation split (augment the
  training split only, evaluate the labelled frame against its predecessor, ...);
* ``transform``: a callable replacing the pipeline (from Python, not YAML).

KITTI splits: ``train`` (benchmark pairs with ground truth), ``test``, ``multiview`` /
``multiview_test`` (unlabelled multi-view frames as sequences, frames 9-12 left out).
Name-specific options: ``sintel``: ``pass_name``; ``rosbag``: ``topic`` (required), ``max_gap_s``;
``synthetic``: the keyword arguments of ``SyntheticVideoDataset``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from efc_core.data.datasets.pair_sampling import FramePair, PairSamplingConfig, build_pairs
from efc_core.data.datasets.transforms import build_transforms

DATASET_NAMES: tuple[str, ...] = (
    "synthetic", "cityscapes", "camvid", "kitti2015", "kitti2012", "sintel", "flyingchairs",
    "image_folder", "video", "rosbag",
)
_COMMON_OPTIONS = ("resize", "augment", "pairs", "transform")
_SPECIFIC_OPTIONS: dict[str, tuple[str, ...]] = {"sintel": ("pass_name",), "rosbag": ("topic", "max_gap_s")}
_PAIRED_NAMES = ("cityscapes", "camvid", "image_folder", "video", "rosbag", "kitti2015", "kitti2012")
#: KITTI splits of unlabelled multi-view frames -> folder (the benchmark pairs use train / test).
_KITTI_MULTIVIEW_SPLITS = {"multiview": "training", "multiview_test": "testing"}

__all__ = ["DATASET_NAMES", "FramePair", "PairSamplingConfig", "build_dataset", "build_pairs", "dataset_class_info"]


def _options_for_split(options: dict[str, Any], split: str) -> dict[str, Any]:
    """``options`` without ``per_split``, updated with ``per_split[split]`` (nested dicts replaced whole)."""
    merged = dict(options)
    per_split = merged.pop("per_split", None) or {}
    if not isinstance(per_split, dict):
        raise ValueError(f"per_split must map split names to options, got {per_split!r}")
    merged.update(per_split.get(split) or {})
    return merged


def _pair_config(options: dict[str, Any]) -> PairSamplingConfig | None:
    pairs = options.get("pairs")
    if pairs is None:
        return None
    pairs = dict(pairs)
    if "directions" in pairs:
        pairs["directions"] = tuple(pairs["directions"])
    try:
        return PairSamplingConfig(**pairs)
    except TypeError as error:
        raise ValueError(f"bad pairs options {pairs!r}: {error}") from None


def _transform(options: dict[str, Any]) -> Callable:
    if options.get("transform") is not None:
        return options["transform"]
    augment = options.get("augment")
    try:
        return build_transforms(train=augment is not None, resize=options.get("resize"), **(augment or {}))
    except TypeError as error:
        raise ValueError(f"bad augment options {augment!r}: {error}") from None


def build_dataset(name: str, root: str | Path | None, split: str, **options: Any) -> Dataset:
    """Build dataset ``name`` over ``root`` (a folder, video file or bag) for ``split``.

    Returns a ``torch.utils.data.Dataset`` of sample dicts; see the module docstring for
    ``options``. ``ValueError`` names an unknown dataset or option; ``FileNotFoundError`` a
    missing folder.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    options = _options_for_split(options, split)
    if name == "synthetic":
        # Owned by efc_core.data.video_dataset; imported here only when asked for.
        from efc_core.data.video_dataset import SyntheticVideoDataset

        return SyntheticVideoDataset(split=split, **options)
    allowed = _COMMON_OPTIONS + _SPECIFIC_OPTIONS.get(name, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; expected some of {sorted(allowed)}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root path")
    if "pairs" in options and name not in _PAIRED_NAMES:
        raise ValueError(f"dataset {name!r} has fixed pairs; 'pairs' applies to {_PAIRED_NAMES}")
    transform = _transform(options)
    pair_config = _pair_config(options)

    if name == "cityscapes":
        from efc_core.data.datasets.cityscapes import CityscapesSequenceDataset

        return CityscapesSequenceDataset(root, split, pair_config, transform)
    if name == "camvid":
        from efc_core.data.datasets.camvid import CamVidDataset

        return CamVidDataset(root, split, pair_config, transform)
    if name in ("kitti2015", "kitti2012"):
        from efc_core.data.datasets import flow_datasets

        version = int(name[-4:])
        if split in _KITTI_MULTIVIEW_SPLITS:
            return flow_datasets.KittiMultiviewDataset(root, _KITTI_MULTIVIEW_SPLITS[split], version, pair_config, transform)
        if pair_config is not None:
            raise ValueError(f"KITTI split {split!r} has fixed pairs; 'pairs' applies to {tuple(_KITTI_MULTIVIEW_SPLITS)}")
        return flow_datasets.KittiFlowDataset(root, split, version=version, transform=transform)
    if name == "sintel":
        from efc_core.data.datasets.flow_datasets import SintelDataset

        return SintelDataset(root, split, pass_name=options.get("pass_name", "clean"), transform=transform)
    if name == "flyingchairs":
        from efc_core.data.datasets.flow_datasets import FlyingChairsDataset

        return FlyingChairsDataset(root, split, transform=transform)

    from efc_core.data.datasets import own_video

    if name == "image_folder":
        source: Any = own_video.ImageFolderSource(root)
    elif name == "video":
        source = own_video.VideoFileSource(root)
    else:
        if "topic" not in options:
            raise ValueError("dataset 'rosbag' needs the option 'topic' (an Image or CompressedImage topic)")
        source = own_video.RosbagImageSource(root, options["topic"], max_gap_s=options.get("max_gap_s", 0.5))
    return own_video.OwnVideoDataset(source, pair_config, transform)


def dataset_class_info(name: str) -> tuple[list[str], list[list[int]]] | None:
    """Class names and RGB palette of a labelled dataset (for checkpoints and manifests), else None."""
    if name == "cityscapes":
        from efc_core.data.datasets.cityscapes import CITYSCAPES_CLASS_NAMES as names, CITYSCAPES_PALETTE as palette
    elif name == "camvid":
        from efc_core.data.datasets.camvid import CAMVID_CLASS_NAMES as names, CAMVID_PALETTE as palette
    elif name == "synthetic":
        from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES as names, SYNTHETIC_PALETTE as palette
    else:
        return None
    return list(names), np.asarray(palette).tolist()
