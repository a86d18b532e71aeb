"""Evaluate a checkpoint on held-out pairs (docs/METHOD.md §5).

``python -m training.evaluate CHECKPOINT --dataset synthetic [--root DIR] [--split val]
[--num-sequences N] [--flow-refinement variational] --output metrics.json`` prints a table and
writes the metrics as JSON: mIoU and per-class IoU, EPE (all / non-occluded / occluded), Fl-all,
occlusion F1, and temporal consistency with the model's own flow and with ground-truth flow when
the data has it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from efc_core.flow_refinement import FLOW_REFINEMENTS, VariationalFlowRefiner
from efc_core.metrics import FlowMetrics, OcclusionMetrics, SegmentationMetrics, TemporalConsistency
from training.config import TrainConfig, from_dict
from training.loop import normalise_images

#: Where recipes read data in the development workplace; never written into a shipped file.
WORKPLACE_DATA_PREFIX = "../shared/data/"
#: How a shipped checkpoint names folders under the data root it was trained from.
SHIPPED_DATA_PREFIX = "<data root>/"


def _batches(dataset_or_loader: Dataset | DataLoader | Iterable, batch_size: int) -> Iterable[dict]:
    # A dataset (or a plain list of sample dicts) is batched here; anything else already yields batches.
    if isinstance(dataset_or_loader, (Dataset, list, tuple)):
        return DataLoader(dataset_or_loader, batch_size=batch_size, shuffle=False, num_workers=0)
    return dataset_or_loader


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    dataset_or_loader: Dataset | DataLoader | Iterable,
    *,
    device: torch.device | str = "cpu",
    class_names: list[str] | None = None,
    num_classes: int | None = None,
    batch_size: int = 4,
    max_batches: int | None = None,
    occlusion_threshold: float = 0.5,
    flow_refiner: VariationalFlowRefiner | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` over pairs (sample dicts with ``image1``/``image2`` in [0, 1]).

    Segmentation is scored on frame 1 of every pair against its labels (255 ignored); flow is the
    forward flow 1 -> 2 in pixels against ``flow_fw`` on ``flow_valid`` pixels, split by the
    ground-truth occlusion ``occ_fw``; TC compares the predictions of frames 1 and 2 through a flow
    (the model's own, and the ground truth where ``has_flow``) on non-occluded pixels.

    Returns a JSON-ready dict: ``miou``, ``pixel_accuracy``, ``iou`` (per class), ``epe``,
    ``epe_noc``, ``epe_occ``, ``fl_all``, ``zero_flow_epe`` (the do-nothing baseline on the same
    pixels), ``occlusion_f1``/``_precision``/``_recall``, ``tc_own_flow``, ``tc_gt_flow``, ``pairs``.
    With ``flow_refiner`` the flow is refined on the pair first, as the node's default
    ``flow_refinement`` does (occlusion and segmentation stay the network's).
    """
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is None:
        raise ValueError("num_classes is unknown: pass it or use a model with config.num_classes")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    segmentation = SegmentationMetrics(num_classes, class_names=class_names)
    flow_metrics, zero_flow = FlowMetrics(), FlowMetrics()
    occlusion = OcclusionMetrics(threshold=occlusion_threshold)
    tc_own = TemporalConsistency(num_classes, flow_source="model")
    tc_gt = TemporalConsistency(num_classes, flow_source="ground truth")
    pairs, has_flow_gt = 0, False
    for batch_index, batch in enumerate(_batches(dataset_or_loader, batch_size)):
        if max_batches is not None and batch_index >= max_batches:
            break
        image1 = batch["image1"].to(device)
        image2 = batch["image2"].to(device)
        output = model(normalise_images(image1), normalise_images(image2), with_flow=True, both_directions=False)
        labels1 = output.seg_logits1.argmax(1).cpu().numpy().astype(np.uint8)
        labels2 = output.seg_logits2.argmax(1).cpu().numpy().astype(np.uint8)
        flow = output.forward.flow.permute(0, 2, 3, 1).float().cpu().numpy()
        occ_prob = output.forward.occlusion[:, 0].float().cpu().numpy()
        if flow_refiner is not None:
            frames1, frames2 = (_uint8_frames(images) for images in (image1, image2))
            flow = np.stack([flow_refiner.refine(flow_refiner.prepare(first), flow_refiner.prepare(second), pair_flow)
                             for first, second, pair_flow in zip(frames1, frames2, flow)])
        for i in range(image1.shape[0]):
            pairs += 1
            gt_label = batch["label1"][i].numpy()
            if bool(batch["has_label1"][i]):
                segmentation.update(labels1[i], gt_label)
            tc_own.update(labels1[i], labels2[i], flow[i], occ_prob[i] > occlusion_threshold)
            if bool(batch["has_flow"][i]):
                has_flow_gt = True
                gt_flow = batch["flow_fw"][i].permute(1, 2, 0).numpy()
                valid = batch["flow_valid"][i].numpy()
                gt_occ = batch["occ_fw"][i].numpy() if bool(batch["has_occlusion"][i]) else None
                flow_metrics.update(flow[i], gt_flow, valid=valid, occluded=gt_occ)
                zero_flow.update(np.zeros_like(gt_flow), gt_flow, valid=valid, occluded=gt_occ)
                tc_gt.update(labels1[i], labels2[i], gt_flow, gt_occ)
            if bool(batch["has_occlusion"][i]):
                # KITTI-style ground truth knows occlusion only where it knows the flow.
                known = batch["flow_valid"][i].numpy() if bool(batch["has_flow"][i]) else None
                occlusion.update(occ_prob[i], batch["occ_fw"][i].numpy(), valid=known)
    model.train(was_training)
    return _assemble(segmentation, flow_metrics, zero_flow, occlusion, tc_own, tc_gt, pairs, has_flow_gt)


