"""The model manifest: a JSON sidecar that tells the runtime how to feed and read an export.

Where the manifest lives (``manifest_path_for``):

* ``X.onnx`` -> ``X.json`` (for ``X.encoder.onnx`` / ``X.decoder.onnx`` also ``X.json``);
* ``X.engine`` -> ``X.engine.json``, the engine's sidecar written by the TensorRT builder; it holds
  the key fields (GPU, TensorRT version, precision, ONNX hash) and the ONNX manifest under
  ``"manifest"``, so an engine is self-describing even when the ONNX file is not shipped;
* a ``.json`` path is the manifest (or engine sidecar) itself.

``load_manifest`` validates every key's type and raises ``ModelError`` naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from efc_core.contract import (
    ENCODER_FEATURES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_CUR,
    INPUT_IMAGE,
    INPUT_PREV,
    OUTPUT_NAMES,
    PAD_MODES,
    PAD_MULTIPLE,
    UNRECORDED_PAD_MODE,
    FlowDirection,
    padded_size,
)
from efc_core.errors import ModelError

FORMAT_VERSION = 1
GRAPH_KINDS: tuple[str, ...] = ("single", "encoder", "decoder")
#: Keys a manifest file must contain; everything else has a default.
REQUIRED_KEYS: tuple[str, ...] = ("model_name", "graphs", "input_height", "input_width", "num_classes")


@dataclass(kw_only=True)
class Manifest:
    """Everything needed to run an exported EFC model without PyTorch (docs/DEPLOY.md, Export).

    ``graphs`` maps ``"single"`` and/or ``"encoder"`` + ``"decoder"`` to file names relative to the
    manifest. ``input_height`` / ``input_width`` of None mean a dynamic model that accepts any
    multiple of ``pad_multiple``. ``mean`` / ``std`` apply to RGB values on [0, 1]. ``pad_mode``
    (``contract.PAD_MODES``) is how the model pads its input up to the multiple; every backend's
    preprocessing pads the same way. A manifest without it was written before it was recorded and
    loads with ``"zeros"``, the padding the runtime used then.
    """

    model_name: str
    graphs: dict[str, str]
    input_height: int | None
    input_width: int | None
    num_classes: int
    format_version: int = FORMAT_VERSION
    preset: str = ""
    pad_multiple: int = PAD_MULTIPLE
    pad_mode: str = UNRECORDED_PAD_MODE
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_names: list[str] = field(default_factory=lambda: [INPUT_PREV, INPUT_CUR])
    output_names: list[str] = field(default_factory=lambda: list(OUTPUT_NAMES))
    feature_names: list[str] = field(default_factory=lambda: list(ENCODER_FEATURES))
    dtypes: dict[str, str] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    flow_direction: str = FlowDirection.FORWARD.value
    opset: int = 17
    checkpoint_sha256: str = ""
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: What the model was trained on and under which terms: ``{"name", "what", "terms"}`` per source.
    training_data: list[dict[str, str]] = field(default_factory=list)
    #: Where the manifest was read from (not serialised); graph paths are relative to its folder.
    source_path: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _validate(self, where=self._where())

    # --- derived values -------------------------------------------------------------------

    @property
    def is_dynamic(self) -> bool:
        """True when the model accepts any input size that is a multiple of ``pad_multiple``."""
        return self.input_height is None or self.input_width is None

    @property
    def direction(self) -> FlowDirection:
        return FlowDirection.parse(self.flow_direction)

    @property
    def has_streaming(self) -> bool:
        """True when an encoder + decoder pair is exported (each frame encoded once)."""
        return "encoder" in self.graphs and "decoder" in self.graphs

    def graph_path(self, kind: str) -> Path:
        """Absolute path of graph ``kind`` ("single", "encoder", "decoder"); ``ModelError`` if absent."""
        if kind not in self.graphs:
            raise ModelError(f"manifest {self._where()} has no {kind!r} graph (graphs: {sorted(self.graphs)})")
        base = self.source_path.parent if self.source_path is not None else Path.cwd()
        return (base / self.graphs[kind]).resolve()

    def dtype_of(self, name: str) -> str:
        """Element type of tensor ``name`` ("float32" unless the manifest says otherwise)."""
        return self.dtypes.get(name, "float32")

    def expected_io(self, kind: str) -> tuple[list[str], list[str]]:
        """Input and output names graph ``kind`` must have, per this manifest and the contract."""
        if kind == "single":
            return list(self.input_names), list(self.output_names)
        if kind == "encoder":
            return [INPUT_IMAGE], list(self.feature_names)
        if kind == "decoder":
            inputs = [f"{which}_{name}" for which in (INPUT_PREV, INPUT_CUR) for name in self.feature_names]
            return inputs, list(self.output_names)
        raise ValueError(f"unknown graph kind {kind!r}; expected one of {GRAPH_KINDS}")

    def check_graph_io(self, input_names: Sequence[str], output_names: Sequence[str], kind: str = "single") -> None:
        """Raise ``ModelError`` when a model file's actual input/output names differ from the manifest.

        Names are compared as sets (tensors are fed and read by name), and the message lists
        what is missing and what is unexpected.
        """
        want_in, want_out = self.expected_io(kind)
        problems = []
        for label, have, want in (("inputs", input_names, want_in), ("outputs", output_names, want_out)):
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            if missing or extra:
                problems.append(f"{label}: model has {list(have)}, manifest expects {want} "
                                f"(missing {missing}, unexpected {extra})")
        if problems:
            raise ModelError(f"{kind} graph does not match manifest {self._where()}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``source_path`` left out)."""
        data = asdict(self)
        data.pop("source_path")
        return data

    def _where(self) -> str:
        if self.source_path is not None:
            return str(self.source_path)
        return f"of model {self.model_name!r}" if isinstance(self.model_name, str) else "(in memory)"


