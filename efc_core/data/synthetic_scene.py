"""Random scenes for the synthetic video (``efc_core.data.synthetic``): textures, shapes, motions.

Each object class has its own shape kind and colour family, so semantics can be learned from the
images; textures are smooth and band-limited so that bilinear re-sampling of a rendered frame stays
close to the exact texture value (which keeps the warping tests of the ground truth tight).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from efc_core.data.synthetic import SYNTHETIC_PALETTE, SyntheticConfig, SyntheticLayer, _pixel_axes


def smooth_texture(rng: np.random.Generator, height: int, width: int, base_rgb: np.ndarray,
                   contrast: float = 40.0) -> np.ndarray:
    """(h, w, 3) float32 band-limited texture in [0, 255]: base colour + colour ramp + noise octaves.

    Noise is drawn on coarse grids and upsampled bicubically, then blurred (sigma 1.5 px): smooth
    enough that bilinear re-sampling of a rendered frame stays close to the exact texture value.
    """
    xs, ys = _pixel_axes(height, width)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (math.cos(angle) * xs + math.sin(angle) * ys) / max(height, width) - 0.5
    texture = base_rgb.astype(np.float32) + ramp[..., None] * rng.uniform(-80, 80, 3).astype(np.float32)
    for factor, weight in ((24, 0.7), (8, 0.5), (3, 0.4)):
        coarse = rng.standard_normal((max(height // factor, 2), max(width // factor, 2), 3), dtype=np.float32)
        texture += (weight * contrast) * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    return np.clip(texture, 0, 255, out=texture)


def shape_mask(rng: np.random.Generator, diameter: float, kind: int | None = None) -> np.ndarray:
    """(S, S) uint8 mask (255 inside) of an ellipse (kind 0), star polygon (1) or chair-like shape (2).

    ``kind=None`` draws the kind at random.
    """
    size = int(math.ceil(diameter)) + 6   # zero border so bilinear warps fade to "outside"
    centre = (size - 1) / 2.0
    radius = diameter / 2.0
    mask = np.zeros((size, size), dtype=np.uint8)
    kind = int(rng.integers(3)) if kind is None else kind
    if kind == 0:
        axes = (max(int(radius * rng.uniform(0.5, 1.0)), 2), max(int(radius * rng.uniform(0.5, 1.0)), 2))
        cv2.ellipse(mask, (round(centre), round(centre)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        return mask
    if kind == 1:
        count = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, count))
        radii = radius * rng.uniform(0.45, 1.0, count)
        polygons = [np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], axis=1)]
    else:
        # Chair seen from the side, FlyingChairs-like: backrest, seat and two legs (unit square -1..1).
        seat, leg = rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.18)
        boxes = [(-0.8, -1.0, -0.8 + leg + 0.05, 0.1), (-0.8, -0.05, 0.8, -0.05 + seat),
                 (-0.8, 0.0, -0.8 + leg, 1.0), (0.8 - leg, 0.0, 0.8, 1.0)]
        polygons = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * radius + centre
                    for x0, y0, x1, y1 in boxes]
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], 255)
    return mask


def _random_in_disk(rng: np.random.Generator, radius: float, count: int | None = None) -> np.ndarray:
    """Uniform 2-vectors in a disk of ``radius``: shape (2,) or (count, 2)."""
    shape = (count,) if count is not None else ()
    angle = rng.uniform(0.0, 2.0 * math.pi, shape)
    length = radius * np.sqrt(rng.uniform(0.0, 1.0, shape))
    return np.stack([length * np.cos(angle), length * np.sin(angle)], axis=-1)


def random_trajectory(rng: np.random.Generator, num_frames: int, texture_centre: tuple[float, float],
                      start_centre: tuple[float, float], start_angle_deg: float, max_translation: float,
                      max_rotation_deg: float, max_scale_change: float) -> np.ndarray:
    """(T, 2, 3) float64 affines texture -> image: a mean motion plus per-frame jitter.

    Each step translates by at most ``max_translation`` px, rotates by at most
    ``max_rotation_deg`` and scales by at most ``1 +- max_scale_change`` (about the layer centre).
    """
    steps = num_frames - 1
    jitter = 0.3  # fraction of the maximum by which each frame's step departs from the mean motion
    translation = _random_in_disk(rng, max_translation) + _random_in_disk(rng, jitter * max_translation, steps)
    lengths = np.linalg.norm(translation, axis=1, keepdims=True)
    translation *= np.minimum(1.0, max_translation / np.maximum(lengths, 1e-12))
    spin = np.clip(rng.uniform(-1, 1) + jitter * rng.uniform(-1, 1, steps), -1, 1) * max_rotation_deg
    growth = np.clip(rng.uniform(-1, 1) + jitter * rng.uniform(-1, 1, steps), -1, 1) * max_scale_change
    centres = np.asarray(start_centre, float) + np.concatenate([np.zeros((1, 2)), np.cumsum(translation, 0)])
    angles = np.radians(start_angle_deg + np.concatenate([[0.0], np.cumsum(spin)]))
    scales = np.concatenate([[1.0], np.cumprod(1.0 + growth)])
    linear = scales[:, None, None] * np.stack(
        [np.stack([np.cos(angles), -np.sin(angles)], -1), np.stack([np.sin(angles), np.cos(angles)], -1)], 1)
    offset = centres - linear @ np.asarray(texture_centre, float)
    return np.concatenate([linear, offset[:, :, None]], axis=2)


def class_shape_kind(class_id: int) -> int:
    """The ``shape_mask`` kind of an object class: classes differ in shape as well as in colour."""
    return (class_id - 1) % 3


def class_base_colour(rng: np.random.Generator, class_id: int, jitter: float = 30.0) -> np.ndarray:
    """(3,) float base RGB of a layer of ``class_id``: its palette colour plus a random offset.

    Semantics must be visible in the images, as in real data, or no network can learn them:
    each class keeps its own colour family (and shape, ``class_shape_kind``), while the jitter,
    the colour ramp and the noise of ``smooth_texture`` keep instances different.
    """
    base = SYNTHETIC_PALETTE[class_id].astype(np.float64)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 20, 235)


def sample_layers(config: SyntheticConfig, rng: np.random.Generator) -> list[SyntheticLayer]:
    """Draw a random scene: background + 2..8 objects (config) with textures, shapes and motions."""
    height, width, frames = config.height, config.width, config.num_frames
    # A background texture larger than the image keeps reflect-border seams mostly off-screen.
    bg_h, bg_w = int(height * 1.25) + 16, int(width * 1.25) + 16
    background = SyntheticLayer(
        texture=smooth_texture(rng, bg_h, bg_w, class_base_colour(rng, 0)),
        mask=None,
        class_id=0,
        affines=random_trajectory(rng, frames, ((bg_w - 1) / 2, (bg_h - 1) / 2), ((width - 1) / 2, (height - 1) / 2),
                                  0.0, config.background_motion, 0.0, config.background_scale_change),
    )
    layers = [background]
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        class_id = int(rng.integers(1, config.num_classes))
        mask = shape_mask(rng, rng.uniform(0.15, 0.45) * min(height, width), kind=class_shape_kind(class_id))
        side = mask.shape[0]
        layers.append(SyntheticLayer(
            texture=smooth_texture(rng, side, side, class_base_colour(rng, class_id), contrast=rng.uniform(25, 50)),
            mask=mask,
            class_id=class_id,
            affines=random_trajectory(rng, frames, ((side - 1) / 2, (side - 1) / 2),
                                      (rng.uniform(0, width), rng.uniform(0, height)), rng.uniform(0, 360),
                                      config.max_translation, config.max_rotation_deg, config.max_scale_change),
        ))
    return layers
