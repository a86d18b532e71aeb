"""The EFC network (torch tier): presets, composition, export wrappers, checkpoints."""

from efc_core.model.config import PRESETS, ModelConfig
from efc_core.model.efc_net import EFCNet, build_model
from efc_core.model.outputs import EFCOutput, EncoderFeatures, FlowPrediction
from efc_core.model.wrappers import EncoderWrapper, InferenceWrapper, PairDecoderWrapper

__all__ = [
    "PRESETS",
    "ModelConfig",
    "EFCNet",
    "build_model",
    "EFCOutput",
    "EncoderFeatures",
    "FlowPrediction",
    "EncoderWrapper",
    "InferenceWrapper",
    "PairDecoderWrapper",
]
