"""``efc bag ...`` subcommands: make-synthetic, process, eval, replay, from-video.

``add_parser(subparsers)`` is called by ``efc_ros.cli``; each handler returns an exit code and
lets ``EfcError``/``ValueError`` propagate to the CLI's one-line error reporting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Callable, Iterator

from efc_ros.cli_args import parse_size_wh


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bag`` and its subcommands on the top-level ``efc`` parser."""
    bag = subparsers.add_parser("bag", help="offline rosbag tools (make-synthetic, process, eval, replay, from-video)")
    commands = bag.add_subparsers(dest="bag_command", required=True)

    make = commands.add_parser("make-synthetic", help="write a synthetic camera bag with ground-truth topics")
    make.add_argument("output", type=Path, help="output bag folder")
    make.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    make.add_argument("--frames", type=int, default=60, help="number of camera frames")
    make.add_argument("--fps", type=float, default=15.0, help="camera frame rate (Hz)")
    make.add_argument("--encoding", default="rgb8", choices=["rgb8", "bgr8", "mono8", "jpeg", "png"])
    make.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--frame-id", default="camera")
    make.add_argument("--overwrite", action="store_true")
    make.set_defaults(handler=_make_synthetic)

    process = commands.add_parser("process", help="run the perception pipeline over a bag into a new bag")
    process.add_argument("input", type=Path)
    process.add_argument("output", type=Path)
    _add_model_arguments(process)
    process.add_argument("--topic", help="image topic (found automatically when the bag has one)")
    process.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    process.add_argument("--no-color", action="store_true", help="skip the colour image topics")
    process.add_argument("--overwrite", action="store_true", help="replace an existing output bag (never the input)")
    process.add_argument("--json", type=Path, help="write throughput, stage timings and skipped data as JSON")
    process.add_argument("--max-image-pixels", type=int, default=None,
                         help="skip camera frames larger than this many pixels (default 2^25, 8K fits)")
    _add_render_arguments(process)
    process.set_defaults(handler=_process)

    evaluate = commands.add_parser("eval", help="metrics, report and figures of a processed or replayed bag")
    evaluate.add_argument("bag", type=Path)
    evaluate.add_argument("--output", type=Path, required=True, help="report folder")
    evaluate.add_argument("--topic", help="camera topic (found automatically when the bag has one)")
    evaluate.add_argument("--num-classes", type=int, default=32)
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing report")
    evaluate.set_defaults(handler=_evaluate)

    replay = commands.add_parser("replay", help="play a bag into the running node, record its outputs, evaluate")
    replay.add_argument("input", type=Path)
    replay.add_argument("output", type=Path, help="recorded bag folder")
    replay.add_argument("--namespace", default="", help="the node's namespace")
    replay.add_argument("--topic", help="camera topic in the input bag")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed multiple")
    replay.add_argument("--best-effort", action="store_true", help="publish and record with best-effort QoS")
    replay.add_argument("--report", type=Path, help="evaluation report folder (default: OUTPUT_report)")
    replay.add_argument("--overwrite", action="store_true")
    replay.set_defaults(handler=_replay)

    from_video = commands.add_parser("from-video", help="convert a phone / dash-cam clip into a camera bag")
    from_video.add_argument("video", type=Path, help="video file (anything OpenCV opens: .mp4, .mov, .avi, ...)")
    from_video.add_argument("output", type=Path, help="output bag folder")
    from_video.add_argument("--topic", default="/camera/image_raw",
                            help="image topic (default /camera/image_raw; /compressed is appended with --compressed)")
    from_video.add_argument("--compressed", action="store_true", help="write sensor_msgs/CompressedImage (jpeg)")
    from_video.add_argument("--frame-id", default="camera")
    from_video.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    from_video.add_argument("--resize", default=None, help="WIDTHxHEIGHT of the written images (default: the clip's)")
    from_video.add_argument("--fps", type=float, default=None, help="frame rate for the stamps (default: the clip's)")
    from_video.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    from_video.add_argument("--overwrite", action="store_true")
    from_video.set_defaults(handler=_from_video)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from efc_ros.perceptor_args import add_perceptor_arguments

    add_perceptor_arguments(parser)


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per renderer setting (``efc_core.edge.render.RENDER_FIELDS``: the node's parameters
    ``occlusion_threshold``, ``flow_color_max``, ``overlay_alpha``), left out = None = their default.
    """
    from efc_core.edge.render import RENDER_FIELDS

    group = parser.add_argument_group("outputs (the node's parameters of the same names)")
    for setting in RENDER_FIELDS:
        low, high = setting.limits
        group.add_argument("--" + setting.ros_name.replace("_", "-"), dest=setting.name, type=type(setting.default),
                           default=None, metavar=f"{low:g}..{high:g}",
                           help=f"{setting.description} (default: {setting.default!r})")


def _render_settings(args: argparse.Namespace) -> dict:
    """``RenderOptions`` keyword arguments of the renderer flags given."""
    from efc_core.edge.render import RENDER_FIELDS

    return {setting.name: getattr(args, setting.name) for setting in RENDER_FIELDS
            if getattr(args, setting.name) is not None}


def build_perceptor(args: argparse.Namespace):
    """The same ``Perceptor`` the node builds, from the ``PerceptorConfig`` flags.

    Every setting comes from its flag (``--backend/--model/--input-size/--resize-mode/
    --max-frame-gap/--streaming/--threads`` ...), the node's defaults for the flags left out.
    """
    from efc_core.perceptor_config import build_perceptor as build
    from efc_ros.perceptor_args import perceptor_config_from_args

    return build(perceptor_config_from_args(args))


def _make_synthetic(args: argparse.Namespace) -> int:
    from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag

    height, width = parse_size_wh(args.size)
    options = SyntheticBagOptions(width=width, height=height, num_frames=args.frames, fps=args.fps,
                                  encoding=args.encoding, storage=args.storage, seed=args.seed, frame_id=args.frame_id)
    path = make_synthetic_bag(args.output, options, overwrite=args.overwrite)
    print(f"wrote {options.num_frames} frames ({width}x{height}, {args.encoding}, {args.storage}) to {path}")
    return 0


def _process(args: argparse.Namespace) -> int:
    from efc_ros.output_paths import check_output_apart, check_replaceable, check_writable_file
    from efc_ros.bag.process import bag_render_options, process_bag
    from efc_ros.image_conversions import DEFAULT_MAX_IMAGE_PIXELS

    # Every output is checked before the model loads: a bad path fails in a second, not after the bag.
    check_output_apart(args.output, [args.input])
    check_replaceable(args.output, args.overwrite, what="bag")
    if args.json:
        check_output_apart(args.json, [args.input])
        check_writable_file(args.json)
    max_pixels = DEFAULT_MAX_IMAGE_PIXELS if args.max_image_pixels is None else args.max_image_pixels
    perceptor = build_perceptor(args)
    render_options = bag_render_options(perceptor, colors=not args.no_color, **_render_settings(args))
    with _progress("process") as progress_bar:
        stats = process_bag(args.input, args.output, perceptor, topic=args.topic, storage=args.storage,
                            colors=not args.no_color, overwrite=args.overwrite, progress=progress_bar,
                            max_image_pixels=max_pixels, render_options=render_options)
    summary = stats.as_dict()
    shares = ", ".join(f"{k} {v * 100:.0f}%" for k, v in summary["share"].items())
    print(f"processed {stats.frames} frames ({stats.pairs} pairs) at {summary['frames_per_second']:.1f} frames/s; "
          f"time: {shares}; wrote {args.output}")
    if stats.integrity.total:
        _warn(stats.integrity.summary())
    if stats.skipped_frames:
        counts = ", ".join(f"{reason} {count}" for reason, count in sorted(stats.skipped_frames.items()))
        _warn(f"skipped {sum(stats.skipped_frames.values())} camera frame(s) ({counts}); "
              f"first: {stats.skip_details[0]}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from efc_ros.bag.evaluate import evaluate_bag, markdown_report, write_report

    check_report_folder(args.output, args.bag, args.overwrite)
    report, state = evaluate_bag(args.bag, camera_topic=args.topic, num_classes=args.num_classes)
    paths = write_report(report, state, args.output)
    print(markdown_report(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    _warn_integrity(report)
    return 0


def check_report_folder(folder: Path, bag: Path, overwrite: bool) -> None:
    """Refuse a report folder that would replace a report without ``--overwrite``, or touch the bag."""
    from efc_ros.bag.evaluate import REPORT_FILES
    from efc_ros.output_paths import check_output_apart, check_replaceable, check_writable_file

    check_output_apart(folder, [bag])
    check_replaceable(folder, overwrite, what="report", keep_names=REPORT_FILES)
    check_writable_file(folder / "report.json")


def _warn(message: str) -> None:
    print(f"efc: warning: {message}", file=sys.stderr)


def _warn_integrity(report: dict) -> None:
    for line in report.get("integrity", {}).get("warnings", []):
        _warn(line)


def _replay(args: argparse.Namespace) -> int:
    from efc_ros.bag.evaluate import evaluate_bag, markdown_report, write_report
    from efc_ros.bag.replay import ReplayOptions, replay_bag

    report_folder = args.report or args.output.with_name(args.output.name + "_report")
    check_report_folder(report_folder, args.input, args.overwrite)
    options = ReplayOptions(namespace=args.namespace, rate=args.rate, reliable=not args.best_effort)
    counts = replay_bag(args.input, args.output, options, topic=args.topic, overwrite=args.overwrite)
    print(f"published {counts['published']} frames, received {counts['received']}")
    if counts["integrity"].total:
        _warn(counts["integrity"].summary())
    report, state = evaluate_bag(args.output)
    paths = write_report(report, state, report_folder)
    print(markdown_report(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    _warn_integrity(report)
    return 0


def _from_video(args: argparse.Namespace) -> int:
    import os

    # FFmpeg logs its own reasons ("moov atom not found") on stderr; the one-line error says it all.
    # Read when OpenCV first opens a capture, i.e. inside this command.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    from efc_ros.bag.from_video import VideoBagOptions, video_to_bag

    options = VideoBagOptions(
        topic=args.topic, compressed=args.compressed, frame_id=args.frame_id, max_frames=args.max_frames,
        size=parse_size_wh(args.resize) if args.resize else None, fps=args.fps, storage=args.storage,
    )
    bars: list = []  # created at the first frame, so a failed start prints only the error line

    def progress(done: int, total: int | None) -> None:
        if not bars:
            try:
                from tqdm import tqdm
            except ImportError:  # a development dependency: no bar without it
                return
            bars.append(tqdm(desc="from-video", unit="frame", total=total, leave=False))
        bars[0].update(done - bars[0].n)

    try:
        result = video_to_bag(args.video, args.output, options, overwrite=args.overwrite, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    kind = "CompressedImage jpeg" if args.compressed else "Image rgb8"
    print(f"wrote {result.frames} frames ({result.width}x{result.height}, {kind}, {result.fps:g} fps, "
          f"{result.duration_s:.2f} s) on {result.topic} to {result.path}")
    return 0


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None] | None]:
    """A tqdm progress callback on a terminal (tqdm is a development dependency), closed on exit.

    The bar is created at the first frame and only on a terminal, so an error at start-up, or
    output piped to a file, never carries a bar fragment before ``efc: error: ...``.
    """
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    bars: list = []

    def update(done: int) -> None:
        if not bars:
            bars.append(tqdm(desc=description, unit="frame", leave=False, disable=None))
        bars[0].n = done
        bars[0].refresh()

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()
