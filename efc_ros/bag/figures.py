"""Report figures (matplotlib, headless): a montage of sample frames and metrics over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from efc_core.viz import colorize_labels, flow_to_color, occlusion_to_color


def _palette(num_colors: int = 255) -> np.ndarray:
    """Synthetic-class colours first, then deterministic distinct colours: (255, 3) uint8 (255 = ignore)."""
    from efc_core.data.synthetic import SYNTHETIC_PALETTE

    rng = np.random.default_rng(12345)
    palette = rng.integers(40, 255, size=(num_colors, 3), dtype=np.uint8)
    palette[: len(SYNTHETIC_PALETTE)] = SYNTHETIC_PALETTE
    return palette


def montage_figure(samples: list[dict[str, np.ndarray]], path: Path) -> Path:
    """Rows of sample frames: image, segmentation, flow, occlusion and ground truth when present.

    The segmentation is drawn from the bag's ``segmentation/color`` (the model's own palette, as
    rviz2 shows it) when the bag has it; otherwise class ids are coloured with a fixed palette.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = _palette()
    columns = [("image", "camera", lambda a: a),
               ("segmentation", "segmentation", lambda a: colorize_labels(a, palette)),
               ("flow", "flow", flow_to_color), ("occlusion", "occlusion", occlusion_to_color),
               ("gt_segmentation", "GT segmentation", lambda a: colorize_labels(a, palette)),
               ("gt_flow", "GT flow", flow_to_color),
               # mono8 0/255 as published: the same colour map as the predicted probability.
               ("gt_occlusion", "GT occlusion", lambda a: occlusion_to_color(a.astype(np.float32) / 255.0))]
    columns = [c for c in columns if any(c[0] in s for s in samples)]
    figure, axes = plt.subplots(len(samples), len(columns), figsize=(3 * len(columns), 2.4 * len(samples)),
                                squeeze=False)
    for row, sample in enumerate(samples):
        # Flow colours share one scale per row so prediction and ground truth compare.
        scale = max(float(np.linalg.norm(sample[k], axis=2).max()) for k in ("flow", "gt_flow") if k in sample)
        for column, (key, title, render) in enumerate(columns):
            axis = axes[row][column]
            axis.axis("off")
            if key == "segmentation" and "segmentation_color" in sample:
                axis.imshow(sample["segmentation_color"])
            elif key in sample:
                image = flow_to_color(sample[key], max_magnitude=scale) if "flow" in key else render(sample[key])
                axis.imshow(image)
            if row == 0:
                axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def metrics_over_time_figure(series: dict[str, list[float]], path: Path) -> Path:
    """EPE, photometric residual and latency against stream time (NaN where unavailable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, label) for k, label in (("epe", "EPE (px)"), ("photometric_residual", "photometric residual"),
                                          ("latency_ms", "latency (ms)"))
              if np.isfinite(np.asarray(series[k], dtype=float)).any()]
    figure, axes = plt.subplots(max(len(panels), 1), 1, figsize=(8, 2.2 * max(len(panels), 1)), squeeze=False)
    for axis, (key, label) in zip(axes[:, 0], panels):
        axis.plot(series["time_s"], series[key], marker=".", linewidth=1)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("stream time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