def _uint8_frames(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H, W, 3) uint8, what a camera delivers."""
    return (images.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _assemble(segmentation, flow_metrics, zero_flow, occlusion, tc_own, tc_gt, pairs, has_flow_gt) -> dict[str, Any]:
    seg = segmentation.compute()
    result: dict[str, Any] = {
        "pairs": pairs, "miou": seg["miou"], "pixel_accuracy": seg["pixel_accuracy"], "iou": seg["iou"],
        "tc_own_flow": tc_own.compute()["tc"],
    }
    if has_flow_gt:
        flow = flow_metrics.compute()
        result.update({k: flow[k] for k in ("epe", "epe_noc", "epe_occ", "fl_all")})
        result["zero_flow_epe"] = zero_flow.compute()["epe"]
        result["tc_gt_flow"] = tc_gt.compute()["tc"]
        occ = occlusion.compute()
        result.update({"occlusion_f1": occ["f1"], "occlusion_precision": occ["precision"],
                       "occlusion_recall": occ["recall"]})
    return {k: _plain(v) for k, v in result.items()}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, NaN -> None (valid JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_table(metrics: dict[str, Any]) -> str:
    """Two-column text table of the scalar metrics, then per-class IoU."""
    lines = [f"{'metric':<22}{'value':>10}"]
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            lines.append(f"{name:<22}{value:>10.4f}" if isinstance(value, float) else f"{name:<22}{value:>10}")
    for name, value in (metrics.get("iou") or {}).items():
        lines.append(f"  IoU {name:<17}{'n/a' if value is None else f'{value:.4f}':>10}")
    return "\n".join(lines)


def build_eval_dataset(checkpoint: dict[str, Any], name: str, root: str | None, split: str,
                       num_sequences: int | None, data_root: str = "../shared/data") -> Dataset:
    """Held-out pairs; synthetic data is generated exactly as for the model's training run.

    The synthetic held-out set is the training run's own validation split (``build_datasets`` of
    the checkpoint's ``train_config``: textures, motions and photometric changes included) with
    ``num_sequences`` sequences. Texture folders a shipped checkpoint names as ``<data root>/...``
    (``training.ship``) are looked up under ``data_root``.
    """
    if name == "synthetic":
        from training.loop import build_datasets

        if split != "val":
            raise ValueError(f"synthetic evaluation uses the held-out 'val' split, got {split!r}")
        config = synthetic_run_config(checkpoint, data_root)
        config.data.synthetic.val_sequences = num_sequences or config.data.synthetic.val_sequences or 4
        return build_datasets(config)[1]
    from efc_core.data.datasets import build_dataset

    return build_dataset(name, root, split)


def synthetic_run_config(checkpoint: dict[str, Any], data_root: str = "../shared/data") -> TrainConfig:
    """The training config of ``checkpoint``'s synthetic run, with its texture folders found again.

    Texture folders a shipped checkpoint names as ``<data root>/...`` (``training.ship``) are looked
    up under ``data_root``; ``ValueError`` when the run did not train on synthetic video.
    """
    config = from_dict(TrainConfig, checkpoint.get("train_config") or {})
    if config.data.dataset != "synthetic":
        raise ValueError(f"the checkpoint was trained on {config.data.dataset!r}, not on synthetic data: "
                         "its synthetic generator settings are unknown")
    config.data.synthetic.texture_dirs = [
        str(Path(data_root) / folder.removeprefix(SHIPPED_DATA_PREFIX)) if folder.startswith(SHIPPED_DATA_PREFIX)
        else folder for folder in config.data.synthetic.texture_dirs]
    config.model.num_classes = (checkpoint.get("model_config") or {}).get("num_classes", config.model.num_classes)
    return config


def baseline_metrics(dataset: Dataset | Iterable, methods: Iterable[str], *, occlusion_threshold: float = 0.5,
                     ) -> dict[str, dict[str, Any]]:
    """Classical flow on the same held-out pairs as :func:`evaluate_model`: EPE, Fl-all, occlusion F1.

    Args:
        dataset: sample dicts with ``image1``/``image2`` (3, H, W) in [0, 1] and ground truth
            ``flow_fw`` (2, H, W) px, ``flow_valid``, ``occ_fw``.
        methods: names of ``training.real_eval.BASELINE_METHODS`` (``zero``, ``dis-ultrafast``,
            ``dis-fast``, ``dis-medium``); DIS's occlusion is its forward-backward check.

    Returns:
        ``{method: {"epe", "epe_noc", "epe_occ", "fl_all", "occlusion_f1", "ms_per_pair", "pairs"}}``,
        ``ms_per_pair`` = CPU wall time of the forward flow alone (not the check).
    """
    from efc_core.flow_ops import forward_backward_occlusion
    from training.real_eval import BASELINE_METHODS, dis_flow_fn, zero_flow_fn

    unknown = [method for method in methods if method not in BASELINE_METHODS]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; expected one of {', '.join(BASELINE_METHODS)}")
    flow_fns = {method: zero_flow_fn if method == "zero" else dis_flow_fn(method.removeprefix("dis-"))
                for method in methods}
    flow_metrics = {method: FlowMetrics() for method in flow_fns}
    occlusion = {method: OcclusionMetrics(threshold=occlusion_threshold) for method in flow_fns}
    seconds = dict.fromkeys(flow_fns, 0.0)
    pairs = 0
    for sample in dataset:  # one pass: synthetic samples are generated on access
        if not bool(sample["has_flow"]):
            continue
        pairs += 1
        image1, image2 = (_to_uint8_rgb(sample[key]) for key in ("image1", "image2"))
        gt_flow, valid = sample["flow_fw"].permute(1, 2, 0).numpy(), sample["flow_valid"].numpy()
        gt_occ = sample["occ_fw"].numpy() if bool(sample["has_occlusion"]) else None
        for method, flow_fn in flow_fns.items():
            started = time.perf_counter()
            flow = flow_fn(image1, image2)
            seconds[method] += time.perf_counter() - started
            flow_metrics[method].update(flow, gt_flow, valid=valid, occluded=gt_occ)
            if gt_occ is not None and method != "zero":
                predicted = forward_backward_occlusion(flow, flow_fn(image2, image1)).astype(np.float32)
                occlusion[method].update(predicted, gt_occ, valid=valid)
    results = {}
    for method in flow_fns:
        flow = flow_metrics[method].compute()
        result = {k: flow[k] for k in ("epe", "epe_noc", "epe_occ", "fl_all")}
        result.update(occlusion_f1=occlusion[method].compute()["f1"] if method != "zero" else None,
                      ms_per_pair=1e3 * seconds[method] / max(pairs, 1), pairs=pairs)
        results[method] = _plain(result)
    return results


def _to_uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB, as a camera would deliver it."""
    return (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate an EFC checkpoint (docs/METHOD.md §5 metrics).")
    parser.add_argument("checkpoint")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--data-root", default="../shared/data",
                        help="where a shipped checkpoint's '<data root>/...' folders are (synthetic textures)")
    parser.add_argument("--num-sequences", type=int, default=None, help="synthetic: held-out sequences")
    parser.add_argument("--synthetic-from", default=None, metavar="CHECKPOINT",
                        help="synthetic: generate the held-out set of this checkpoint's training run instead "
                             "(a stage trained on a mixture continues one trained on synthetic video)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--flow-refinement", default="off", choices=FLOW_REFINEMENTS,
                        help="variational: score the flow as the node publishes it by default (refined on the pair); "
                             "off: the network's flow")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-threads", type=int, default=0)
    parser.add_argument("--output", default=None, help="metrics JSON path")
    parser.add_argument("--baselines", nargs="*", default=[], metavar="METHOD",
                        help="also score zero / dis-ultrafast / dis-fast / dis-medium on the same pairs")
    parser.add_argument("--ship", default=None, metavar="PATH",
                        help="also write a shippable copy of the checkpoint: these metrics, no optimiser state")
    args = parser.parse_args(argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    from efc_core.model.checkpoint import load_checkpoint, load_model

    model, _ = load_model(args.checkpoint)
    state = load_checkpoint(args.checkpoint)
    generator_state = load_checkpoint(args.synthetic_from) if args.synthetic_from else state
    dataset = build_eval_dataset(generator_state, args.dataset, args.root, args.split, args.num_sequences,
                                 args.data_root)
    metrics = evaluate_model(model.to(args.device), dataset, device=args.device,
                             class_names=list(state.get("class_names") or []) or None,
                             batch_size=args.batch_size,
                             flow_refiner=VariationalFlowRefiner() if args.flow_refinement == "variational" else None)
    metrics = {"checkpoint": str(args.checkpoint), "dataset": args.dataset, "split": args.split,
               "flow_refinement": args.flow_refinement,
               **({"held_out_set_of": str(args.synthetic_from)} if args.synthetic_from else {}),
               "tc_flow_sources": {"tc_own_flow": "model forward flow", "tc_gt_flow": "ground truth"},
               **metrics}
    if args.baselines:
        metrics["baselines"] = baseline_metrics(dataset, args.baselines)
    print(format_table(metrics))
    for method, values in (metrics.get("baselines") or {}).items():
        print(f"{method:<16}" + " ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float)))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if args.ship:
        ship_checkpoint(state, metrics, args.ship)
    return 0


def without_workplace_paths(value: Any) -> Any:
    """``value`` with data roots under the workplace folder written as ``<data root>/...``."""
    if isinstance(value, dict):
        return {k: without_workplace_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_workplace_paths(v) for v in value]
    if isinstance(value, str) and value.startswith(WORKPLACE_DATA_PREFIX):
        return SHIPPED_DATA_PREFIX + value.removeprefix(WORKPLACE_DATA_PREFIX)
    return value


def ship_checkpoint(state: dict[str, Any], metrics: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``metrics`` and without optimiser / scheduler / scaler state.

    The training state triples a small model's file and is useless to users; everything
    ``load_model`` and the exporter read (config, weights, classes, palette, git revision, training
    config) is kept, the training config's data roots written as ``<data root>/...``.
    """
    shipped = dict(state)
    shipped.update(optimizer_state=None, scheduler_state=None, scaler_state=None, metrics=metrics)
    shipped["train_config"] = without_workplace_paths(state.get("train_config") or {})
    shipped["extra"] = {k: v for k, v in (state.get("extra") or {}).items() if k != "torch_rng_state"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(shipped, path)
    return path


if __name__ == "__main__":
    sys.exit(main())
