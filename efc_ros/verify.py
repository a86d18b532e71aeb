"""``efc verify MODEL_A MODEL_B``: run two backends on the same inputs and compare their outputs
(docs/DEPLOY.md, Verifying an engine).

Both models receive identical network tensors (preprocessed once, at the fixed size of either), so the
comparison measures the models and backends, not the resizing. Reported per run: max / mean
absolute difference of the segmentation logits, the end-point error between the two flows (mean
and max, pixels), the max occlusion-probability difference and the label (argmax) agreement.
TensorRT runs FP32 layers in TF32 by default; ONNX Runtime CPU and PyTorch CPU do not. So an FP32
engine built with TF32 (the sidecar says so; ``efc build-engine --no-tf32`` turns it off) is
checked against the ``TF32`` tolerances, not the exact-FP32 ``STRICT`` ones, and the report says
which set applied and why.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BACKEND_BY_SUFFIX = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt"}
#: Default tolerances: exact-arithmetic backends (FP32) vs reduced precision (FP16 / INT8).
STRICT = {"tol_logits": 1e-3, "tol_epe": 0.01, "min_agreement": 0.999}
REDUCED = {"tol_logits": 0.5, "tol_epe": 0.5, "min_agreement": 0.98}
#: FP32 engines whose FP32 layers may run in TF32 (TensorRT's default on Ampere and newer, e.g.
#: Jetson Orin, RTX 30xx+, Hopper): 10-bit mantissa products, about 1e-3 relative per layer.
TF32 = {"tol_logits": 0.05, "tol_epe": 0.05, "min_agreement": 0.995}
DEFAULT_SYNTHETIC_SIZE = (256, 320)  # (H, W)


def backend_for(path: Path, explicit: str | None = None) -> str:
    """Backend kind for a model file: ``explicit`` or inferred from the suffix (``ValueError``)."""
    if explicit:
        return explicit
    kind = BACKEND_BY_SUFFIX.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot infer the backend of {path} from its suffix {path.suffix!r}; "
                         f"expected one of {sorted(BACKEND_BY_SUFFIX)} or pass --backend-a/--backend-b")
    return kind


@dataclass
class Comparison:
    """Differences between two backends' outputs over all pairs (pixels at model resolution)."""

    pairs: int
    logits_max_abs: float
    logits_mean_abs: float
    flow_epe_mean: float
    flow_epe_max: float
    occlusion_max_abs: float
    label_agreement: float


def compare_outputs(outputs_a: list, outputs_b: list) -> Comparison:
    """Compare lists of ``ModelOutputs`` (seg_logits (1,K,H,W), flow (1,2,H,W), occlusion (1,1,H,W))."""
    if len(outputs_a) != len(outputs_b) or not outputs_a:
        raise ValueError(f"need the same non-zero number of outputs, got {len(outputs_a)} and {len(outputs_b)}")
    logit_max = flow_max = occ_max = 0.0
    logit_sum = epe_sum = agree = pixels = logit_count = 0.0
    for a, b in zip(outputs_a, outputs_b):
        if a.seg_logits.shape != b.seg_logits.shape:
            raise ValueError(f"logit shapes differ: {a.seg_logits.shape} vs {b.seg_logits.shape} "
                             "(different class counts or input sizes)")
        logit_diff = np.abs(a.seg_logits.astype(np.float64) - b.seg_logits)
        logit_max = max(logit_max, float(logit_diff.max()))
        logit_sum += float(logit_diff.sum())
        logit_count += logit_diff.size
        epe = np.linalg.norm(a.flow.astype(np.float64) - b.flow, axis=1)
        flow_max = max(flow_max, float(epe.max()))
        epe_sum += float(epe.sum())
        occ_max = max(occ_max, float(np.abs(a.occlusion.astype(np.float64) - b.occlusion).max()))
        agree += float((a.seg_logits.argmax(axis=1) == b.seg_logits.argmax(axis=1)).sum())
        pixels += epe.size
    return Comparison(len(outputs_a), logit_max, logit_sum / logit_count, epe_sum / pixels, flow_max,
                      occ_max, agree / pixels)


