"""The ``efc`` command line: export, build-engine, verify, bench (and ``bag`` when installed).

Every expected failure (``EfcError``, ``ValueError``, ``OSError`` such as a read-only or full
disk) is reported as one line ``efc: error: <reason>`` on stderr with exit code 2, no traceback;
``verify`` exits 1 when a tolerance is exceeded. SIGTERM is handled like Ctrl-C: partial outputs
and staging folders are removed, exit code 143. Heavy libraries (torch, tensorrt) are imported inside the handlers that
need them, so ``efc --help`` and the numpy-only commands start fast on a robot.

Sizes on the command line are ``WIDTHxHEIGHT`` (``640x480``), as in ``efc bag``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

from efc_core.errors import EfcError
from efc_ros.cli_args import configure_cli_logging, parse_size_wh

PROGRAM = "efc"


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX (single graph + encoder/decoder pair) with its manifest",
        description="Writes OUTPUT (X.onnx), X.encoder.onnx, X.decoder.onnx and the manifest X.json.",
    )
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.pt)")
    parser.add_argument("output", type=Path, nargs="?", help="ONNX file to write (X.onnx); or use -o")
    parser.add_argument("-o", "--output", dest="output_option", type=Path, help="ONNX file to write (X.onnx)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--size",
                      help="fixed input WIDTHxHEIGHT, multiples of 64 (default: the training size or 320x256)")
    size.add_argument("--dynamic", action="store_true", help="dynamic height/width axes (multiples of 64)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 16 or 17 (default 17)")
    parser.add_argument("--direction", default="forward", choices=["forward", "backward"],
                        help="flow direction of the export")
    parser.add_argument("--no-split", action="store_true", help="skip the streaming encoder/decoder graphs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export of the same name")
    parser.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from efc_core.runtime.engine_plan import check_opset

    # Checked before importing torch (seconds on a small CPU) so that bad input fails fast.
    check_opset(args.opset)
    output = args.output_option or args.output
    if output is None or (args.output_option and args.output and args.output_option != args.output):
        raise ValueError("give the ONNX output once: efc export CHECKPOINT -o MODEL.onnx")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} not found")
    _check_export_target(output, args.checkpoint, overwrite=args.overwrite)
    from efc_core.export.onnx_export import export_onnx

    height = width = None
    if args.size:
        height, width = parse_size_wh(args.size)
    manifest = export_onnx(args.checkpoint, output, height=height, width=width, dynamic=args.dynamic,
                           opset=args.opset, direction=args.direction, split=not args.no_split)
    size = "dynamic" if manifest.is_dynamic else f"{manifest.input_width}x{manifest.input_height}"
    print(f"exported {args.checkpoint} -> {', '.join(sorted(manifest.graphs.values()))} "
          f"({size}, opset {manifest.opset}, {manifest.num_classes} classes, {manifest.flow_direction} flow)")
    return 0


def _check_export_target(output: Path, checkpoint: Path, *, overwrite: bool) -> None:
    """Refuse to replace an export (X.onnx, X.encoder.onnx, X.decoder.onnx, X.json) or the checkpoint
    without ``--overwrite``, and probe that the folder is writable, before torch is imported.
    """
    from efc_ros.output_paths import check_output_apart, check_writable_file

    check_output_apart(output, [checkpoint])
    stem = output.name.removesuffix(".onnx")
    siblings = [output, output.with_name(f"{stem}.encoder.onnx"), output.with_name(f"{stem}.decoder.onnx"),
                output.with_name(f"{stem}.json")]
    existing = [str(path) for path in siblings if path.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exist(s) (use --overwrite to replace)")
    check_writable_file(output)


def _add_build_engine(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-engine", help="build a TensorRT engine from an ONNX export, on the target GPU",
        description="Names the engine by GPU, compute capability, TensorRT version and precision and writes "
                    "a sidecar X.engine.json; reuses a matching engine unless --force.",
    )
    parser.add_argument("onnx", type=Path, help="X.onnx (or X.encoder.onnx / X.decoder.onnx)")
    parser.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"])
    parser.add_argument("--output", type=Path, help="engine file or folder (default: next to the ONNX file)")
    parser.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace limit (MiB)")
    for which in ("min", "opt", "max"):
        parser.add_argument(f"--{which}-size", help=f"{which} WIDTHxHEIGHT of a dynamic model's profile")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file (default: next to the ONNX file)")
    calibration = parser.add_mutually_exclusive_group()
    calibration.add_argument("--calib-images", type=Path, help="INT8: folder of video frames (sorted order)")
    calibration.add_argument("--calib-synthetic", type=int, metavar="N", help="INT8: N synthetic video frames")
    parser.add_argument("--calib-cache", type=Path, help="INT8 calibration cache (default: <onnx>.int8.cache)")
    parser.add_argument("--no-tf32", action="store_true", help="disable TF32 in FP32 layers (TensorRT enables it)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching engine exists")
    parser.add_argument("--streaming", action="store_true",
                        help="also build the manifest's encoder and decoder graphs (the runtime's streaming path)")
    parser.set_defaults(handler=_run_build_engine)


def _run_build_engine(args: argparse.Namespace) -> int:
    from efc_core.export.tensorrt_build import build_engine

    sizes = [getattr(args, f"{which}_size") for which in ("min", "opt", "max")]
    shapes = [parse_size_wh(size) if size else None for size in sizes]
    graphs = [args.onnx]
    if args.streaming:
        from efc_core.manifest import load_manifest

        manifest = load_manifest(args.onnx)
        graphs += [manifest.graph_path("encoder"), manifest.graph_path("decoder")]
        if args.output is not None and not args.output.is_dir():
            raise ValueError(f"--streaming builds three engines: --output must be a folder, got {args.output}")
        if args.precision == "int8":
            raise ValueError("INT8 streaming is not supported: the decoder takes features, which the image "
                             "calibrator cannot produce; build the streaming pair in fp16")
    for graph in graphs:
        # Frames only (numpy): the calibrator itself is made inside build_engine, after the
        # TensorRT version check and on the --device the build runs on.
        calibration = _calibration_frames(args, graph) if args.precision == "int8" else None
        cache = args.calib_cache or graph.with_name(graph.name.removesuffix(".onnx") + ".int8.cache")
        engine = build_engine(graph, precision=args.precision, output=args.output, workspace_mb=args.workspace_mb,
                              min_shape=shapes[0], opt_shape=shapes[1], max_shape=shapes[2],
                              timing_cache=args.timing_cache, calibration=calibration,
                              calibration_cache=cache if calibration is not None else None, force=args.force,
                              device=args.device, tf32=not args.no_tf32)
        print(f"engine: {engine}")
    return 0


def _calibration_frames(args: argparse.Namespace, graph: Path):
    """INT8 calibration frames (``CalibrationSet``) for ``graph``'s image inputs at the model's size."""
    from efc_core.export.calibration import CalibrationSet
    from efc_core.manifest import load_manifest

    if args.calib_images is None and args.calib_synthetic is None:
        raise ValueError("--precision int8 needs --calib-images DIR or --calib-synthetic N")
    manifest = load_manifest(graph)
    names = ("image",) if graph.name.endswith(".encoder.onnx") else tuple(manifest.input_names)
    if graph.name.endswith(".decoder.onnx"):
        raise ValueError("the decoder graph takes features, not images: calibrate the single or encoder graph")
    if manifest.is_dynamic:
        if not args.opt_size:
            raise ValueError("INT8 on a dynamic model calibrates at --opt-size; give it")
        size = parse_size_wh(args.opt_size)
    else:
        size = (manifest.input_height, manifest.input_width)
    # The runtime's preprocessing (letterbox, the model's padding): calibrated on what it will see.
    norm = {"mean": tuple(manifest.mean), "std": tuple(manifest.std), "pad_mode": manifest.pad_mode}
    if args.calib_images is not None:
        data = CalibrationSet.from_image_folder(args.calib_images, size, names, **norm)
    else:
        data = CalibrationSet.synthetic(args.calib_synthetic, size, names, **norm)
    return data


def _add_bag(subparsers: argparse._SubParsersAction) -> None:
    """``efc bag ...`` lives in efc_ros.bag.cli when that part is installed."""
    try:
        from efc_ros.bag import cli as bag_cli
    except ModuleNotFoundError as error:
        if error.name not in ("efc_ros.bag", "efc_ros.bag.cli"):
            raise  # a real missing dependency inside the bag tools must not be hidden
        return
    bag_cli.add_parser(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """The ``efc`` parser with every subcommand registered."""
    from efc_ros import bench, verify

    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="EFC perception tools: export, TensorRT engines, backend verification, benchmarks."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_export(subparsers)
    _add_build_engine(subparsers)
    verify.add_parser(subparsers)
    bench.add_parser(subparsers)
    _add_bag(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so every ``finally`` and context manager cleans up."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _os_error_message(error: OSError) -> str:
    """``cannot write /x/y: Read-only file system`` style text for an ``OSError``."""
    reason = error.strerror or str(error) or type(error).__name__
    target = error.filename if error.filename is not None else ""
    return f"{reason}: {target}" if target else reason


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``efc``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_cli_logging(PROGRAM)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.handler(args) or 0)
    except (EfcError, ValueError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROGRAM}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # FileNotFoundError, PermissionError, read-only or full disk ...
        print(f"{PROGRAM}: error: {' '.join(_os_error_message(error).split())}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{PROGRAM}: terminated (SIGTERM); partial outputs removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
