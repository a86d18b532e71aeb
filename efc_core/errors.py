"""Domain exceptions that callers (the ROS node, the CLI) catch and report in one line."""


class EfcError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelError(EfcError):
    """A model file, manifest or checkpoint is missing, unreadable or inconsistent."""


class BackendError(EfcError):
    """An inference backend cannot be created or failed to run."""


class InputError(EfcError, ValueError):
    """An input image, message or bag cannot be used (bad encoding, size, corrupt data).

    ``kind`` names the problem in a word or two (``"encoding"``, ``"corrupt_image"``,
    ``"too_large"``, ``"duplicate_stamp"`` ...) so that callers can count each kind separately.
    """

    kind: str = "input"

    def __init__(self, message: str = "", *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