def tolerance_failures(result: Comparison, tol_logits: float, tol_epe: float, min_agreement: float) -> list[str]:
    """Which tolerances ``result`` exceeds (empty: verification passed)."""
    failures = []
    if result.logits_max_abs > tol_logits:
        failures.append(f"logits max |diff| {result.logits_max_abs:.3g} > {tol_logits:g}")
    if result.flow_epe_mean > tol_epe:
        failures.append(f"flow EPE {result.flow_epe_mean:.3g} px > {tol_epe:g}")
    if result.label_agreement < min_agreement:
        failures.append(f"label agreement {result.label_agreement:.4%} < {min_agreement:.4%}")
    return failures


def image_pairs(images: Path | None, synthetic: int, size: tuple[int, int] | None,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Input pairs as (H, W, 3) uint8 RGB: consecutive sorted images of a folder, or ``synthetic``
    pairs of a synthetic video at ``size`` (H, W).
    """
    import cv2

    if images is not None:
        from efc_core.data.formats import list_images, read_rgb

        paths = list_images(images)
        if len(paths) < 2:
            raise ValueError(f"{images} holds {len(paths)} images; verification needs at least 2 (one pair)")
        frames = [read_rgb(path) for path in paths]
        if size is not None:
            frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames]
        return list(zip(frames[:-1], frames[1:]))
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    if synthetic < 1:
        raise ValueError(f"--synthetic must be >= 1, got {synthetic}")
    height, width = size or DEFAULT_SYNTHETIC_SIZE
    sequence = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=synthetic + 1), seed=seed)
    frames = list(sequence.frames)
    return list(zip(frames[:-1], frames[1:]))


def run_verify(model_a: Path, model_b: Path, pairs: list, *, backend_a: str | None = None,
               backend_b: str | None = None) -> tuple[Comparison, dict]:
    """Run both backends on ``pairs`` and compare. Returns the comparison and a description."""
    from efc_core.preprocess import plan_geometry, preprocess
    from efc_core.runtime import create_backend

    kinds = [backend_for(model_a, backend_a), backend_for(model_b, backend_b)]
    paths = [model_a, model_b]
    # A checkpoint has no flow direction of its own: the torch side follows the export it is
    # compared with, so a backward-flow export is checked against backward flow.
    order = sorted(range(2), key=lambda i: kinds[i] == "torch")
    backends: list = [None, None]
    try:
        for index in order:
            options = {}
            other = backends[1 - index]
            if kinds[index] == "torch":
                # Identical tensors at the other model's size: compare the models, not the resizing.
                options["dynamic"] = True
                if other is not None:
                    options["flow_direction"] = other.manifest.flow_direction
            backends[index] = create_backend(kinds[index], paths[index], **options)
        manifest = _shared_manifest(backends[0].manifest, backends[1].manifest)
        outputs: list[list] = [[], []]
        for prev, cur in pairs:
            geometry = plan_geometry(manifest, prev.shape[:2])
            tensors = [preprocess(image, geometry, manifest.mean, manifest.std, pad_mode=manifest.pad_mode)
                       for image in (prev, cur)]
            for index, backend in enumerate(backends):
                outputs[index].append(backend.infer(*tensors))
        description = {
            "model_a": str(model_a), "backend_a": backends[0].name, "precision_a": backends[0].precision,
            "model_b": str(model_b), "backend_b": backends[1].name, "precision_b": backends[1].precision,
            "tf32_a": bool(getattr(backends[0], "tf32", False)), "tf32_b": bool(getattr(backends[1], "tf32", False)),
            "model_size": list(geometry.model_size), "image_size": list(pairs[0][0].shape[:2]),
        }
        return compare_outputs(*outputs), description
    finally:
        for backend in backends:
            if backend is not None:
                backend.close()


def _shared_manifest(manifest_a, manifest_b):
    """The manifest whose input geometry both models accept (a fixed size wins over dynamic)."""
    if manifest_a.num_classes != manifest_b.num_classes:
        raise ValueError(f"models have {manifest_a.num_classes} and {manifest_b.num_classes} classes")
    fixed = [m for m in (manifest_a, manifest_b) if not m.is_dynamic]
    sizes = {(m.input_height, m.input_width) for m in fixed}
    if len(sizes) > 1:
        raise ValueError(f"the models have different fixed input sizes {sorted(sizes)} (HxW)")
    return fixed[0] if fixed else manifest_a


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``efc verify``."""
    parser = subparsers.add_parser(
        "verify", help="compare two backends/models on the same inputs (logits, flow EPE, label agreement)",
        description="Exit 0 when within tolerance, 1 when a tolerance is exceeded, 2 on errors. Defaults: "
                    f"FP32 {STRICT}; TensorRT FP32 with TF32 {TF32}; FP16/INT8 {REDUCED}.",
    )
    parser.add_argument("model_a", type=Path, help="reference model (.pt torch, .onnx onnxruntime, .engine tensorrt)")
    parser.add_argument("model_b", type=Path, help="model to check")
    parser.add_argument("--backend-a", choices=["torch", "onnxruntime", "tensorrt"])
    parser.add_argument("--backend-b", choices=["torch", "onnxruntime", "tensorrt"])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", type=Path, help="folder of frames; consecutive sorted images are paired")
    source.add_argument("--synthetic", type=int, default=3, help="number of synthetic pairs (default 3)")
    parser.add_argument("--size", help="image WIDTHxHEIGHT (synthetic default 320x256; images: resize to it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol-logits", type=float, help="max |logit difference| allowed")
    parser.add_argument("--tol-epe", type=float, help="mean flow EPE between the two allowed (pixels)")
    parser.add_argument("--min-agreement", type=float, help="minimum fraction of equal labels")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    parser.set_defaults(handler=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from efc_ros.cli_args import parse_size_wh

    size = parse_size_wh(args.size) if args.size else None
    if args.json:  # checked first: a bad --json path must not come after a printed PASS
        from efc_ros.output_paths import check_writable_file

        check_writable_file(args.json)
    for path in (args.model_a, args.model_b):
        if not path.exists():
            raise FileNotFoundError(f"model {path} not found")
    pairs = image_pairs(args.images, args.synthetic, size, args.seed)
    result, description = run_verify(args.model_a, args.model_b, pairs, backend_a=args.backend_a,
                                     backend_b=args.backend_b)
    defaults, tolerance_set = default_tolerances(description)
    tolerances = {key: getattr(args, key) if getattr(args, key) is not None else value for key,
                  value in defaults.items()}
    failures = tolerance_failures(result, **tolerances)
    report = {**description, **asdict(result), "tolerances": tolerances, "tolerance_set": tolerance_set,
              "passed": not failures, "failures": failures}
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


def default_tolerances(description: dict) -> tuple[dict, str]:
    """(tolerances, name of the set and why) for two backends described by ``run_verify``:
    REDUCED when either side is FP16/INT8, TF32 when an FP32 side may use TF32, else STRICT.
    """
    if {description["precision_a"], description["precision_b"]} - {"fp32"}:
        return REDUCED, "reduced (FP16/INT8)"
    if description.get("tf32_a") or description.get("tf32_b"):
        return TF32, "tf32 (TensorRT FP32 engine built with TF32; --no-tf32 for exact FP32)"
    return STRICT, "strict (FP32)"


def format_table(report: dict) -> str:
    """The verification report as an aligned text table."""
    rows = [
        ("A", f"{report['model_a']} [{report['backend_a']} {report['precision_a']}]"),
        ("B", f"{report['model_b']} [{report['backend_b']} {report['precision_b']}]"),
        ("pairs / model input (HxW)", f"{report['pairs']} / {report['model_size'][0]}x{report['model_size'][1]}"),
        ("tolerances", report.get("tolerance_set", "given")),
        ("logits max |diff|", f"{report['logits_max_abs']:.3g}  (tol {report['tolerances']['tol_logits']:g})"),
        ("logits mean |diff|", f"{report['logits_mean_abs']:.3g}"),
        ("flow EPE mean / max (px)",
         f"{report['flow_epe_mean']:.3g} / {report['flow_epe_max']:.3g}  (tol {report['tolerances']['tol_epe']:g})"),
        ("occlusion max |diff|", f"{report['occlusion_max_abs']:.3g}"),
        ("label agreement", f"{report['label_agreement']:.4%}  (min {report['tolerances']['min_agreement']:.4%})"),
        ("result", "PASS" if report["passed"] else "FAIL: " + "; ".join(report["failures"])),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
