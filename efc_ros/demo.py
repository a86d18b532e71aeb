"""``make demo``: the whole offline chain on a fresh machine (no GPU, no downloads).

synthetic camera bag with ground truth -> the shipped demo model on ONNX Runtime -> outputs bag
-> evaluation report with figures. Prints where to look.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from efc_core.errors import EfcError
from efc_core.perceptor_config import PerceptorConfig, build_perceptor
from efc_ros.cli_args import parse_size_wh
from efc_ros.model_paths import DEMO_MODEL_NAME, default_model_path
from efc_ros.perceptor_args import add_perceptor_arguments, perceptor_config_from_args


#: The scene statistics the demo model was trained on (training/configs/synthetic_demo.yaml, at its
#: 256x128 input; tests/test_demo.py keeps the two equal): the demo camera shows the model the
#: world it learned, at the scale it learned it.
DEMO_SCENE: dict[str, float | int] = {
    "min_objects": 3, "max_objects": 8, "max_translation": 5.0, "max_rotation_deg": 3.0, "max_scale_change": 0.03,
    "background_motion": 4.0, "background_rotation_deg": 1.0, "background_scale_change": 0.02, "noise_std": 2.0,
    "brightness_change": 0.08, "contrast_change": 0.1, "blur_sigma_max": 1.0, "object_tint": 0.6,
}


def run_demo(output_dir: Path, *, frames: int, size: tuple[int, int], config: PerceptorConfig,
             texture_source: str = "photo") -> dict:
    """Run the chain into ``output_dir`` with the Perceptor of ``config``; returns the evaluation report."""
    from efc_ros.bag.evaluate import evaluate_bag, markdown_report, write_report
    from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag
    from efc_ros.bag.process import process_bag

    output_dir.mkdir(parents=True, exist_ok=True)
    camera_bag, outputs_bag, report_dir = output_dir / "camera_bag", output_dir / "outputs_bag", output_dir / "report"
    width, height = size
    started = time.perf_counter()
    # A new scene every 10 frames: the report and montage cover several, not one draw of luck.
    make_synthetic_bag(camera_bag, SyntheticBagOptions(width=width, height=height, num_frames=frames, seed=2024,
                                                       texture_source=texture_source, scene=DEMO_SCENE,
                                                       segment_length=10),
                       overwrite=True)
    print(f"[1/3] synthetic camera bag with ground truth: {camera_bag} ({frames} frames, {width}x{height}, "
          f"{texture_source} textures)")
    perceptor = build_perceptor(config)
    stats = process_bag(camera_bag, outputs_bag, perceptor, overwrite=True)
    summary = stats.as_dict()
    print(f"[2/3] {config.backend} on {Path(config.model_path).name}: {stats.frames} frames at "
          f"{summary['frames_per_second']:.1f} frames/s "
          f"-> {outputs_bag}")
    report, state = evaluate_bag(outputs_bag)
    paths = write_report(report, state, report_dir)
    print(f"[3/3] report: {report_dir}\n")
    print(markdown_report(report))
    print("Look at:")
    for path in paths:
        print(f"  {path}")
    print(f"\nOpen {outputs_bag} in Foxglove or rviz2 (ros2 bag play) to see the /efc/* colour topics.")
    print(f"Done in {time.perf_counter() - started:.0f} s.")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=int, default=40)
    # The demo model's input size: it runs at the size it was trained at.
    parser.add_argument("--size", default="256x128", help="WIDTHxHEIGHT of the synthetic camera")
    parser.add_argument("--texture", choices=["photo", "procedural"], default="photo",
                        help="scene textures: photographs (scikit-image's, as the demo model was trained on) "
                             "or procedural noise")
    add_perceptor_arguments(parser)
    args = parser.parse_args(argv)

    try:
        height, width = parse_size_wh(args.size)
        # The synthetic camera's ground truth uses the synthetic classes: the demo model, not the
        # real-camera default.
        args.model = args.model or default_model_path(name=DEMO_MODEL_NAME)
        run_demo(args.output, frames=args.frames, size=(width, height), config=perceptor_config_from_args(args),
                 texture_source=args.texture)
    except (EfcError, ValueError, FileNotFoundError) as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
