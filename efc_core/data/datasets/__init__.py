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
``synthetic``: the keyword arguments of ``SyntheticVideoDataset`` (in a mixture, only its own options
apply; ``with_labels: false`` hides its classes when it is mixed with a labelled dataset of others).
``augment.self_warp: {max_translation, max_rotation_deg, max_scale_change, p}`` pairs each frame with a
warped copy of itself (exact flow and occlusion; ``self_warp.py``).
``augment.teacher_flow: {preset, alpha1, alpha2, min_valid_fraction}`` gives pairs without known flow
OpenCV DIS's flow as a target where its forward and backward flows agree (``teacher_flow.py``).

Unlabelled real video (``real_video.py``; the split is ignored, every frame is unlabelled):
``davis`` (``root/<sequence>/frames/*.jpg``) and ``kitti_odometry`` (``root/<sequence>/*.jpg``,
greyscale read as RGB) take ``sequences: [names]`` to use a subset; ``video`` (a video file or a
folder of them) takes ``scene_cut_threshold`` (grey levels, null: off), ``cache`` (frames kept as
JPEG in memory, default true) and ``max_frames`` (per file).

``mixture`` (``mixture.py``, root ignored) draws from several of the above in a ratio::

    dataset: mixture
    options:
      augment: {crop_size: [192, 256]}       # defaults for every source (resize, augment, pairs)
      length: 2000                           # samples per epoch (default: every source covered once)
      seed: 0
      sources:
        - {name: camvid, root: ../shared/data/real/camvid, weight: 0.5,
           pairs: {max_gap: 1, unlabelled_per_labelled: 0}}
        - {name: davis, root: ../shared/data/real/davis, weight: 0.3, pairs: {max_gap: 2}}
        - {name: video, root: ../shared/data/real/video, weight: 0.2, splits: [train]}

A source takes ``name``, ``root``, ``weight`` (default 1), ``split`` (default: the mixture's),
``splits`` (mixture splits that include it; default all) and any option of its dataset name; its
options replace the mixture-level defaults key by key. ``per_split`` works at both levels. A split
that uses one source only (``val`` above: CamVid) gets that source's dataset itself, so ``length``
and ``weight`` do not inflate validation.
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
    "image_folder", "video", "rosbag", "davis", "kitti_odometry", "mixture",
)
_COMMON_OPTIONS = ("resize", "augment", "pairs", "transform")
_SPECIFIC_OPTIONS: dict[str, tuple[str, ...]] = {
    "sintel": ("pass_name",), "rosbag": ("topic", "max_gap_s"), "davis": ("sequences",),
    "kitti_odometry": ("sequences",), "video": ("scene_cut_threshold", "cache", "max_frames"),
    "mixture": ("sources", "length", "seed"),
}
_PAIRED_NAMES = ("cityscapes", "camvid", "image_folder", "video", "rosbag", "kitti2015", "kitti2012",
                 "davis", "kitti_odometry")
#: Keys of a mixture source that are not options of its dataset.
_MIXTURE_SOURCE_KEYS = ("name", "root", "weight", "split", "splits")
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
    if name == "mixture":
        return _build_mixture(split, options)
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
            return flow_datasets.KittiMultiviewDataset(root, _KITTI_MULTIVIEW_SPLITS[split], version, pair_config,
                                                       transform)
        if pair_config is not None:
            raise ValueError(f"KITTI split {split!r} has fixed pairs; 'pairs' applies to "
                             f"{tuple(_KITTI_MULTIVIEW_SPLITS)}")
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
    elif name in ("video", "davis", "kitti_odometry"):
        from efc_core.data.datasets import real_video

        if name == "video":
            source = real_video.VideoClipsSource(
                root, scene_cut_threshold=options.get("scene_cut_threshold", real_video.DEFAULT_SCENE_CUT_THRESHOLD),
                cache=bool(options.get("cache", True)), max_frames=options.get("max_frames"),
            )
        elif name == "davis":
            source = real_video.davis_source(root, options.get("sequences"))
        else:
            source = real_video.kitti_odometry_source(root, options.get("sequences"))
    else:
        if "topic" not in options:
            raise ValueError("dataset 'rosbag' needs the option 'topic' (an Image or CompressedImage topic)")
        source = own_video.RosbagImageSource(root, options["topic"], max_gap_s=options.get("max_gap_s", 0.5))
    return own_video.OwnVideoDataset(source, pair_config, transform)


def _build_mixture(split: str, options: dict[str, Any]) -> Dataset:
    """The ``mixture`` dataset of ``options`` (already merged for ``split``); see the module docstring."""
    from efc_core.data.datasets.mixture import MixtureDataset

    sources_spec = options.get("sources")
    if not isinstance(sources_spec, list) or not sources_spec:
        raise ValueError(f"dataset 'mixture' needs 'sources': a non-empty list of source mappings, "
                         f"got {sources_spec!r}")
    unknown = sorted(set(options) - set(_COMMON_OPTIONS + _SPECIFIC_OPTIONS["mixture"]))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset 'mixture'")
    defaults = {key: options[key] for key in _COMMON_OPTIONS if key in options}
    datasets, weights, names = [], [], []
    for position, spec in enumerate(sources_spec):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ValueError(f"mixture source #{position} must be a mapping with a 'name', got {spec!r}")
        if spec["name"] == "mixture":
            raise ValueError(f"mixture source #{position}: a mixture cannot hold another mixture")
        splits = spec.get("splits")
        if splits is not None and split not in splits:
            continue
        own_options = {k: v for k, v in spec.items() if k not in _MIXTURE_SOURCE_KEYS}
        # Generated video takes its size and motion from its own options, not the readers' defaults.
        source_options = own_options if spec["name"] == "synthetic" else defaults | own_options
        label = f"{spec['name']}:{spec.get('root')}"
        try:
            datasets.append(build_dataset(spec["name"], spec.get("root"), spec.get("split", split), **source_options))
        except (ValueError, TypeError) as error:
            raise ValueError(f"mixture source #{position} ({label}): {error}") from None
        weights.append(float(spec.get("weight", 1.0)))
        names.append(label)
    if not datasets:
        raise ValueError(f"no mixture source is used for split {split!r} (check their 'splits')")
    if len(datasets) == 1:
        # A mixture of one (e.g. the labelled validation split) is that dataset: no length, no repeats.
        return datasets[0]
    return MixtureDataset(datasets, weights, names=names, length=options.get("length"),
                          seed=int(options.get("seed", 0)))


def dataset_class_info(name: str, options: dict[str, Any] | None = None) -> tuple[list[str], list[list[int]]] | None:
    """Class names and RGB palette of a labelled dataset (for checkpoints and manifests), else None.

    For ``mixture`` pass its ``options``: the table of its first source that has one.
    """
    if name == "mixture":
        for spec in (options or {}).get("sources") or []:
            if not isinstance(spec, dict) or (spec.get("name") == "synthetic" and spec.get("with_labels") is False):
                continue
            info = dataset_class_info(spec.get("name", ""))
            if info is not None:
                return info
        return None
    if name == "cityscapes":
        from efc_core.data.datasets.cityscapes import CITYSCAPES_CLASS_NAMES as names, CITYSCAPES_PALETTE as palette
    elif name == "camvid":
        from efc_core.data.datasets.camvid import CAMVID_CLASS_NAMES as names, CAMVID_PALETTE as palette
    elif name == "synthetic":
        from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES as names, SYNTHETIC_PALETTE as palette
    else:
        return None
    return list(names), np.asarray(palette).tolist()
