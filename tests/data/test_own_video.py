"""The user's own unlabelled video: image folder, video file and rosbag image topic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from efc_core.data.datasets import build_dataset
from efc_core.edge.image_decode import decode_image
from efc_core.errors import InputError
from tests.data.fixtures import coded_frame, write_rgb

TOPIC = "/camera/image_raw"


def textured_frame(index: int, size=(24, 32)) -> np.ndarray:
    """An RGB frame with a random texture keyed by ``index`` (so every frame is distinguishable)."""
    return np.random.default_rng(index).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def image_message(typestore, frame_rgb: np.ndarray, stamp_ns: int, encoding: str, row_padding: int = 0):
    """A ``sensor_msgs/msg/Image`` holding ``frame_rgb`` in ``encoding`` (rows padded by ``row_padding``)."""
    if encoding == "rgb8":
        pixels = frame_rgb
    elif encoding == "bgr8":
        pixels = frame_rgb[..., ::-1]
    elif encoding == "mono8":
        pixels = frame_rgb[..., :1]
    else:
        raise ValueError(encoding)
    height, width, channels = pixels.shape
    step = width * channels + row_padding
    rows = np.zeros((height, step), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    Image = typestore.types["sensor_msgs/msg/Image"]
    Header = typestore.types["std_msgs/msg/Header"]
    Time = typestore.types["builtin_interfaces/msg/Time"]
    header = Header(stamp=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000), frame_id="camera")
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=step,
                 data=rows.reshape(-1))


def write_image_bag(path: Path, frames: list[np.ndarray], stamps_ns: list[int], encoding: str = "rgb8",
                    row_padding: int = 0, compressed: bool = False, log_order: list[int] | None = None,
                    storage: str = "sqlite3") -> None:
    """A rosbag2 (version 8, Humble types) with one image topic; messages logged in ``log_order``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connection = writer.add_connection(TOPIC, msgtype, typestore=typestore)
        other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=typestore)
        for k, index in enumerate(log_order or range(len(frames))):
            stamp = stamps_ns[index]
            if compressed:
                Header = typestore.types["std_msgs/msg/Header"]
                Time = typestore.types["builtin_interfaces/msg/Time"]
                ok, png = cv2.imencode(".png", cv2.cvtColor(frames[index], cv2.COLOR_RGB2BGR))
                message = typestore.types[msgtype](
                    header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="camera"),
                    format="png", data=png.reshape(-1))
            else:
                message = image_message(typestore, frames[index], stamp, encoding, row_padding)
            # log time: arrival order, deliberately not the stamp order
            writer.write(connection, 1_000_000 + k * 1000, typestore.serialize_cdr(message, msgtype))
            if k == 0:
                text = typestore.types["std_msgs/msg/String"](data="not an image")
                writer.write(other, 1_000_000, typestore.serialize_cdr(text, "std_msgs/msg/String"))


