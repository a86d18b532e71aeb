"""The typed training config, its strict YAML loader, and the schedule / stage helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig, from_dict, load_config, to_dict
from training.loop import ResumableSampler, lr_factor, stage_loss_settings

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, where",
    [
        ("learning_rate: 0.1\n", "'learning_rate'"),
        ("optimizer:\n  lr: 0.1\n  mometum: 0.9\n", "optimizer.mometum"),
        ("loss:\n  weights:\n    smoth: 2.0\n", "loss.weights.smoth"),
        ("loss:\n  config:\n    census_window: 5\n", "loss.config.census_window"),
        ("data:\n  synthetic:\n    hieght: 32\n", "data.synthetic.hieght"),
    ],
)
def test_unknown_key_anywhere_is_named_with_its_path(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_wrong_types_and_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"schedule\.total_steps"):
        load_config(write(tmp_path, "schedule:\n  total_steps: many\n"))
    with pytest.raises(ValueError, match=r"optimizer\.name"):
        load_config(write(tmp_path, "optimizer:\n  name: adam_typo\n"))
    with pytest.raises(ValueError, match=r"amp"):
        load_config(write(tmp_path, "amp: 3\n"))


def test_yaml_values_and_overrides_are_typed(tmp_path: Path) -> None:
    path = write(tmp_path,
                 "optimizer:\n  lr: 1.0e-3\n  betas: [0.8, 0.99]\nloss:\n  config:\n    level_weights: [1, 0.5]\n")
    config = load_config(path, ["optimizer.lr=5e-4", "schedule.decay=cosine", "data.synthetic.height=32"])
    assert config.optimizer.lr == pytest.approx(5e-4)
    assert config.optimizer.betas == (0.8, 0.99)
    assert config.loss.config.level_weights == (1.0, 0.5)
    assert config.schedule.decay == "cosine"
    assert config.data.synthetic.height == 32
    with pytest.raises(ValueError, match=r"schedule\.totl_steps"):
        load_config(path, ["schedule.totl_steps=3"])


def test_an_override_reaches_into_a_list_of_sources_by_index() -> None:
    from training.config import apply_overrides

    data = {"data": {"options": {"sources": [{"name": "camvid", "weight": 0.6}, {"name": "davis"}]}}}
    apply_overrides(data, ["data.options.sources.0.weight=0.5",
                           "data.options.sources.1.augment.jitter={brightness: 0.4}"])
    expected = [{"name": "camvid", "weight": 0.5}, {"name": "davis", "augment": {"jitter": {"brightness": 0.4}}}]
    assert data["data"]["options"]["sources"] == expected
    with pytest.raises(ValueError, match="'2' is not an index of a list of 2"):
        apply_overrides(data, ["data.options.sources.2.weight=1"])
    with pytest.raises(ValueError, match="'first' is not an index"):
        apply_overrides(data, ["data.options.sources.first.weight=1"])
    with pytest.raises(ValueError, match="'weight' is not a section"):
        apply_overrides(data, ["data.options.sources.0.weight.value=1"])


def test_supervised_flow_has_one_switch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loss.supervised_flow"):
        load_config(write(tmp_path, "loss:\n  config:\n    supervised_flow: true\n"))
    config = load_config(None, ["loss.supervised_flow=true"])
    _, loss_config = stage_loss_settings(config, 0)
    assert loss_config.supervised_flow
    _, loss_config = stage_loss_settings(load_config(None), 0)
    assert not loss_config.supervised_flow


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load_and_round_trip(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_two_stage_schedule_switches_tc_oseg_and_fb_check() -> None:
    config = load_config(None, [
        "schedule.stage2_start_step=10", "schedule.fb_check_start_step=20",
        "loss.weights.temporal=0.3", "loss.config.use_seg_mask=true",
    ])
    weights, loss_config = stage_loss_settings(config, 9)
    assert weights.temporal == 0.0 and not loss_config.use_seg_mask
    assert loss_config.occlusion_target == "range_map"
    weights, loss_config = stage_loss_settings(config, 10)
    assert weights.temporal == pytest.approx(0.3) and loss_config.use_seg_mask
    assert loss_config.occlusion_target == "range_map"
    _, loss_config = stage_loss_settings(config, 20)
    assert loss_config.occlusion_target == "fb_check"


def test_interleaved_segmentation_steps_switch_off_every_flow_term() -> None:
    config = load_config(None, [
        "schedule.seg_only_steps_per_joint_step=2", "schedule.stage2_start_step=0",
        "loss.supervised_flow=true", "loss.supervised_occlusion=true", "loss.weights.seg=3.0",
    ])
    joint_steps = []
    for step in range(7):
        weights, loss_config = stage_loss_settings(config, step)
        assert weights.seg == pytest.approx(3.0)
        flow_weights = (weights.photometric, weights.smoothness, weights.occlusion, weights.temporal,
                        weights.supervised_flow)
        if any(w > 0 for w in flow_weights) or loss_config.supervised_flow or loss_config.supervised_occlusion:
            joint_steps.append(step)
            assert all(w > 0 for w in flow_weights) and loss_config.supervised_flow
    assert joint_steps == [0, 3, 6]
    with pytest.raises(ValueError, match="seg_only_steps_per_joint_step must be >= 0, got -1"):
        load_config(None, ["schedule.seg_only_steps_per_joint_step=-1"])


def test_learning_rate_warmup_then_poly_and_cosine() -> None:
    config = load_config(None, ["schedule.total_steps=110", "schedule.warmup_steps=10",
                                "schedule.warmup_start_factor=0.1", "schedule.poly_power=2.0"])
    schedule = config.schedule
    assert lr_factor(0, schedule) == pytest.approx(0.1)
    assert lr_factor(5, schedule) == pytest.approx(0.55)
    assert lr_factor(10, schedule) == pytest.approx(1.0)
    assert lr_factor(60, schedule) == pytest.approx(0.25)  # (1 - 50/100) ** 2
    assert lr_factor(110, schedule) == pytest.approx(0.0)
    schedule.decay = "cosine"
    assert lr_factor(60, schedule) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_resumable_sampler_continues_the_same_order() -> None:
    data = list(range(37))
    full = ResumableSampler(data, num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    full.set_epoch(4)
    order = list(full)
    resumed = ResumableSampler(data, num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    resumed.set_epoch(4)
    resumed.set_start(5)
    assert list(resumed) == order[5:]
    other_epoch = ResumableSampler(data, num_replicas=2, rank=1, shuffle=True, seed=3, drop_last=True)
    other_epoch.set_epoch(5)
    assert list(other_epoch) != order
    assert torch.tensor(order).unique().numel() == len(order) == len(full)


def test_ablation_variants_add_one_ingredient_each() -> None:
    from training.ablation import VARIANTS, variant_config

    base = load_config(CONFIGS / "ci_tiny.yaml", ["loss.supervised_flow=true"])
    active = []
    for name in VARIANTS:
        config = variant_config(base, name)
        weights, options = config.loss.weights, config.loss.config
        assert weights.seg == base.loss.weights.seg and not config.loss.supervised_flow
        active.append((weights.photometric > 0, weights.smoothness > 0, weights.occlusion > 0,
                       options.use_seg_mask, weights.temporal > 0))
    assert active == [
        (False, False, False, False, False),
        (True, True, False, False, False),
        (True, True, True, False, False),
        (True, True, True, True, False),
        (True, True, True, True, True),
    ]
    with pytest.raises(ValueError, match="f_everything"):
        variant_config(base, "f_everything")
