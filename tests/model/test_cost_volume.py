"""Cost volume against a brute-force correlation loop, and its behaviour on known shifts."""

from __future__ import annotations

import pytest
import torch

from efc_core.model.cost_volume import local_correlation, normalise_features, num_displacements

torch.set_num_threads(1)


def brute_force_correlation(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    """Direct definition: mean_c f1(y, x) * f2(y + dy, x + dx), zero outside f2."""
    batch, channels, height, width = f1.shape
    out = torch.zeros(batch, (2 * d + 1) ** 2, height, width, dtype=f1.dtype)
    for k, (dy, dx) in enumerate((dy, dx) for dy in range(-d, d + 1) for dx in range(-d, d + 1)):
        for y in range(height):
            for x in range(width):
                yy, xx = y + dy, x + dx
                if 0 <= yy < height and 0 <= xx < width:
                    out[:, k, y, x] = (f1[:, :, y, x] * f2[:, :, yy, xx]).mean(dim=1)
    return out


@pytest.mark.parametrize("normalise", [False, True])
def test_matches_brute_force_on_all_81_displacements(normalise: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 5, 7, 9, generator=generator, dtype=torch.float64)
    f2 = torch.randn(2, 5, 7, 9, generator=generator, dtype=torch.float64)
    cost = local_correlation(f1, f2, max_displacement=4, normalise=normalise)
    assert cost.shape == (2, 81, 7, 9) and num_displacements(4) == 81
    if normalise:
        f1, f2 = normalise_features(f1), normalise_features(f2)
    expected = brute_force_correlation(f1, f2, 4)
    torch.testing.assert_close(cost, expected, rtol=0, atol=1e-12)


def test_known_shift_peaks_at_its_displacement_with_correlation_one() -> None:
    # f2 is f1 moved by (dx, dy) = (2, -3): f2(y, x) = f1(y + 3, x - 2), so the match of f1(y, x)
    # sits at f2(y - 3, x + 2), displacement channel k = (dy + 4) * 9 + (dx + 4).
    generator = torch.Generator().manual_seed(1)
    f1 = torch.randn(1, 16, 20, 24, generator=generator)
    f2 = torch.roll(f1, shifts=(-3, 2), dims=(2, 3))
    cost = local_correlation(f1, f2, max_displacement=4, normalise=True)
    interior = cost[:, :, 4:-4, 4:-4]
    expected_channel = (-3 + 4) * 9 + (2 + 4)
    assert torch.all(interior.argmax(dim=1) == expected_channel)
    torch.testing.assert_close(interior[:, expected_channel], torch.ones_like(interior[:, 0]), atol=1e-4, rtol=0)


def test_normalise_features_is_zero_mean_unit_variance_over_channels() -> None:
    x = torch.randn(2, 8, 3, 4) * 7 + 3
    y = normalise_features(x)
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4), atol=1e-3, rtol=0)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\)"):
        local_correlation(torch.zeros(1, 4, 5, 5), torch.zeros(1, 4, 5, 6))
