"""Names, shapes and conventions shared by the model, its exports, the runtime and the node.

Tensor layout of every exported graph (see docs/METHOD.md §2 and §6):

* single graph ``prev``, ``cur``: (N, 3, H, W) float32 RGB, normalised with ``IMAGENET_MEAN`` /
  ``IMAGENET_STD`` on [0, 1] pixel values; H and W multiples of ``PAD_MULTIPLE``;
  outputs ``seg_logits`` (N, K, H, W) for ``cur``, ``flow`` (N, 2, H, W) in pixels,
  ``occlusion`` (N, 1, H, W) probability in [0, 1].
* streaming pair: an encoder graph ``image`` -> ``ENCODER_FEATURES`` run once per frame, and a
  decoder graph taking ``prev_<feature>`` and ``cur_<feature>`` for each feature, with the same
  three outputs as the single graph.
"""

from __future__ import annotations

import enum

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Every model input side must be a multiple of this (the flow pyramid's coarsest stride).
PAD_MULTIPLE: int = 64

#: How a frame is fitted into the model input: keep the aspect and pad, or scale each axis alone.
RESIZE_MODES: tuple[str, ...] = ("letterbox", "stretch")
#: What fills the padding up to the multiple: the edge pixels repeated, or zeros of the normalised
#: input (the mean colour). ``EFCNet`` pads with its ``ModelConfig.pad_mode``; an export records
#: it in the manifest and every backend's preprocessing pads the same way.
PAD_MODES: tuple[str, ...] = ("replicate", "zeros")
#: What a manifest that does not record ``pad_mode`` was run with (the runtime padded with zeros
#: before the manifest recorded the mode).
UNRECORDED_PAD_MODE: str = "zeros"


def padded_size(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """(height, width) rounded up to multiples of ``multiple``: the size the network runs at.

    The one place that computes the padding: the runtime's preprocessing, ``EFCNet``'s own padding
    and the export's default size all call it.
    """
    if multiple <= 0:
        raise ValueError(f"pad multiple must be a positive int, got {multiple!r}")
    return -(-int(height) // multiple) * multiple, -(-int(width) // multiple) * multiple


def check_padded_size(height: int, width: int, multiple: int = PAD_MULTIPLE, name: str = "input") -> None:
    """``ValueError`` naming ``name`` unless (height, width) are positive multiples of ``multiple``."""
    if height <= 0 or width <= 0 or (height, width) != padded_size(height, width, multiple):
        raise ValueError(f"{name} size {height}x{width} (HxW) must be positive multiples of {multiple} "
                         f"(pad_multiple)")


INPUT_PREV = "prev"
INPUT_CUR = "cur"
INPUT_IMAGE = "image"
OUTPUT_SEG_LOGITS = "seg_logits"
OUTPUT_FLOW = "flow"
OUTPUT_OCCLUSION = "occlusion"
OUTPUT_NAMES: tuple[str, str, str] = (OUTPUT_SEG_LOGITS, OUTPUT_FLOW, OUTPUT_OCCLUSION)

#: Encoder outputs (strides 4, 8, 16) that the streaming decoder consumes.
ENCODER_FEATURES: tuple[str, str, str] = ("feat4", "feat8", "feat16")

#: Label value excluded from every loss and metric.
IGNORE_LABEL: int = 255


class FlowDirection(str, enum.Enum):
    """Which flow an export produces (docs/METHOD.md §6)."""

    #: Flow prev -> cur on the previous frame's grid; occlusion marks prev pixels hidden in cur.
    FORWARD = "forward"
    #: Flow cur -> prev on the current frame's grid (for label propagation); occlusion marks cur
    #: pixels hidden in prev.
    BACKWARD = "backward"

    @classmethod
    def parse(cls, value: "str | FlowDirection") -> "FlowDirection":
        """Return the direction named ``value``; ``ValueError`` naming it otherwise."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(d.value for d in cls)
            raise ValueError(f"unknown flow direction {value!r}; expected one of: {choices}") from None


def decoder_input_name(which: str, feature: str) -> str:
    """Name of a streaming decoder input: ``which`` (prev or cur) joined with ``feature`` (e.g. feat8)."""
    if which not in (INPUT_PREV, INPUT_CUR):
        raise ValueError(f"which must be 'prev' or 'cur', got {which!r}")
    if feature not in ENCODER_FEATURES:
        raise ValueError(f"unknown encoder feature {feature!r}; expected one of {ENCODER_FEATURES}")
    return f"{which}_{feature}"
