"""Optional variational refinement of the network's flow (OpenCV ``VariationalRefinement``).

The network predicts flow at a quarter of its input resolution and the tiny presets see small
motions coarsely (RubberWhale EPE 1.03 px for the shipped real-camera model alone). A few fixed-point
iterations of the variational energy DIS uses for its last step (brightness and gradient
constancy plus smoothness, Brox et al. 2004) start from the network's flow and pull it onto the
image detail. The network still finds the motion, which a few iterations of a local method cannot
do for large displacements; the refinement only sharpens it. Occlusion stays the learned head's.

It runs on the CPU, after the backend, on grey frames scaled down to at most ``max_pixels``; with
``levels`` > 1, coarse to fine on a small pyramid of them (each coarser level a quarter of the
pixels of the next), as DIS does: a coarse level corrects uniform errors faster, the finest level
keeps the detail. Iterations and working size were chosen on held-out photo-textured synthetic
pairs with exact flow (``benchmarks/bench_flow_refinement.py``), the levels on real pairs too
(``DEFAULT_REFINEMENT_LEVELS``); what they give on real data is in training/README.md, "Flow
refinement".
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from efc_core.flow_ops import resize_flow

#: ``Perceptor`` / ``PerceptorConfig`` ``flow_refinement`` values.
FLOW_REFINEMENTS: tuple[str, ...] = ("off", "variational")
#: Default working size of the finest level, 147x110 for a 4:3 frame: twice the pixels of the
#: network's own stride-4 flow at 384x320. With one level, smaller working sizes converge in
#: fewer iterations (each sweep reaches further in frame pixels), so 16 384 pixels beat 32 768
#: and 65 536 at equal iterations.
DEFAULT_REFINEMENT_PIXELS = 16384
#: Default fixed-point iterations per level.
DEFAULT_REFINEMENT_ITERATIONS = 10
#: Default pyramid levels. Two levels of 5 iterations (4 096 then 16 384 pixels) beat one level
#: of 10 on the benchmark's synthetic pairs (EPE 1.16 against 1.20 px, 4.2 against 5.5 ms CPU),
#: but not on real pairs with the shipped model: RubberWhale 0.60 against 0.54 px, DAVIS residual
#: 5.85 against 5.76 (KITTI 10.38 against 10.59). One level stays the default.
DEFAULT_REFINEMENT_LEVELS = 1
#: Pixels of a level relative to the next finer one.
LEVEL_PIXEL_RATIO = 4
#: Successive over-relaxation sweeps per fixed-point iteration.
SOR_ITERATIONS = 10


def working_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """(h, w) of a frame of ``size`` (H, W) scaled down, aspect kept, to at most ``max_pixels`` pixels."""
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
    scale = min(1.0, math.sqrt(max_pixels / (height * width)))
    return max(1, int(height * scale)), max(1, int(width * scale))


#: A frame's grey working images, coarsest level first, each (h, w) uint8.
WorkingImages = tuple[np.ndarray, ...]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"refinement {name} must be an int >= {minimum}, got {value!r}")
    return value


class VariationalFlowRefiner:
    """Refines flow between two frames with ``cv2.VariationalRefinement`` (coarse to fine with ``levels`` > 1).

    Per frame, :meth:`prepare` makes the grey working images (the next pair reuses them); per
    pair, :meth:`refine` moves a flow field onto the images. Not thread-safe: one per stream.

    Args:
        iterations: fixed-point iterations per level (each with ``SOR_ITERATIONS`` sweeps), >= 1.
        max_pixels: the finest working images have at most this many pixels (aspect kept; never
            upscaled); each coarser level has a ``LEVEL_PIXEL_RATIO``-th of the next one's.
        levels: pyramid levels, >= 1 (1: the finest level alone).
    """

    def __init__(self, iterations: int = DEFAULT_REFINEMENT_ITERATIONS,
                 max_pixels: int = DEFAULT_REFINEMENT_PIXELS, levels: int = DEFAULT_REFINEMENT_LEVELS) -> None:
        self.iterations = _check_int(iterations, "iterations", 1)
        self.max_pixels = _check_int(max_pixels, "max_pixels", 64)
        self.levels = _check_int(levels, "levels", 1)
        self._refinement = cv2.VariationalRefinement_create()
        self._refinement.setFixedPointIterations(iterations)
        self._refinement.setSorIterations(SOR_ITERATIONS)

    def prepare(self, image: np.ndarray) -> WorkingImages:
        """(H, W, 3) uint8 RGB -> grey working images, coarsest first, finest at :func:`working_size`.

        A level is dropped when it would be no smaller than the next finer one (small frames).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        finest = self._scaled(grey, self.max_pixels)
        pyramid = [finest]
        for level in range(1, self.levels):
            coarser = self._scaled(finest, max(1, self.max_pixels // LEVEL_PIXEL_RATIO ** level))
            if coarser.shape == pyramid[-1].shape:
                break
            pyramid.append(coarser)
        return tuple(reversed(pyramid))

    @staticmethod
    def _scaled(grey: np.ndarray, max_pixels: int) -> np.ndarray:
        height, width = working_size(grey.shape, max_pixels)
        if (height, width) == grey.shape:
            return grey
        return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)

    def refine(self, images_from: WorkingImages, images_to: WorkingImages, flow: np.ndarray) -> np.ndarray:
        """The flow ``images_from -> images_to`` refined, on the grid and in the units of ``flow``.

        Args:
            images_from, images_to: :meth:`prepare` of the frame the flow starts on and of the
                frame it points into.
            flow: (Hf, Wf, 2) float32 (dx, dy) in pixels of its own grid, which covers the same
                frame as the working images (any size).

        Returns:
            (Hf, Wf, 2) float32, a new array.
        """
        shapes_from = [grey.shape for grey in images_from]
        if shapes_from != [grey.shape for grey in images_to] or not shapes_from \
                or any(len(shape) != 2 for shape in shapes_from):
            raise ValueError(f"working images must be two equal pyramids of (h, w) arrays, got {shapes_from} and "
                             f"{[grey.shape for grey in images_to]}")
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
        working = flow
        for grey_from, grey_to in zip(images_from, images_to):
            working = resize_flow(working, grey_from.shape)
            self._refinement.calc(grey_from, grey_to, working)   # in place
        return resize_flow(working, flow.shape[:2])
