"""Random scenes for the synthetic video (``efc_core.data.synthetic``): textures, shapes, motions.

Each object class has its own shape kind and colour family, so semantics can be learned from the
images; textures are smooth and band-limited so that bilinear re-sampling of a rendered frame stays
close to the exact texture value (which keeps the warping tests of the ground truth tight).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from efc_core.data.synthetic_config import SYNTHETIC_PALETTE, SyntheticConfig, SyntheticLayer, pixel_axes

#: Files in scikit-image's data folder that are drawings, masks or test charts, not photographs.
_NOT_PHOTOS = ("logo", "horse", "phantom", "chessboard", "checkerboard", "colorwheel", "microaneurysms",
               "text", "page", "clock_motion", "binary", "cell", "coins", "moon", "camera")
_PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
_LABEL_FOLDERS = ("masks", "annotations", "labels", "trainannot", "valannot", "testannot", "gtFine")
#: Photographs are kept at most this long a side in memory (textures are crops of them).
_PHOTO_MAX_SIDE = 640
#: At most this many photographs are read from one folder (evenly spaced in sorted order).
_PHOTOS_PER_FOLDER = 300


def smooth_texture(rng: np.random.Generator, height: int, width: int, base_rgb: np.ndarray,
                   contrast: float = 40.0) -> np.ndarray:
    """(h, w, 3) float32 band-limited texture in [0, 255]: base colour + colour ramp + noise octaves.

    Noise is drawn on coarse grids and upsampled bicubically, then blurred (sigma 1.5 px): smooth
    enough that bilinear re-sampling of a rendered frame stays close to the exact texture value.
    """
    xs, ys = pixel_axes(height, width)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (math.cos(angle) * xs + math.sin(angle) * ys) / max(height, width) - 0.5
    texture = base_rgb.astype(np.float32) + ramp[..., None] * rng.uniform(-80, 80, 3).astype(np.float32)
    for factor, weight in ((24, 0.7), (8, 0.5), (3, 0.4)):
        coarse = rng.standard_normal((max(height // factor, 2), max(width // factor, 2), 3), dtype=np.float32)
        texture += (weight * contrast) * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    return np.clip(texture, 0, 255, out=texture)


def scikit_image_photo_dir() -> Path | None:
    """The data folder of an installed scikit-image wheel (it bundles a dozen photographs), or None."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "data"
    return folder if folder.is_dir() else None


@functools.lru_cache(maxsize=4)
def photo_bank(folders: tuple[str, ...] = (), bundled_weight: int = 1) -> tuple[np.ndarray, ...]:
    """Real photographs for textures: (h, w, 3) uint8 RGB arrays, long side <= 640 px.

    Args:
        folders: folders searched recursively for .png / .jpg files (at most 300 evenly spaced
            files each); scikit-image's bundled photographs are always added when it is installed.
        bundled_weight: each bundled photograph appears this many times (the same array), so a
            uniform draw from the bank picks it that much more often.

    Returns:
        the photographs in a deterministic order. Raises ``ValueError`` when none is found, naming
        the folders searched.
    """
    sources: list[Path] = []
    bundled = scikit_image_photo_dir()
    if bundled is not None:
        sources += [p for p in sorted(bundled.iterdir())
                    if p.suffix.lower() in _PHOTO_SUFFIXES and not p.stem.startswith(_NOT_PHOTOS)]
    bundled_sources = set(sources)
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise ValueError(f"texture folder {str(root)!r} does not exist")
        # Label and mask folders beside the frames (DAVIS masks/, CamVid *annot/) are not photos.
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _PHOTO_SUFFIXES
                       and not any(part in _LABEL_FOLDERS for part in p.relative_to(root).parts[:-1]))
        if len(files) > _PHOTOS_PER_FOLDER:
            files = [files[i] for i in np.linspace(0, len(files) - 1, _PHOTOS_PER_FOLDER).astype(int)]
        sources += files
    photos = []
    for path in sources:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or min(image.shape[:2]) < 64:
            continue
        # Binary masks and line drawings make textures with no photographic statistics.
        if len(np.unique(cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA) // 8)) < 12:
            continue
        scale = _PHOTO_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photo = np.ascontiguousarray(image[..., ::-1])
        photos += [photo] * (bundled_weight if path in bundled_sources else 1)
    if not photos:
        raise ValueError(f"no photographs found for photo textures (scikit-image installed: {bundled is not None}, "
                         f"folders: {list(folders)}); install scikit-image or set texture_dirs")
    return tuple(photos)


def photo_texture(rng: np.random.Generator, height: int, width: int, photos: tuple[np.ndarray, ...]) -> np.ndarray:
    """(h, w, 3) float32 texture in [0, 255]: a random crop of a random photograph.

    The crop is scaled by a random factor (0.6-1.6 of the photo's own resolution) and mirrored at
    random, so one photograph gives many different textures and object scales.
    """
    photo = photos[int(rng.integers(len(photos)))]
    scale = rng.uniform(0.6, 1.6)
    crop_h, crop_w = max(int(round(height / scale)), 2), max(int(round(width / scale)), 2)
    if crop_h > photo.shape[0] or crop_w > photo.shape[1]:
        grow = max(crop_h / photo.shape[0], crop_w / photo.shape[1]) * 1.01
        photo = cv2.resize(photo, None, fx=grow, fy=grow, interpolation=cv2.INTER_LINEAR)
    y0 = int(rng.integers(photo.shape[0] - crop_h + 1))
    x0 = int(rng.integers(photo.shape[1] - crop_w + 1))
    crop = photo[y0:y0 + crop_h, x0:x0 + crop_w]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=interpolation).astype(np.float32)


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
    photos = (photo_bank(tuple(config.texture_dirs), config.bundled_photo_weight)
              if config.texture_source == "photo" else None)
    # A background texture larger than the image keeps reflect-border seams mostly off-screen;
    # photo scenes (made for large camera motion, where a mirrored seam would be a fake edge)
    # get a margin that covers the whole camera path.
    margin = 1.25
    if photos is not None:
        margin += 2.0 * config.background_motion * max(frames - 1, 1) / max(min(height, width), 1)
    bg_h, bg_w = int(height * margin) + 16, int(width * margin) + 16

    def texture(side_h: int, side_w: int, class_id: int, contrast: float = 40.0) -> np.ndarray:
        procedural = smooth_texture(rng, side_h, side_w, class_base_colour(rng, class_id), contrast=contrast)
        if photos is None:
            return procedural
        tint = 0.0 if class_id == 0 else config.object_tint
        return (1.0 - tint) * photo_texture(rng, side_h, side_w, photos) + tint * procedural

    background = SyntheticLayer(
        texture=texture(bg_h, bg_w, 0),
        mask=None,
        class_id=0,
        affines=random_trajectory(rng, frames, ((bg_w - 1) / 2, (bg_h - 1) / 2), ((width - 1) / 2, (height - 1) / 2),
                                  0.0, config.background_motion, config.background_rotation_deg,
                                  config.background_scale_change),
    )
    layers = [background]
    for _ in range(int(rng.integers(config.min_objects, config.max_objects + 1))):
        class_id = int(rng.integers(1, config.num_classes))
        mask = shape_mask(rng, rng.uniform(0.15, 0.45) * min(height, width), kind=class_shape_kind(class_id))
        side = mask.shape[0]
        layers.append(SyntheticLayer(
            texture=texture(side, side, class_id, contrast=rng.uniform(25, 50)),
            mask=mask,
            class_id=class_id,
            affines=random_trajectory(rng, frames, ((side - 1) / 2, (side - 1) / 2),
                                      (rng.uniform(0, width), rng.uniform(0, height)), rng.uniform(0, 360),
                                      config.max_translation, config.max_rotation_deg, config.max_scale_change),
        ))
    return layers
