"""Writers of tiny on-disk dataset trees in each dataset's exact layout and file formats.

Frames encode where they come from, so a test can tell which file a reader returned:
channel 0 = frame number, channel 1 = sequence number, channel 2 = a per-tree constant (plus a
small texture so images are not flat). Flow files use ``efc_core.data.formats`` (the project's
``.flo`` / KITTI PNG writers) and are read back through torchvision in the datasets.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: Cityscapes label ids used in fixtures and their official train ids (cityscapesScripts labels.py).
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    0: 255, 4: 255, 7: 0, 8: 1, 11: 2, 17: 5, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18,
}


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image losslessly (PNG / PPM by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")


def write_gray(path: Path, image: np.ndarray) -> None:
    """Write an (H, W) uint8 image (labels, masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def coded_frame(frame: int, sequence: int, tag: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 frame whose channels 0/1 are ``frame``/``sequence`` (mod 256) and 2 is ``tag``."""
    height, width = size
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = frame % 256
    image[..., 1] = sequence % 256
    image[..., 2] = tag % 256
    return image


def write_cityscapes_tree(root: Path, split: str = "train", cities: dict[str, int] | None = None,
                          snippet_length: int = 30, labelled_index: int = 19,
                          size: tuple[int, int] = (16, 32), seed: int = 0) -> dict[tuple[str, int], np.ndarray]:
    """``leftImg8bit_sequence`` + ``gtFine`` for ``cities`` (name -> number of snippets).

    Snippet ``s`` of a city has sequence number ``s`` and frame numbers ``100*s + k`` (k < length),
    its labelled frame is ``labelled_index``. Returns the label-id image of each labelled frame,
    keyed by (city, sequence).
    """
    rng = np.random.default_rng(seed)
    cities = cities or {"aachen": 2, "bremen": 1}
    label_ids = np.array(sorted(CITYSCAPES_ID_TO_TRAIN_ID), np.uint8)
    labels: dict[tuple[str, int], np.ndarray] = {}
    for city_index, (city, snippets) in enumerate(sorted(cities.items())):
        for sequence in range(snippets):
            for k in range(snippet_length):
                frame = 100 * sequence + k
                stem = f"{city}_{sequence:06d}_{frame:06d}"
                write_rgb(root / "leftImg8bit_sequence" / split / city / f"{stem}_leftImg8bit.png",
                          coded_frame(frame, sequence, city_index, size))
                if k == labelled_index:
                    label = rng.choice(label_ids, size=size).astype(np.uint8)
                    write_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
                    labels[(city, sequence)] = label
    return labels


def write_camvid_tree(root: Path, split: str = "train", sequences: dict[str, int] | None = None,
                      size: tuple[int, int] = (12, 20), seed: int = 0, frame_suffix: str = ".png",
                      frame_step: int = 30, digits: int = 6) -> None:
    """SegNet-layout CamVid: ``{split}/{seq}_{frame:06d}.png`` and ``{split}annot/`` ids 0..11.

    Frame numbers step by ``frame_step`` (30: CamVid labels one frame per second of 30 Hz video).
    ``frame_suffix=".jpg"``, ``frame_step=2``, ``digits=5`` give the workplace copy's val layout
    (``0016E5_07959.jpg``; labels stay PNG). JPEG frames are written at quality 100.
    """
    rng = np.random.default_rng(seed)
    sequences = sequences or {"0001TP": 4, "Seq05VD": 3}
    for seq_index, (name, count) in enumerate(sorted(sequences.items())):
        for k in range(count):
            stem = f"{name}_{6690 + frame_step * k:0{digits}d}"
            write_rgb(root / split / f"{stem}{frame_suffix}", coded_frame(k, seq_index, 7, size))
            write_gray(root / f"{split}annot" / f"{stem}.png", rng.integers(0, 12, size=size, dtype=np.uint8))


def textured_frame(frame: int, sequence: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 smooth random texture of ``sequence`` shifted right by ``frame`` pixels.

    Survives JPEG and video compression well enough that a test can tell frames and sequences apart
    (channel means differ per sequence; the texture moves by one pixel per frame).
    """
    height, width = size
    rng = np.random.default_rng(1000 + sequence)
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, (width + 64) // 8), 3)).astype(np.float32)
    big = cv2.resize(coarse, (width + 64, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(big[:, 64 - frame % 64: 64 - frame % 64 + width], 0, 255).astype(np.uint8)
    return image


def write_davis_tree(root: Path, sequences: dict[str, int] | None = None, size: tuple[int, int] = (24, 40)) -> None:
    """DAVIS-2016 layout: ``root/<sequence>/frames/%05d.jpg`` and ``masks/%05d.png`` (255 = object)."""
    sequences = sequences or {"bear": 4, "car-shadow": 3}
    for seq_index, (name, count) in enumerate(sorted(sequences.items())):
        for k in range(count):
            write_rgb(root / name / "frames" / f"{k:05d}.jpg", textured_frame(k, seq_index, size))
            mask = np.zeros(size, np.uint8)
            mask[size[0] // 4: size[0] // 2, size[1] // 4: size[1] // 2] = 255
            write_gray(root / name / "masks" / f"{k:05d}.png", mask)


def write_kitti_odometry_tree(root: Path, sequences: dict[str, int] | None = None,
                              size: tuple[int, int] = (20, 64)) -> None:
    """KITTI odometry as in the workplace: ``root/sequence_N/%06d.jpg``, greyscale (single-channel) JPEG."""
    sequences = sequences or {"sequence_1": 3, "sequence_2": 4}
    for seq_index, (name, count) in enumerate(sorted(sequences.items())):
        for k in range(count):
            write_gray(root / name / f"{k:06d}.jpg",
                       cv2.cvtColor(textured_frame(k, seq_index, size), cv2.COLOR_RGB2GRAY))


def write_video(path: Path, scenes: list[int], size: tuple[int, int] = (48, 64), fps: float = 10.0) -> list[np.ndarray]:
    """An MJPG ``.avi`` of ``len(scenes)`` shots of ``scenes[i]`` frames each (a hard cut between
    shots: each shot is a different texture panning by a pixel per frame). Returns the RGB frames.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    frames = []
    for scene, count in enumerate(scenes):
        for k in range(count):
            frame = textured_frame(k, scene, size)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            frames.append(frame)
    writer.release()
    return frames


def smooth_flow(size: tuple[int, int], seed: int, magnitude: float = 3.0) -> np.ndarray:
    """(H, W, 2) float32 smooth random flow in pixels (quarter-pixel values, exact in KITTI PNG)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-magnitude, magnitude, size=(3, 4, 2)).astype(np.float32)
    flow = cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.round(flow * 4) / 4


def write_kitti_tree(root: Path, version: int = 2015, pairs: int = 2, size: tuple[int, int] = (10, 24),
                     seed: int = 0) -> list[dict[str, np.ndarray]]:
    """KITTI flow ``training/`` tree (2015: ``image_2``; 2012: ``colored_0``) with occ and noc flow.

    Returns per pair ``flow``, ``valid_occ``, ``valid_noc`` as written.
    """
    from efc_core.data.formats import write_kitti_flow

    rng = np.random.default_rng(seed)
    image_dir = "image_2" if version == 2015 else "colored_0"
    written = []
    for index in range(pairs):
        for frame in (10, 11):
            write_rgb(root / "training" / image_dir / f"{index:06d}_{frame}.png",
                      coded_frame(frame, index, version % 256, size))
        flow = smooth_flow(size, seed + index)
        valid_occ = rng.random(size) < 0.8
        valid_noc = valid_occ & (rng.random(size) < 0.7)
        for folder, valid in (("flow_occ", valid_occ), ("flow_noc", valid_noc)):
            path = root / "training" / folder / f"{index:06d}_10.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_kitti_flow(path, flow, valid)
        written.append({"flow": flow, "valid_occ": valid_occ, "valid_noc": valid_noc})
    return written


def write_sintel_tree(root: Path, scenes: dict[str, int] | None = None, size: tuple[int, int] = (8, 16),
                      seed: int = 0) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """``Sintel/training/{clean,final}/{scene}/frame_%04d.png``, ``flow/``, ``occlusions/``.

    Returns (flow, occlusion) per (scene, first frame index, 0-based).
    """
    from efc_core.data.formats import write_flo

    rng = np.random.default_rng(seed)
    scenes = scenes or {"alley_1": 3, "market_2": 2}
    base = root / "Sintel" / "training"
    truth = {}
    for scene_index, (scene, frames) in enumerate(sorted(scenes.items())):
        for k in range(frames):
            for pass_index, pass_name in enumerate(("clean", "final")):
                write_rgb(base / pass_name / scene / f"frame_{k + 1:04d}.png",
                          coded_frame(k, scene_index, pass_index, size))
            if k < frames - 1:
                flow = rng.normal(0, 2, size=(*size, 2)).astype(np.float32)
                occlusion = rng.random(size) < 0.2
                (base / "flow" / scene).mkdir(parents=True, exist_ok=True)
                write_flo(base / "flow" / scene / f"frame_{k + 1:04d}.flo", flow)
                write_gray(base / "occlusions" / scene / f"frame_{k + 1:04d}.png", occlusion.astype(np.uint8) * 255)
                truth[(scene, k)] = (flow, occlusion)
    return truth


def write_flyingchairs_tree(root: Path, split_ids: tuple[int, ...] = (1, 2, 1), size: tuple[int, int] = (8, 12),
                            seed: int = 0) -> list[np.ndarray]:
    """``FlyingChairs/data/%05d_img1.ppm``, ``_img2.ppm``, ``_flow.flo`` and ``FlyingChairs_train_val.txt``."""
    from efc_core.data.formats import write_flo

    rng = np.random.default_rng(seed)
    base = root / "FlyingChairs"
    flows = []
    for index in range(len(split_ids)):
        stem = f"{index + 1:05d}"
        write_rgb(base / "data" / f"{stem}_img1.ppm", coded_frame(1, index, 3, size))
        write_rgb(base / "data" / f"{stem}_img2.ppm", coded_frame(2, index, 3, size))
        flow = rng.normal(0, 5, size=(*size, 2)).astype(np.float32)
        write_flo(base / "data" / f"{stem}_flow.flo", flow)
        flows.append(flow)
    (base / "FlyingChairs_train_val.txt").write_text("".join(f"{s}\n" for s in split_ids))
    return flows
