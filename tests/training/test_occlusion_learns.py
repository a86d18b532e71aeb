"""The occlusion head learns the analytic occlusion of a translated square (a training test).

A textured square moves by an integer displacement over a static textured background. Frame 1's
pixels with no correspondence in frame 2 are exactly the background pixels the square covers in
frame 2 and not in frame 1 (a strip as wide as the motion); frame 2's are the strip the square
uncovers. The tiny network is trained on such pairs with the ground-truth occlusion stage of the
training recipes (flow + occlusion supervised), then scored on held-out squares at the runtime
threshold 0.5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efc_core.data.synthetic_scene import smooth_texture
from efc_core.losses.composer import LossConfig, LossWeights, compute_losses
from efc_core.model.efc_net import build_model
from training.loop import normalise_images

SIZE = 64
SQUARE = 24
STEPS = 600  # F1 0.46-0.64 at 300 steps across machines (no margin); 0.65-0.71 at 600 over two seeds
F1_MIN = 0.5


def square_pair(rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """One pair: images (3, H, W) in [0, 1], flows (2, H, W) px, occlusions (H, W) bool."""
    background = smooth_texture(rng, SIZE, SIZE, rng.uniform(60, 200, 3), contrast=50.0)
    square = smooth_texture(rng, SQUARE, SQUARE, rng.uniform(60, 200, 3), contrast=50.0)
    dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
    x0 = int(rng.integers(8, SIZE - SQUARE - 8))
    y0 = int(rng.integers(8, SIZE - SQUARE - 8))
    images, masks = [], []
    for ox, oy in ((x0, y0), (x0 + dx, y0 + dy)):
        image = background.copy()
        image[oy:oy + SQUARE, ox:ox + SQUARE] = square
        mask = np.zeros((SIZE, SIZE), bool)
        mask[oy:oy + SQUARE, ox:ox + SQUARE] = True
        images.append(torch.from_numpy(image / 255.0).permute(2, 0, 1).float())
        masks.append(mask)
    flow_fw = np.zeros((2, SIZE, SIZE), np.float32)
    flow_fw[0][masks[0]], flow_fw[1][masks[0]] = dx, dy
    flow_bw = np.zeros((2, SIZE, SIZE), np.float32)
    flow_bw[0][masks[1]], flow_bw[1][masks[1]] = -dx, -dy
    return {
        "image1": images[0], "image2": images[1],
        "flow_fw": torch.from_numpy(flow_fw), "flow_bw": torch.from_numpy(flow_bw),
        "occ_fw": torch.from_numpy(masks[1] & ~masks[0]), "occ_bw": torch.from_numpy(masks[0] & ~masks[1]),
    }


def batch_of(rng: np.random.Generator, count: int) -> dict[str, torch.Tensor]:
    pairs = [square_pair(rng) for _ in range(count)]
    return {key: torch.stack([pair[key] for pair in pairs]) for key in pairs[0]}


def f1(predicted: torch.Tensor, target: torch.Tensor) -> float:
    true_positive = (predicted & target).sum().item()
    return 2 * true_positive / max(predicted.sum().item() + target.sum().item(), 1)


@pytest.mark.slow
def test_trained_head_finds_the_strip_a_moving_square_covers_and_uncovers() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = build_model("tiny", 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    weights = LossWeights(seg=0.0, photometric=0.0, smoothness=0.0, temporal=0.0, occlusion=2.0, supervised_flow=0.2)
    config = LossConfig(supervised_flow=True, supervised_occlusion=True)
    held_out = batch_of(np.random.default_rng(1), 8)

    def held_out_f1() -> float:
        model.eval()
        with torch.no_grad():
            output = model(normalise_images(held_out["image1"]), normalise_images(held_out["image2"]))
        model.train()
        return f1(output.forward.occlusion[:, 0] > 0.5, held_out["occ_fw"])

    before = held_out_f1()
    ignore = torch.full((4, SIZE, SIZE), 255, dtype=torch.long)
    for _ in range(STEPS):
        batch = batch_of(rng, 4)
        output = model(normalise_images(batch["image1"]), normalise_images(batch["image2"]))
        losses = compute_losses(output, batch["image1"], batch["image2"], ignore, ignore, weights, config,
                                flow_gt_fw=batch["flow_fw"], flow_gt_bw=batch["flow_bw"],
                                occ_gt_fw=batch["occ_fw"], occ_gt_bw=batch["occ_bw"])
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    after = held_out_f1()
    print({"f1_before": before, "f1_after": after})
    assert after > F1_MIN
    assert after > before + 0.2
