"""ONNX Runtime backend: the CPU path (and CUDA where onnxruntime-gpu is installed).

One ``InferenceSession`` per graph of the manifest, created once, with every graph optimisation
(``ORT_ENABLE_ALL``) and a configurable intra-op thread count (docs/DEPLOY.md, Runtime). Graph inputs
and outputs are checked against the manifest when the session opens, and every output is checked
for NaN/Inf after each run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from efc_core.contract import INPUT_CUR, INPUT_IMAGE, INPUT_PREV
from efc_core.errors import BackendError, ModelError
from efc_core.manifest import Manifest, load_manifest
from efc_core.runtime.base import (
    Features,
    ModelOutputs,
    check_image_tensor,
    check_finite,
    outputs_from_named,
    precision_from_dtypes,
)

#: Providers tried in this order when the caller does not choose.
PREFERRED_PROVIDERS: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendError(f"backend 'onnxruntime' needs the onnxruntime package ({error}); "
                           "pip install onnxruntime (or onnxruntime-gpu)") from None
    return onnxruntime


class OnnxRuntimeBackend:
    """Runs an exported EFC model with ONNX Runtime.

    Args:
        model_path: an ``.onnx`` graph listed in its manifest, or the manifest ``.json``.
        manifest: use this manifest instead of reading the sidecar.
        intra_op_threads: ONNX Runtime intra-op threads (0 = library default: all cores).
        threads: same as ``intra_op_threads`` (the torch backend's name, so that one option
            configures any CPU backend); give one or the other.
        providers: execution providers in priority order; default CUDA (if available), CPU.
        graphs: which of the manifest's graphs to open (default all of them).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        manifest: Manifest | None = None,
        intra_op_threads: int = 0,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        graphs: Sequence[str] | None = None,
    ) -> None:
        ort = _import_onnxruntime()
        if threads is not None:
            if intra_op_threads not in (0, threads):
                raise ValueError(f"threads={threads} contradicts intra_op_threads={intra_op_threads}")
            intra_op_threads = threads
        if not isinstance(intra_op_threads, int) or intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be an int >= 0, got {intra_op_threads!r}")
        model_path = Path(model_path)
        self.manifest = manifest if manifest is not None else load_manifest(model_path)
        kinds = list(graphs) if graphs is not None else list(self.manifest.graphs)
        self._check_model_is_listed(model_path, kinds)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in PREFERRED_PROVIDERS if p in available]
        else:
            unknown = [p for p in providers if p not in available]
            if unknown:
                raise BackendError(f"onnxruntime providers {unknown} are not available here (available: {available})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        # Encoder and decoder sessions run one after the other: a pool that spin-waits after its run
        # keeps the cores busy while the other session computes. Measured on the 2-core CI machine
        # (shipped model, 320x256): encode+decode 139 ms with spinning, 68 ms without; the single
        # graph is unaffected (85 vs 83 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions: dict[str, Any] = {}
        for kind in kinds:
            self._sessions[kind] = self._open(ort, kind, options, list(providers))
        self.providers = list(providers)
        self.precision = precision_from_dtypes(self.manifest)
        self.supports_streaming = "encoder" in self._sessions and "decoder" in self._sessions
        if "single" not in self._sessions and not self.supports_streaming:
            raise ModelError(f"no usable graph among {kinds}: need 'single' or 'encoder' + 'decoder'")

    def _check_model_is_listed(self, model_path: Path, kinds: list[str]) -> None:
        """A model file the manifest does not describe means the wrong manifest was picked up."""
        if model_path.suffix.lower() == ".json":
            return
        listed = {self.manifest.graph_path(kind) for kind in self.manifest.graphs}
        if model_path.resolve() not in listed:
            raise ModelError(f"manifest {self.manifest.source_path} does not list model {model_path} "
                             f"(its graphs: {self.manifest.graphs})")
        unknown = sorted(set(kinds) - set(self.manifest.graphs))
        if unknown:
            raise ModelError(f"graphs {unknown} requested but manifest {self.manifest.source_path} "
                             f"only has {sorted(self.manifest.graphs)}")

    def _open(self, ort: Any, kind: str, options: Any, providers: list[str]) -> Any:
        path = self.manifest.graph_path(kind)
        if not path.is_file():
            raise ModelError(f"{kind} graph {path} listed in manifest {self.manifest.source_path} does not exist")
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own pybind exception types
            raise ModelError(f"onnxruntime cannot load {kind} graph {path}: {error}") from None
        inputs = session.get_inputs()
        input_names = [tensor.name for tensor in inputs]
        output_names = [tensor.name for tensor in session.get_outputs()]
        try:
            self.manifest.check_graph_io(input_names, output_names, kind)
        except ModelError as error:
            raise ModelError(f"{path}: {error}") from None
        if not self.manifest.is_dynamic and kind in ("single", "encoder"):
            want = [self.manifest.input_height, self.manifest.input_width]
            for tensor in inputs:
                dims = list(tensor.shape[2:])
                if all(isinstance(d, int) for d in dims) and dims != want:
                    raise ModelError(f"{path}: input {tensor.name!r} is {dims[0]}x{dims[1]} but manifest "
                                     f"{self.manifest.source_path} says {want[0]}x{want[1]}")
        return session

    # --- running ----------------------------------------------------------------------------

    def _feed(self, name: str, array: np.ndarray) -> np.ndarray:
        dtype = self.manifest.dtype_of(name)
        return array if array.dtype == np.dtype(dtype) else array.astype(dtype)

    def _run(self, kind: str, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._sessions[kind].run(output_names, feeds)
        except KeyError:
            raise BackendError(f"onnxruntime backend has no open {kind!r} graph") from None
        except Exception as error:
            raise BackendError(f"onnxruntime failed running the {kind} graph: {error}") from None

    def infer(self, prev: np.ndarray, cur: np.ndarray) -> ModelOutputs:
        """Outputs for the pair; (1, 3, H, W) float32 normalised inputs (see ``Backend``)."""
        check_image_tensor(prev, INPUT_PREV, self.manifest)
        check_image_tensor(cur, INPUT_CUR, self.manifest)
        if prev.shape != cur.shape:
            raise ValueError(f"prev {prev.shape} and cur {cur.shape} must have the same shape")
        if "single" not in self._sessions:
            return self.decode(self.encode(prev), self.encode(cur))
        prev_name, cur_name = self.manifest.input_names
        names = list(self.manifest.output_names)
        arrays = self._run("single", names,
                           {prev_name: self._feed(prev_name, prev), cur_name: self._feed(cur_name, cur)})
        return outputs_from_named(dict(zip(names, arrays)), self.manifest, self.name, cur.shape[2:])

    def encode(self, image: np.ndarray) -> Features:
        """Encoder features of one image, in ``manifest.feature_names`` order."""
        check_image_tensor(image, INPUT_IMAGE, self.manifest)
        names = list(self.manifest.feature_names)
        features = self._run("encoder", names, {INPUT_IMAGE: self._feed(INPUT_IMAGE, image)})
        for name, feature in zip(names, features):
            check_finite(feature, name, self.name)
        return tuple(features)

    def decode(self, prev_features: Features, cur_features: Features) -> ModelOutputs:
        """Outputs for a pair from cached encoder features."""
        names = list(self.manifest.feature_names)
        if len(prev_features) != len(names) or len(cur_features) != len(names):
            raise ValueError(f"decode needs {len(names)} features per frame ({names}), "
                             f"got {len(prev_features)} and {len(cur_features)}")
        feeds = {f"{INPUT_PREV}_{name}": value for name, value in zip(names, prev_features)}
        feeds.update({f"{INPUT_CUR}_{name}": value for name, value in zip(names, cur_features)})
        outputs = list(self.manifest.output_names)
        arrays = self._run("decoder", outputs, feeds)
        return outputs_from_named(dict(zip(outputs, arrays)), self.manifest, self.name)

    def close(self) -> None:
        self._sessions.clear()
