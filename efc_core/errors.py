"""Domain exceptions that callers (the ROS node, the CLI) catch and report in one line."""


class EfcError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelError(EfcError):
    """A model file, manifest or checkpoint is missing, unreadable or inconsistent."""


class BackendError(EfcError):
    """An inference backend cannot be created or failed to run."""


class InputError(EfcError, ValueError):
    """An input image, message or bag cannot be used (bad encoding, size, corrupt data)."""
