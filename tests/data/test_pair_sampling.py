"""Pair index: gaps, directions, sequence boundaries, labelled-first pairs, the unlabelled mix."""

from __future__ import annotations

import pytest

from efc_core.data.datasets.pair_sampling import PairSamplingConfig, build_pairs, split_by_time_gaps


def cityscapes_like(snippets: int = 10, length: int = 30, labelled_index: int = 19) -> list[list[bool]]:
    return [[k == labelled_index for k in range(length)] for _ in range(snippets)]


def test_labelled_pairs_around_each_labelled_frame() -> None:
    pairs = build_pairs(cityscapes_like(snippets=3), PairSamplingConfig(unlabelled_per_labelled=0))
    assert len(pairs) == 3 * 10  # t = +-1..5 around frame 19 of each snippet
    for pair in pairs:
        assert pair.labelled_first and pair.first == 19
        assert 1 <= abs(pair.gap) <= 5
    assert sorted({p.gap for p in pairs}) == [-5, -4, -3, -2, -1, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_unlabelled_pairs_mixed_at_the_configured_ratio(ratio: float) -> None:
    pairs = build_pairs(cityscapes_like(), PairSamplingConfig(unlabelled_per_labelled=ratio, seed=3))
    labelled = [p for p in pairs if p.labelled_first]
    unlabelled = [p for p in pairs if not p.labelled_first]
    assert len(labelled) == 100
    assert len(unlabelled) == round(ratio * 100)
    assert len(set(unlabelled)) == len(unlabelled)  # drawn without replacement
    for pair in unlabelled:
        assert pair.first != 19 and pair.second != 19  # purely unlabelled


def test_never_crosses_a_sequence_and_respects_gaps() -> None:
    lengths = [3, 30, 7, 1]
    flags = [[i % 4 == 0 for i in range(n)] for n in lengths]
    pairs = build_pairs(flags, PairSamplingConfig(min_gap_frames=2, max_gap_frames=4, unlabelled_per_labelled=None))
    assert pairs
    for pair in pairs:
        length = lengths[pair.sequence]
        assert 0 <= pair.first < length and 0 <= pair.second < length
        assert 2 <= abs(pair.gap) <= 4
    assert not any(p.sequence == 3 for p in pairs)  # a one-frame sequence has no pair


def test_all_unlabelled_pairs_when_ratio_is_none() -> None:
    flags = [[False] * 8]
    pairs = build_pairs(flags, PairSamplingConfig(unlabelled_per_labelled=None))
    # every (i, j) with 1 <= |i - j| <= 5 inside 8 frames
    expected = sum(1 for i in range(8) for j in range(8) if 1 <= abs(i - j) <= 5)
    assert len(pairs) == expected


def test_forward_only_and_backward_only() -> None:
    flags = cityscapes_like(snippets=1)
    forward = build_pairs(flags, PairSamplingConfig(directions=(1,), unlabelled_per_labelled=0))
    backward = build_pairs(flags, PairSamplingConfig(min_gap_frames=1, max_gap_frames=1, directions=(-1,),
                                                     unlabelled_per_labelled=0))
    assert {p.gap for p in forward} == {1, 2, 3, 4, 5}
    assert [(p.first, p.second) for p in backward] == [(19, 18)]


def test_draw_is_deterministic_per_seed() -> None:
    a = build_pairs(cityscapes_like(), PairSamplingConfig(seed=1))
    b = build_pairs(cityscapes_like(), PairSamplingConfig(seed=1))
    c = build_pairs(cityscapes_like(), PairSamplingConfig(seed=2))
    assert a == b and a != c


@pytest.mark.parametrize("kwargs", [{"min_gap_frames": 0}, {"min_gap_frames": 3, "max_gap_frames": 2}, {"min_gap": 0},
                                    {"min_gap": 3, "max_gap": 2}, {"directions": (2,)},
                                    {"directions": ()}, {"unlabelled_per_labelled": -1.0}])
def test_invalid_configs_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PairSamplingConfig(**kwargs)


def test_the_recipes_yaml_spelling_sets_the_frame_gaps() -> None:
    # Training configs write ``pairs: {min_gap: 2, max_gap: 4}``; both count frames.
    config = PairSamplingConfig(**{"min_gap": 2, "max_gap": 4, "directions": (1,)})
    assert (config.min_gap_frames, config.max_gap_frames) == (2, 4)
    assert config.offsets() == [2, 3, 4]
    assert config == PairSamplingConfig(min_gap_frames=2, max_gap_frames=4, directions=(1,))


def test_split_by_time_gaps() -> None:
    stamps = [0, 100_000_000, 200_000_000, 1_500_000_000, 1_600_000_000, 5_000_000_000]
    assert split_by_time_gaps(stamps, 0.5) == [[0, 1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match="sorted"):
        split_by_time_gaps([2, 1], 0.5)
