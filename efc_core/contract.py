"""Names, shapes and conventions shared by the model, its exports, the runtime and the node.

Tensor layout of every exported graph (see METHOD.md §2 and §6):

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
    """Which flow an export produces (METHOD.md §6)."""

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
    """Name of a streaming decoder input, e.g. ``decoder_input_name("prev", "feat8")``."""
    if which not in (INPUT_PREV, INPUT_CUR):
        raise ValueError(f"which must be 'prev' or 'cur', got {which!r}")
    if feature not in ENCODER_FEATURES:
        raise ValueError(f"unknown encoder feature {feature!r}; expected one of {ENCODER_FEATURES}")
    return f"{which}_{feature}"