def _fail(where: str, key: str, problem: str) -> ModelError:
    return ModelError(f"manifest {where}: key {key!r} {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_str_list(where: str, key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(where, key, f"must be a list of strings, got {value!r}")


def _validate(manifest: Manifest, where: str) -> None:
    """Type and consistency checks shared by construction and loading."""
    if not _is_int(manifest.format_version) or manifest.format_version > FORMAT_VERSION:
        raise _fail(where, "format_version", f"must be an int <= {FORMAT_VERSION}, got {manifest.format_version!r}")
    if not isinstance(manifest.model_name, str) or not manifest.model_name:
        raise _fail(where, "model_name", f"must be a non-empty string, got {manifest.model_name!r}")
    graphs = manifest.graphs
    if not isinstance(graphs, dict) or not all(isinstance(v, str) for v in graphs.values()):
        raise _fail(where, "graphs", f"must map graph kinds to file names, got {graphs!r}")
    unknown = sorted(set(graphs) - set(GRAPH_KINDS))
    if unknown or not graphs:
        raise _fail(where, "graphs", f"must use kinds {GRAPH_KINDS}, got {sorted(graphs)}")
    if ("encoder" in graphs) != ("decoder" in graphs):
        raise _fail(where, "graphs", f"needs both 'encoder' and 'decoder' or neither, got {sorted(graphs)}")
    if not _is_int(manifest.pad_multiple) or manifest.pad_multiple <= 0:
        raise _fail(where, "pad_multiple", f"must be a positive int, got {manifest.pad_multiple!r}")
    if manifest.pad_mode not in PAD_MODES:
        raise _fail(where, "pad_mode", f"must be one of {PAD_MODES}, got {manifest.pad_mode!r}")
    for key in ("input_height", "input_width"):
        value = getattr(manifest, key)
        if value is not None and (not _is_int(value) or value <= 0
                                  or padded_size(value, value, manifest.pad_multiple)[0] != value):
            raise _fail(where, key, f"must be null or a positive multiple of pad_multiple="
                                    f"{manifest.pad_multiple}, got {value!r}")
    if (manifest.input_height is None) != (manifest.input_width is None):
        raise _fail(where, "input_height", "and input_width must both be set or both be null")
    for key in ("mean", "std"):
        value = getattr(manifest, key)
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
            raise _fail(where, key, f"must be a list of 3 numbers, got {value!r}")
    if any(v <= 0 for v in manifest.std):
        raise _fail(where, "std", f"must be positive, got {manifest.std!r}")
    for key in ("input_names", "output_names", "feature_names", "class_names"):
        _check_str_list(where, key, getattr(manifest, key))
    if len(manifest.input_names) != 2:
        raise _fail(where, "input_names", f"must name the two inputs (prev, cur), got {manifest.input_names!r}")
    if sorted(manifest.output_names) != sorted(OUTPUT_NAMES):
        raise _fail(where, "output_names", f"must be {list(OUTPUT_NAMES)}, got {manifest.output_names!r}")
    bad_features = sorted(set(manifest.feature_names) - set(ENCODER_FEATURES))
    if bad_features:
        raise _fail(where, "feature_names", f"has unknown features {bad_features}; allowed {ENCODER_FEATURES}")
    if not isinstance(manifest.dtypes, dict) or not all(
        isinstance(v, str) and v in ("float32", "float16") for v in manifest.dtypes.values()
    ):
        raise _fail(where, "dtypes", f"must map names to 'float32'/'float16', got {manifest.dtypes!r}")
    if not _is_int(manifest.num_classes) or manifest.num_classes < 1 or manifest.num_classes > 255:
        raise _fail(where, "num_classes", f"must be an int in [1, 255] (uint8 labels), got {manifest.num_classes!r}")
    if manifest.class_names and len(manifest.class_names) != manifest.num_classes:
        raise _fail(where, "class_names", f"has {len(manifest.class_names)} names for "
                                          f"num_classes={manifest.num_classes}")
    palette = manifest.palette
    if not isinstance(palette, list) or not all(
        isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c) for c in palette
    ):
        raise _fail(where, "palette", "must be a list of [r, g, b] ints in [0, 255]")
    if palette and len(palette) < manifest.num_classes:
        raise _fail(where, "palette", f"has {len(palette)} colours for num_classes={manifest.num_classes}")
    try:
        FlowDirection.parse(manifest.flow_direction)
    except ValueError as error:
        raise _fail(where, "flow_direction", str(error)) from None
    if not _is_int(manifest.opset):
        raise _fail(where, "opset", f"must be an int, got {manifest.opset!r}")
    if not isinstance(manifest.checkpoint_sha256, str):
        raise _fail(where, "checkpoint_sha256", f"must be a string, got {manifest.checkpoint_sha256!r}")
    for key in ("training_config", "metrics"):
        if not isinstance(getattr(manifest, key), dict):
            raise _fail(where, key, f"must be an object, got {getattr(manifest, key)!r}")
    if not isinstance(manifest.training_data, list) or not all(
            isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())
            for entry in manifest.training_data):
        raise _fail(where, "training_data", f"must be a list of objects of strings, got {manifest.training_data!r}")


