"""Optional variational refinement of the network's flow (OpenCV ``VariationalRefinement``).

The network predicts flow at a quarter of its input resolution and the tiny presets see small
motions coarsely (RubberWhale EPE 0.82 px for the shipped real-camera model). A few fixed-point
iterations of the variational energy DIS uses for its last step (brightness and gradient
constancy plus smoothness, Brox et al. 2004) start from the network's flow and pull it onto the
image detail. The network still finds the motion, which a few iterations of a local method cannot
do for large displacements; the refinement only sharpens it. Occlusion stays the learned head's.

It runs on the CPU, after the backend, on grey frames scaled down to at most ``max_pixels``
(the defaults were chosen on held-out photo-textured synthetic pairs with exact flow,
``benchmarks/bench_flow_refinement.py``; what they give on real data is in training/README.md,
"Flow refinement").
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from efc_core.flow_ops import resize_flow

#: ``Perceptor`` / ``PerceptorConfig`` ``flow_refinement`` values.
FLOW_REFINEMENTS: tuple[str, ...] = ("off", "variational")
#: Default working size, 147x110 for a 4:3 frame: twice the pixels of the network's own stride-4
#: flow at 384x320. Smaller working sizes converge in fewer iterations (each sweep reaches
#: further in frame pixels), so 16 384 pixels beat 32 768 and 65 536 at equal iterations.
DEFAULT_REFINEMENT_PIXELS = 16384
#: Default fixed-point iterations.
DEFAULT_REFINEMENT_ITERATIONS = 10
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


class VariationalFlowRefiner:
    """Refines flow between two frames with ``cv2.VariationalRefinement`` at a reduced working size.

    Per frame, :meth:`prepare` makes the grey working image (the next pair reuses it); per pair,
    :meth:`refine` moves a flow field onto the images. Not thread-safe: one per stream.

    Args:
        iterations: fixed-point iterations (each with ``SOR_ITERATIONS`` sweeps), >= 1.
        max_pixels: working images have at most this many pixels (aspect kept; never upscaled).
    """

    def __init__(self, iterations: int = DEFAULT_REFINEMENT_ITERATIONS,
                 max_pixels: int = DEFAULT_REFINEMENT_PIXELS) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"refinement iterations must be an int >= 1, got {iterations!r}")
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 64:
            raise ValueError(f"refinement max_pixels must be an int >= 64, got {max_pixels!r}")
        self.iterations = iterations
        self.max_pixels = max_pixels
        self._refinement = cv2.VariationalRefinement_create()
        self._refinement.setFixedPointIterations(iterations)
        self._refinement.setSorIterations(SOR_ITERATIONS)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (h, w) uint8 grey at :func:`working_size`."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        height, width = working_size(grey.shape, self.max_pixels)
        if (height, width) == grey.shape:
            return grey
        return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)

    def refine(self, grey_from: np.ndarray, grey_to: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """The flow ``grey_from -> grey_to`` refined, on the grid and in the units of ``flow``.

        Args:
            grey_from, grey_to: (h, w) uint8 working images from :meth:`prepare` of the frame the
                flow starts on and of the frame it points into.
            flow: (Hf, Wf, 2) float32 (dx, dy) in pixels of its own grid, which covers the same
                frame as the working images (any size).

        Returns:
            (Hf, Wf, 2) float32, a new array.
        """
        if grey_from.shape != grey_to.shape or grey_from.ndim != 2:
            raise ValueError(f"working images must be two equal (h, w) arrays, got {grey_from.shape} and "
                             f"{grey_to.shape}")
        if flow.ndim != 3 or flow.shape[2] != 2:
            raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
        working = resize_flow(flow, grey_from.shape)
        self._refinement.calc(grey_from, grey_to, working)   # in place
        return resize_flow(working, flow.shape[:2])