def first_pixels(sample) -> np.ndarray:
    return (sample["image1"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def second_pixels(sample) -> np.ndarray:
    return (sample["image2"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("encoding, padding", [("rgb8", 0), ("bgr8", 4), ("mono8", 3)])
def test_rosbag_pixels_and_pair_order(tmp_path, encoding: str, padding: int) -> None:
    frames = [textured_frame(i) for i in range(6)]
    stamps = [10**9 + i * 100_000_000 for i in range(6)]
    bag = tmp_path / "bag"
    write_image_bag(bag, frames, stamps, encoding, padding, log_order=[1, 0, 2, 3, 5, 4])
    dataset = build_dataset("rosbag", str(bag), "train", topic=TOPIC, pairs={"max_gap": 2, "directions": [1]})
    assert dataset.source.sequence_stamps_ns == [stamps]  # ordered by header stamp, not log time
    assert [(p.first, p.second) for p in dataset.pairs] == [(i, i + t) for i in range(6) for t in (1, 2) if i + t < 6]
    for index, pair in enumerate(dataset.pairs):
        sample = dataset[index]
        expected1, expected2 = frames[pair.first], frames[pair.second]
        if encoding == "mono8":
            expected1 = np.repeat(expected1[..., :1], 3, axis=2)
            expected2 = np.repeat(expected2[..., :1], 3, axis=2)
        np.testing.assert_array_equal(first_pixels(sample), expected1)
        np.testing.assert_array_equal(second_pixels(sample), expected2)
        assert not sample["has_label1"] and not sample["has_flow"] and torch.all(sample["label2"] == 255)
        assert sample["frame_gap"].item() == pair.gap


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_rosbag_gap_splits_sequences_and_compressed_images(tmp_path, storage: str) -> None:
    frames = [textured_frame(i) for i in range(7)]
    stamps = [0, 1, 2, 3, 20, 21, 22]
    stamps = [10**9 + s * 100_000_000 for s in stamps]  # a 1.6 s dropout after frame 3
    bag = tmp_path / "bag"
    write_image_bag(bag, frames, stamps, compressed=True, storage=storage)
    dataset = build_dataset("rosbag", str(bag), "train", topic=TOPIC, max_gap_s=0.5)
    assert [len(s) for s in dataset.source.sequences] == [4, 3]
    for index, pair in enumerate(dataset.pairs):
        assert 1 <= abs(pair.gap) <= 5
        if pair.sequence == 1:
            np.testing.assert_array_equal(first_pixels(dataset[index]), frames[4 + pair.first])


def test_rosbag_dataset_in_loader_workers(tmp_path) -> None:
    """Each DataLoader worker opens its own bag reader (the reader is not pickled)."""
    frames = [textured_frame(i) for i in range(5)]
    bag = tmp_path / "bag"
    write_image_bag(bag, frames, [10**9 + i * 10**8 for i in range(5)])
    dataset = build_dataset("rosbag", str(bag), "train", topic=TOPIC, pairs={"max_gap": 1, "directions": [1]})
    dataset[0]  # the parent process has an open reader now; workers must not inherit it
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2)
    for pair, batch in zip(dataset.pairs, loader):
        np.testing.assert_array_equal(first_pixels({"image1": batch["image1"][0]}), frames[pair.first])


def test_rosbag_unknown_topic_lists_image_topics(tmp_path) -> None:
    bag = tmp_path / "bag"
    write_image_bag(bag, [textured_frame(0), textured_frame(1)], [1, 2])
    with pytest.raises(InputError, match="/camera/image_raw"):
        build_dataset("rosbag", str(bag), "train", topic="/nope")
    with pytest.raises(InputError, match="not an image"):
        build_dataset("rosbag", str(bag), "train", topic="/chatter")


def test_image_folder_natural_order_and_subfolders(tmp_path) -> None:
    for k in (1, 2, 10):
        write_rgb(tmp_path / "flat" / f"frame_{k}.png", coded_frame(k, 0, 0, (8, 8)))
    dataset = build_dataset("image_folder", str(tmp_path / "flat"), "train", pairs={"max_gap": 1, "directions": [1]})
    values = [(round(dataset[i]["image1"][0, 0, 0].item() * 255), round(dataset[i]["image2"][0, 0, 0].item() * 255))
              for i in range(len(dataset))]
    assert values == [(1, 2), (2, 10)]
    for run, count in (("run_a", 3), ("run_b", 2)):
        for k in range(count):
            write_rgb(tmp_path / "runs" / run / f"{k:04d}.jpg", coded_frame(k, 0, 0, (8, 8)))
    runs = build_dataset("image_folder", str(tmp_path / "runs"), "train")
    assert [len(s) for s in runs.source.sequences] == [3, 2]
    assert all(runs.labelled[p.sequence].size > max(p.first, p.second) for p in runs.pairs)


def test_video_file_frames_in_order(tmp_path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    levels = [20, 60, 100, 140, 180, 220]
    for level in levels:
        writer.write(np.full((24, 32, 3), level, np.uint8))
    writer.release()
    dataset = build_dataset("video", str(path), "train", pairs={"max_gap": 3})
    assert dataset.source.sequences == [[(0, i) for i in range(6)]]
    for index in reversed(range(len(dataset))):  # out of order: exercises seeking
        pair = dataset.pairs[index]
        sample = dataset[index]
        assert abs(sample["image1"].mean().item() * 255 - levels[pair.first]) < 4
        assert abs(sample["image2"].mean().item() * 255 - levels[pair.second]) < 4


def test_decode_rejects_unknown_encoding_and_short_data() -> None:
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    message = image_message(typestore, textured_frame(0, (4, 4)), 0, "rgb8")
    message.encoding = "32FC1"
    with pytest.raises(InputError, match="32FC1"):
        decode_image(message)
    message.encoding, message.step = "rgb8", 100
    with pytest.raises(InputError, match="too small"):
        decode_image(message)


def test_decode_bayer_and_mono16() -> None:
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    message = image_message(typestore, textured_frame(0, (8, 8)), 0, "mono8")
    mosaic = np.zeros((8, 8), np.uint8)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = 200, 100, 100, 30
    message.encoding, message.step, message.data = "bayer_rggb8", 8, mosaic.reshape(-1)
    np.testing.assert_array_equal(decode_image(message).rgb[4, 4], (200, 100, 30))
    deep = np.full((8, 8), 0xAB12, "<u2")
    message.encoding, message.step, message.data = "mono16", 16, deep.view(np.uint8).reshape(-1)
    # The one 16 -> 8 bit rule: round(v * 255 / 65535); 0xAB12 = 43794 -> 170.4 -> 170.
    assert np.all(decode_image(message).rgb == 170)


# ------------------------------------------------------------------ self-supervised fine-tuning
def translating_frames(seed: int, count: int, velocity=(2.0, 1.0), size=(64, 64)) -> list[np.ndarray]:
    """Frames of a smooth texture moving by ``velocity`` px/frame: true flow k -> k+1 is ``-velocity``."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(27, 27, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (160, 160), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    frames = []
    for k in range(count):
        shift = np.float32([[1, 0, -(20 + k * velocity[0])], [0, 1, -(20 + k * velocity[1])]])
        frames.append(cv2.warpAffine(texture, shift, (size[1], size[0]), flags=cv2.INTER_LINEAR))
    return frames


@pytest.mark.slow
def test_self_supervised_finetuning_on_a_bag_lowers_heldout_photometric_loss(tmp_path) -> None:
    from efc_core.losses.composer import LossConfig, LossWeights, compute_losses
    from efc_core.losses.photometric import census_error
    from efc_core.model import build_model
    from efc_core.model.warp import backward_warp, inside_mask
    from training.loop import normalise_images

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Three recordings in one bag, 2 s apart: the reader cuts them into three sequences; the first
    # two train, the third is held out.
    frames, stamps = [], []
    for recording in range(3):
        for k, frame in enumerate(translating_frames(seed=[0, 1, 9][recording], count=6 if recording < 2 else 5)):
            frames.append(frame)
            stamps.append(10**9 + recording * 3 * 10**9 + k * 100_000_000)
    bag = tmp_path / "robot_bag"
    write_image_bag(bag, frames, stamps)
    dataset = build_dataset("rosbag", str(bag), "train", topic=TOPIC, pairs={"max_gap": 1, "directions": [1]})
    assert [len(s) for s in dataset.source.sequences] == [6, 6, 5]
    train_indices = [i for i, p in enumerate(dataset.pairs) if p.sequence < 2]
    heldout = torch.utils.data.default_collate([dataset[i] for i, p in enumerate(dataset.pairs) if p.sequence == 2])
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, train_indices), batch_size=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))

    model = build_model("tiny", num_classes=6)
    weights = LossWeights(seg=0.0, photometric=1.0, smoothness=0.5, occlusion=0.1, temporal=0.0, supervised_flow=0.0)
    # Forward direction only: at initialisation the decoder gives nearly the same flow for both
    # input orders, and in 30 steps the two directions' opposite pulls cancel out.
    config = LossConfig(use_seg_mask=False, both_directions=False)
    true_flow = torch.tensor([-2.0, -1.0]).view(1, 2, 1, 1)

    def heldout_scores() -> tuple[float, float]:
        """Census error of image1 vs warped image2 on pixels that stay in view (no learned mask that
        could lower it for free), and end-point error against the known motion.
        """
        image1, image2 = heldout["image1"], heldout["image2"]
        # Few steps: BatchNorm running statistics have not settled, so both measurements use
        # batch statistics (train mode, no gradient).
        model.train()
        with torch.no_grad():
            flow = model(normalise_images(image1), normalise_images(image2)).forward.flow
        in_view = inside_mask(flow).float()
        photometric = (census_error(image1, backward_warp(image2, flow)) * in_view).sum() / in_view.sum()
        return photometric.item(), (flow - true_flow).norm(dim=1).mean().item()

    photometric_before, epe_before = heldout_scores()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = 0
    while step < 30:
        for batch in loader:
            image1, image2 = batch["image1"], batch["image2"]
            output = model(normalise_images(image1), normalise_images(image2))
            losses = compute_losses(output, image1, image2, batch["label1"], batch["label2"], weights, config)
            assert "seg" not in losses  # weight 0: labels (all 255 here) never enter
            optimizer.zero_grad()
            losses["total"].backward()
            optimizer.step()
            step += 1
            if step == 30:
                break
    photometric_after, epe_after = heldout_scores()
    print(f"held-out census {photometric_before:.3f} -> {photometric_after:.3f}, EPE {epe_before:.2f} -> "
          f"{epe_after:.2f} px")
    assert photometric_after < 0.85 * photometric_before, (photometric_before, photometric_after)
    assert epe_after < 0.7 * epe_before, (epe_before, epe_after)