_FIELD_NAMES = {f.name for f in fields(Manifest)} - {"source_path"}


def manifest_from_dict(data: Mapping[str, Any], source_path: str | Path | None = None) -> Manifest:
    """Build a validated ``Manifest`` from a parsed JSON object; ``ModelError`` naming the bad key."""
    where = str(source_path) if source_path is not None else "(in memory)"
    if not isinstance(data, Mapping):
        raise ModelError(f"manifest {where}: must be a JSON object, got {type(data).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ModelError(f"manifest {where}: missing required key(s) {missing}")
    unknown = sorted(set(data) - _FIELD_NAMES)
    if unknown:
        raise ModelError(f"manifest {where}: unknown key(s) {unknown}")
    values = dict(data)
    resolved = Path(source_path).resolve() if source_path is not None else None
    return Manifest(**values, source_path=resolved)  # __post_init__ validates every key


def manifest_path_for(model_path: str | Path) -> Path:
    """The manifest (or engine sidecar) that describes ``model_path``.

    ``X.onnx`` -> ``X.json``, ``X.encoder.onnx`` -> ``X.json`` when ``X.encoder.json`` does not
    exist, ``X.engine`` -> ``X.engine.json``, ``X.json`` -> itself. Other suffixes (checkpoints)
    -> ``X.json``. The returned path may not exist.
    """
    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return path
    if suffix == ".engine":
        return path.with_name(path.name + ".json")
    direct = path.with_suffix(".json")
    stem = path.with_suffix("")
    if not direct.exists() and stem.suffix in (".encoder", ".decoder", ".single"):
        return stem.with_suffix(".json")
    return direct


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest from ``path`` (a manifest, an engine sidecar, or a model file next to one).

    Raises:
        ModelError: the file is missing or unreadable, or a key is missing or has a bad value
            (the message names the file and the key).
    """
    manifest_path = manifest_path_for(path)
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"manifest {manifest_path} not found for model {path} "
                         "(export writes it next to the model)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"manifest {manifest_path} is unreadable: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("manifest"), dict):
        # An engine sidecar: the model's manifest is nested; graph paths keep meaning relative to
        # the sidecar's folder, where the builder writes the engine.
        data = data["manifest"]
    return manifest_from_dict(data, manifest_path)


def save_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write ``manifest`` as indented JSON to ``path`` (a ``.json`` file or the model file it
    describes) and return the manifest path.
    """
    manifest_path = manifest_path_for(path)
    manifest_path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return manifest_path
