"""Optical-flow benchmarks as sample dicts: KITTI 2015 / 2012, MPI Sintel, FlyingChairs.

Listing and decoding are torchvision's (``torchvision.datasets.KittiFlow``, ``Sintel``,
``FlyingChairs``), except KITTI's 16-bit PNGs, read with ``efc_core.data.formats`` because
torchvision's reader goes through the deprecated ``torchvision.io``; this module adds what EFC needs on top: occlusion
ground truth
(KITTI: valid in ``flow_occ`` but not in ``flow_noc``; Sintel: ``training/occlusions``), KITTI 2012,
and the common sample dict. Layouts (``root`` may be the named folder or its parent)::

    KittiFlow/training/image_2/000000_10.png, _11.png; flow_occ/000000_10.png; flow_noc/000000_10.png
    (KITTI 2012: training/colored_0/..., flow_occ/, flow_noc/; root is the folder holding training/)
    (KITTI multi-view extension, split "multiview": training/image_2/000000_00.png .. _20.png)
    Sintel/training/{clean,final}/{scene}/frame_0001.png; flow/{scene}/frame_0001.flo;
           occlusions/{scene}/frame_0001.png (255 = occluded)
    FlyingChairs/data/00001_img1.ppm, _img2.ppm, _flow.flo; FlyingChairs/FlyingChairs_train_val.txt

KITTI occlusion ground truth exists only where ``flow_occ`` is valid: ``occ_fw`` is False elsewhere,
so occlusion metrics on KITTI must be restricted to ``flow_valid``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision.datasets import FlyingChairs, KittiFlow, Sintel
from torchvision.datasets._optical_flow import FlowDataset

from efc_core.data.datasets.pair_sampling import PairSamplingConfig
from efc_core.data.datasets.sample import RawSample, make_raw_sample, read_rgb
from efc_core.data.datasets.sequence_pairs import SequencePairDataset
from efc_core.data.formats import read_kitti_flow, read_occlusion_png
from efc_core.data.datasets.transforms import ToTensor

_KITTI_IMAGE_DIRS: dict[int, str] = {2015: "image_2", 2012: "colored_0"}
_SPLIT_FOLDERS: dict[str, str] = {"train": "training", "training": "training", "test": "testing", "testing": "testing"}


def torchvision_root(root: str | Path, folder: str) -> Path:
    """The parent folder torchvision expects: ``root`` if it holds ``folder``, its parent if it is it."""
    root = Path(root)
    if (root / folder).is_dir():
        return root
    if root.name == folder and root.is_dir():
        return root.parent
    raise FileNotFoundError(f"expected a folder named {folder!r} at {root} or inside it (torchvision layout); "
                            f"rename or symlink the extracted dataset to {folder}")


class _KittiFolder(KittiFlow):
    """torchvision's KittiFlow reader over ``root/{training,testing}/{image_dir}`` for any folder name.

    torchvision hard-codes ``root/KittiFlow`` and ``image_2`` (2015); KITTI 2012 uses ``colored_0``.
    The listing differs, and flow PNGs are decoded with ``efc_core.data.formats``.
    """

    def __init__(self, root: Path, split_folder: str, image_dir: str) -> None:
        FlowDataset.__init__(self, root=root, loader=read_rgb)
        base = root / split_folder
        images1 = sorted(glob(str(base / image_dir / "*_10.png")))
        images2 = sorted(glob(str(base / image_dir / "*_11.png")))
        if not images1 or len(images1) != len(images2):
            raise FileNotFoundError(f"no KITTI image pairs *_10.png/*_11.png in {base / image_dir}")
        self._image_list = [[a, b] for a, b in zip(images1, images2)]
        if split_folder == "training":
            self._flow_list = sorted(glob(str(base / "flow_occ" / "*_10.png")))
            if len(self._flow_list) != len(self._image_list):
                raise FileNotFoundError(f"{len(self._flow_list)} flow_occ files for {len(self._image_list)} pairs in "
                                        f"{base}")

    def _read_flow(self, file_name: str) -> tuple[np.ndarray, np.ndarray]:
        # torchvision decodes the 16-bit PNG with torchvision.io, deprecated since 0.29; the
        # project's OpenCV reader returns the same values. Shape as torchvision: (2, H, W), (H, W).
        flow, valid = read_kitti_flow(file_name)
        return flow.transpose(2, 0, 1), valid


class KittiFlowDataset(Dataset):
    """KITTI flow 2015 or 2012 pairs ``_10 -> _11`` with occ/noc ground truth.

    Args:
        root: ``KittiFlow`` (or its parent) for 2015, or any folder holding ``training/``.
        split: ``train``/``training`` (ground truth) or ``test``/``testing`` (images only).
        version: 2015 or 2012.
        transform: raw sample -> sample (default ToTensor).
    """

    def __init__(self, root: str | Path, split: str = "train", version: int = 2015,
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        if version not in _KITTI_IMAGE_DIRS:
            raise ValueError(f"KITTI version must be 2015 or 2012, got {version!r}")
        if split not in _SPLIT_FOLDERS:
            raise ValueError(f"KITTI split must be one of {sorted(_SPLIT_FOLDERS)}, got {split!r}")
        root = Path(root)
        if version == 2015 and not (root / "training").is_dir() and not (root / "testing").is_dir():
            root = torchvision_root(root, "KittiFlow") / "KittiFlow"
        self.reader = _KittiFolder(root, _SPLIT_FOLDERS[split], _KITTI_IMAGE_DIRS[version])
        self.transform = transform or ToTensor()
        self.version = version

    def __len__(self) -> int:
        return len(self.reader)

    def raw_sample(self, index: int) -> RawSample:
        """Untransformed sample; occlusion = valid in flow_occ and not in flow_noc."""
        if not self.reader._flow_list:
            image1, image2, _, _ = self.reader[index]
            return make_raw_sample(image1, image2)
        image1, image2, flow, valid = self.reader[index]
        # Invalid pixels decode to -512 px (a stored 0); the sample convention is 0 where unknown.
        flow = flow.transpose(1, 2, 0) * valid[..., None]
        occlusion = None
        noc_path = Path(self.reader._flow_list[index].replace("flow_occ", "flow_noc"))
        if noc_path.is_file():
            _, valid_noc = self.reader._read_flow(str(noc_path))
            occlusion = valid & ~valid_noc
        return make_raw_sample(image1, image2, flow_fw=flow, flow_valid=valid, occ_fw=occlusion,
                               occ_bw=np.zeros_like(valid) if occlusion is not None else None)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.raw_sample(index))


class SintelDataset(Dataset):
    """MPI Sintel consecutive pairs with forward flow and (if present) occlusion masks.

    Args:
        root: ``Sintel`` or its parent.
        split: ``train`` or ``test``.
        pass_name: ``clean``, ``final`` or ``both``.
        transform: raw sample -> sample (default ToTensor).
    """

    def __init__(self, root: str | Path, split: str = "train", pass_name: str = "clean",
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        self.reader = Sintel(torchvision_root(root, "Sintel"), split=split, pass_name=pass_name, loader=read_rgb)
        self.transform = transform or ToTensor()

    def __len__(self) -> int:
        return len(self.reader)

    def raw_sample(self, index: int) -> RawSample:
        """Untransformed sample; Sintel flow is dense (valid everywhere)."""
        image1, image2, flow = self.reader[index]
        if flow is None:
            return make_raw_sample(image1, image2)
        flow_path = Path(self.reader._flow_list[index])
        occlusion_path = flow_path.parents[2] / "occlusions" / flow_path.parent.name / f"{flow_path.stem}.png"
        occlusion = read_occlusion_png(occlusion_path) if occlusion_path.is_file() else None
        return make_raw_sample(image1, image2, flow_fw=flow.transpose(1, 2, 0), occ_fw=occlusion,
                               occ_bw=np.zeros_like(occlusion) if occlusion is not None else None)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.raw_sample(index))


class FlyingChairsDataset(Dataset):
    """FlyingChairs pairs with dense forward flow (no occlusion ground truth).

    Args:
        root: ``FlyingChairs`` or its parent.
        split: ``train`` or ``val`` (``FlyingChairs_train_val.txt``).
        transform: raw sample -> sample (default ToTensor).
    """

    def __init__(self, root: str | Path, split: str = "train",
                 transform: Callable[[RawSample], Any] | None = None) -> None:
        self.reader = FlyingChairs(torchvision_root(root, "FlyingChairs"), split=split)
        self.transform = transform or ToTensor()

    def __len__(self) -> int:
        return len(self.reader)

    def raw_sample(self, index: int) -> RawSample:
        """Untransformed sample (torchvision returns PIL images here)."""
        image1, image2, flow = self.reader[index]
        return make_raw_sample(np.asarray(image1, dtype=np.uint8), np.asarray(image2, dtype=np.uint8),
                               flow_fw=flow.transpose(1, 2, 0))

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.raw_sample(index))


class KittiMultiviewDataset(SequencePairDataset):
    """Unlabelled pairs from the KITTI multi-view extension, for unsupervised flow training.

    ``root/{training,testing}/{image_2|colored_0}/{id}_{kk}.png`` (kk = 00..20, the benchmark pair
    is 10/11). Each id is a sequence; frames ``exclude_frames`` (default 9..12, around the
    benchmark pair, so that training never sees the evaluation frames' neighbourhood) are left out
    and split the sequence in two, so no pair spans them.

    Args:
        root: the folder holding ``training/`` (the multi-view zip extracted over the flow one).
        split_folder: ``training`` or ``testing``.
        version: 2015 or 2012.
        pair_config: gaps and directions (all pairs are unlabelled and all are kept).
        transform: raw sample -> sample (default ToTensor).
    """

    def __init__(self, root: str | Path, split_folder: str = "training", version: int = 2015,
                 pair_config: PairSamplingConfig | None = None, transform: Callable[[RawSample], Any] | None = None,
                 exclude_frames: tuple[int, ...] = (9, 10, 11, 12)) -> None:
        config = dataclasses.replace(pair_config or PairSamplingConfig(), unlabelled_per_labelled=None)
        super().__init__(config, transform)
        folder = Path(root) / split_folder / _KITTI_IMAGE_DIRS[version]
        by_id: dict[str, list[int]] = {}
        for path in folder.glob("*_*.png"):
            scene, frame = path.stem.rsplit("_", 1)
            if frame.isdigit() and int(frame) not in exclude_frames:
                by_id.setdefault(scene, []).append(int(frame))
        self.sequences: list[tuple[str, list[int]]] = []
        for scene in sorted(by_id):
            frames = sorted(by_id[scene])
            run = [frames[0]]
            for frame in frames[1:]:
                if frame != run[-1] + 1:  # a hole (the excluded frames) ends a sequence
                    self.sequences.append((scene, run))
                    run = []
                run.append(frame)
            self.sequences.append((scene, run))
        self.folder = folder
        self._set_sequences([[False] * len(frames) for _, frames in self.sequences], source=str(folder))

    def read_frame(self, sequence: int, index: int) -> np.ndarray:
        scene, frames = self.sequences[sequence]
        return read_rgb(self.folder / f"{scene}_{frames[index]:02d}.png")

    def read_label(self, sequence: int, index: int) -> np.ndarray:
        raise ValueError("KITTI multi-view frames have no labels")
