"""Scene description of the synthetic video: classes, palette, configuration, layers.

The types that both the renderer (``efc_core.data.synthetic``) and the scene sampler
(``efc_core.data.synthetic_scene``) build on live here, so that neither imports the other's
internals (the two modules used to import each other).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SYNTHETIC_CLASS_NAMES: tuple[str, ...] = (
    "background", "vehicle", "person", "sign", "pole", "vegetation", "building", "rider",
)
#: Cityscapes colours of the namesake classes (background drawn as Cityscapes "road").
SYNTHETIC_PALETTE: np.ndarray = np.array(
    [
        [128, 64, 128], [0, 0, 142], [220, 20, 60], [220, 220, 0],
        [153, 153, 153], [107, 142, 35], [70, 70, 70], [255, 0, 0],
    ],
    dtype=np.uint8,
)


TEXTURE_SOURCES = ("procedural", "photo")


@dataclass(frozen=True)
class SyntheticConfig:
    """Scene and motion parameters; motions are per frame, in pixels of the output image."""

    height: int = 256
    width: int = 512
    num_frames: int = 8
    num_classes: int = 6                 # class 0 = background, objects use 1..num_classes-1
    min_objects: int = 2
    max_objects: int = 8
    max_translation: float = 6.0         # px/frame, objects
    max_rotation_deg: float = 3.0        # deg/frame, objects
    max_scale_change: float = 0.03       # relative scale change per frame, objects
    background_motion: float = 3.0       # px/frame, background translation (ego-motion)
    background_scale_change: float = 0.005  # relative zoom per frame of the background
    background_rotation_deg: float = 0.0    # deg/frame, background rotation (camera roll)
    brightness_change: float = 0.0       # per-frame global gain drawn from [1 - b, 1 + b]
    contrast_change: float = 0.0         # per-frame contrast factor about the mean, [1 - c, 1 + c]
    blur_sigma_max: float = 0.0          # per-frame Gaussian blur sigma drawn from [0, max], px
    noise_std: float = 0.0               # Gaussian pixel noise, grey levels
    label_every: int = 1                 # frames t with t % label_every == 0 are "labelled"
    #: "procedural": smooth band-limited noise textures (bilinear re-sampling stays exact);
    #: "photo": crops of real photographs (``texture_dirs`` plus the photographs bundled with
    #: scikit-image when it is installed), for flow that transfers to real cameras.
    texture_source: str = "procedural"
    texture_dirs: tuple[str, ...] = ()
    #: With photo textures: how many times more often each of scikit-image's bundled photographs
    #: is drawn than a photograph from ``texture_dirs`` (they are a dozen against hundreds; a
    #: model meant to run on scenes textured with them, as the demo's, needs to see them often).
    bundled_photo_weight: int = 1
    #: With photo textures: share of an object's class colour mixed into its photo crop, so the
    #: class stays recognisable from the image (0 = plain photo, 1 = plain class colour).
    object_tint: float = 0.5

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.height}x{self.width}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if not 2 <= self.num_classes <= len(SYNTHETIC_CLASS_NAMES):
            raise ValueError(
                f"num_classes must be in [2, {len(SYNTHETIC_CLASS_NAMES)}], got {self.num_classes}"
            )
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.max_objects > 254:
            raise ValueError(f"max_objects must be <= 254 (uint8 layer maps), got {self.max_objects}")
        if self.label_every < 1:
            raise ValueError(f"label_every must be >= 1, got {self.label_every}")
        for name in ("max_translation", "max_rotation_deg", "max_scale_change", "background_motion",
                     "background_scale_change", "background_rotation_deg", "brightness_change",
                     "contrast_change", "blur_sigma_max", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.texture_source not in TEXTURE_SOURCES:
            raise ValueError(f"texture_source must be one of {TEXTURE_SOURCES}, got {self.texture_source!r}")
        if self.bundled_photo_weight < 1:
            raise ValueError(f"bundled_photo_weight must be >= 1, got {self.bundled_photo_weight}")
        if not 0.0 <= self.object_tint <= 1.0:
            raise ValueError(f"object_tint must be in [0, 1], got {self.object_tint}")
        if not 0.0 <= self.contrast_change < 1.0 or not 0.0 <= self.brightness_change < 1.0:
            raise ValueError(f"brightness_change and contrast_change must be in [0, 1), got "
                             f"{self.brightness_change}, {self.contrast_change}")


@dataclass(frozen=True)
class SyntheticLayer:
    """One depth layer of a scene.

    Attributes:
        texture: (h, w, 3) float32 RGB in [0, 255], in texture coordinates.
        mask: (h, w) uint8, 255 inside the shape; ``None`` = covers the whole plane (background,
            rendered with a reflect border).
        class_id: semantic class of every pixel of this layer.
        affines: (T, 2, 3) float64, per frame, texture coordinates (x, y) -> image pixels (x, y).
    """

    texture: np.ndarray
    mask: np.ndarray | None
    class_id: int
    affines: np.ndarray


@functools.lru_cache(maxsize=8)
def pixel_axes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 pixel coordinates that broadcast to (H, W): x (1, W) and y (H, 1).

    Cached per size and shared by the renderer and the texture sampler; never write to them.
    """
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys
