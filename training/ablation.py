"""Ablation benchmark of the EFC losses on held-out synthetic video (docs/METHOD.md §3, §5).

``python -m training.ablation [--config training/configs/ci_tiny.yaml] [--steps N]
[--demo-model models/efc_demo_tiny.pt] --output runs/ablation/ablation.json``

Five variants with the same data, seeds and step budget, each adding one ingredient:
(a) segmentation on labelled frames only, (b) + unsupervised flow (photometric + smoothness),
(c) + occlusion loss, (d) + ``O_seg`` in the error mask, (e) + temporal consistency on unlabelled
frames (full EFC). Reported on the same held-out sequences: mIoU, TC (model's own flow and
ground-truth flow), EPE, occlusion F1 and training throughput. With ``--demo-model``, the shipped
model's flow EPE is compared with OpenCV DIS (medium preset, greyscale) on the same held-out pairs.
Variant (a) never trains the flow branch: its flow numbers are those of an untrained branch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from efc_core.data.datasets.teacher_flow import dis_flow
from efc_core.metrics import FlowMetrics
from training.config import TrainConfig, load_config
from training.evaluate import build_eval_dataset, evaluate_model
from training.train import Trainer

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "ci_tiny.yaml"
VARIANTS: dict[str, str] = {
    "a_seg_only": "segmentation on labelled frames only",
    "b_flow": "+ unsupervised flow (photometric + smoothness)",
    "c_occlusion": "+ occlusion loss (range-map target)",
    "d_oseg": "+ O_seg error mask",
    "e_full_efc": "+ temporal consistency on unlabelled frames (full EFC)",
}
REPORTED = ("miou", "tc_own_flow", "tc_gt_flow", "epe", "epe_noc", "zero_flow_epe", "occlusion_f1", "pairs_per_second")


def variant_config(base: TrainConfig, variant: str) -> TrainConfig:
    """``base`` with the loss terms of ``variant`` switched on or off (all else unchanged)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; expected one of {list(VARIANTS)}")
    order = list(VARIANTS)
    level = order.index(variant)
    weights, options = base.loss.weights, base.loss.config
    weights = dataclasses.replace(
        weights,
        photometric=weights.photometric if level >= 1 else 0.0,
        smoothness=weights.smoothness if level >= 1 else 0.0,
        occlusion=weights.occlusion if level >= 2 else 0.0,
        temporal=weights.temporal if level >= 4 else 0.0,
    )
    options = dataclasses.replace(options, use_seg_mask=level >= 3)
    loss = dataclasses.replace(base.loss, weights=weights, config=options, supervised_flow=False)
    logging = dataclasses.replace(base.logging, progress_bar=False, tensorboard=False, checkpoint_every=0, eval_every=0)
    return dataclasses.replace(base, name=f"ablation_{variant}", loss=loss, logging=logging)


def run_variant(config: TrainConfig, output_dir: Path) -> dict[str, Any]:
    """Train one variant from scratch and evaluate it on the held-out split."""
    trainer = Trainer(config, output_dir)
    try:
        summary = trainer.run()
    finally:
        trainer.context.close()
    metrics = evaluate_model(trainer.model, trainer.val_set, device=trainer.device,
                             num_classes=config.model.num_classes)
    metrics["pairs_per_second"] = summary["pairs_per_second"]
    metrics["train_seconds"] = summary["train_seconds"]
    metrics["steps"] = summary["step"]
    return metrics


def compare_with_dis(checkpoint: Path, num_sequences: int) -> dict[str, Any]:
    """The demo model vs OpenCV DIS on the same held-out pairs (the model's training resolution)."""
    from efc_core.model.checkpoint import load_checkpoint, load_model

    model, _ = load_model(checkpoint)
    state = load_checkpoint(checkpoint)
    dataset = build_eval_dataset(state, "synthetic", None, "val", num_sequences)
    started = time.perf_counter()
    model_metrics = evaluate_model(model, dataset, num_classes=model.config.num_classes)
    model_seconds = time.perf_counter() - started
    flow = FlowMetrics()
    dis_seconds = 0.0
    for index in range(len(dataset)):
        sample = dataset[index]
        image1 = (sample["image1"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        image2 = (sample["image2"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        started = time.perf_counter()
        estimate = dis_flow(image1, image2)
        dis_seconds += time.perf_counter() - started
        gt = sample["flow_fw"].permute(1, 2, 0).numpy()
        flow.update(estimate, gt, valid=sample["flow_valid"].numpy(), occluded=sample["occ_fw"].numpy())
    dis = flow.compute()
    return {
        "checkpoint": str(checkpoint), "pairs": len(dataset),
        "resolution": list(dataset[0]["image1"].shape[-2:]),
        "efc_epe": model_metrics["epe"], "efc_epe_noc": model_metrics["epe_noc"], "efc_fl_all": model_metrics["fl_all"],
        "dis_epe": dis["epe"], "dis_epe_noc": dis["epe_noc"], "dis_fl_all": dis["fl_all"],
        "zero_flow_epe": model_metrics["zero_flow_epe"], "efc_miou": model_metrics["miou"],
        "efc_ms_per_pair_torch_cpu": 1000 * model_seconds / max(len(dataset), 1),
        "dis_ms_per_pair": 1000 * dis_seconds / max(len(dataset), 1),
    }


def format_results(results: dict[str, dict[str, Any]], dis: dict[str, Any] | None) -> str:
    """Markdown table of the variants, then the DIS comparison."""
    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| variant | " + " | ".join(REPORTED) + " |", "|---" * (len(REPORTED) + 1) + "|"]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(metrics.get(key)) for key in REPORTED) + " |")
    if dis:
        lines.append("")
        lines.append(f"demo model vs OpenCV DIS-medium on {dis['pairs']} held-out pairs at {dis['resolution']}: "
                     f"EPE {cell(dis['efc_epe'])} vs {cell(dis['dis_epe'])} (zero flow {cell(dis['zero_flow_epe'])}); "
                     f"Fl-all {cell(dis['efc_fl_all'])} vs {cell(dis['dis_fl_all'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="EFC loss ablation on synthetic video.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="base training config")
    parser.add_argument("--steps", type=int, default=100, help="training steps per variant (same for all)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--demo-model", default=None, help="checkpoint to compare with OpenCV DIS")
    parser.add_argument("--dis-sequences", type=int, default=4, help="held-out sequences for the DIS comparison")
    parser.add_argument("--output", default="runs/ablation/ablation.json")
    args = parser.parse_args(argv)
    stage2 = max(args.steps * 2 // 3, 1)
    base = load_config(args.config, [f"schedule.total_steps={args.steps}", f"schedule.stage2_start_step={stage2}",
                                     f"schedule.warmup_steps={min(10, args.steps - 1)}", *args.overrides])
    output = Path(args.output)
    results: dict[str, dict[str, Any]] = {}
    for variant in args.variants:
        started = time.perf_counter()
        results[variant] = run_variant(variant_config(base, variant), output.parent / variant)
        print(f"{variant}: {VARIANTS[variant]} ({time.perf_counter() - started:.0f} s)", flush=True)
    dis = compare_with_dis(Path(args.demo_model), args.dis_sequences) if args.demo_model else None
    report = {"steps": args.steps, "config": args.config, "overrides": args.overrides, "seed": base.seed,
              "threads": torch.get_num_threads(), "variants": VARIANTS, "results": results, "demo_vs_dis": dis}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(format_results(results, dis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
