"""Output paths that cannot destroy data: checked before anything is written or removed.

* ``check_output_apart``: an output that is, contains or lies inside an input is refused (the
  ``--overwrite`` of ``efc bag process IN IN`` would otherwise delete the input).
* ``check_replaceable``: what ``--overwrite`` may replace (a bag folder, a report folder, an empty
  folder), never an arbitrary folder or a file standing where a folder goes.
* ``check_writable_file``: a file output (``--json``) whose folder is made and probed up front,
  so a bad path fails before minutes of work instead of after.
* Staging folders (``.NAME.XXXX`` next to the output) carry a marker with the owning process id;
  ``remove_stale_staging`` deletes those whose process is gone (a run killed by SIGKILL or a power
  cut) and names the ones it cannot attribute.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from efc_core.errors import InputError

STAGING_MARKER = ".efc_staging"


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def check_output_apart(output: str | Path, inputs: Iterable[str | Path]) -> None:
    """``InputError`` when ``output`` is an input, contains one or lies inside one (symlinks resolved)."""
    target = _resolved(output)
    for source in inputs:
        original = _resolved(source)
        if target == original:
            raise InputError(f"output {output} is the input {source}: choose another output path")
        if original.is_relative_to(target):
            raise InputError(f"output {output} contains the input {source}: choose another output path")
        if target.is_relative_to(original):
            raise InputError(f"output {output} lies inside the input {source}: choose another output path")


def check_replaceable(path: Path, overwrite: bool, *, what: str, keep_names: tuple[str, ...] = ()) -> None:
    """Refuse to write over ``path`` unless ``overwrite`` and it is ours to replace.

    Args:
        what: "bag" (a folder with ``metadata.yaml``) or "report" (a folder whose files are all in
            ``keep_names``), used in the messages.
        keep_names: file names a report folder may hold and ``--overwrite`` may replace.
    """
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise InputError(f"output {path} is a file, not a {what} folder; remove it or choose another path")
    entries = [entry.name for entry in path.iterdir()]
    if not entries:
        return
    if not overwrite:
        raise InputError(f"output {path} already exists (use --overwrite)")
    ours = (what == "bag" and (path / "metadata.yaml").is_file()) or (
        what == "report" and all(name in keep_names for name in entries))
    if not ours:
        raise InputError(f"output {path} exists and is not a {what} written by efc; "
                         f"refusing to replace it even with --overwrite")


def check_writable_file(path: Path) -> None:
    """Make ``path``'s folder and probe that a file can be created there (``InputError`` naming why)."""
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None


def make_staging_folder(output: Path) -> Path:
    """A hidden folder next to ``output`` that carries the owner's pid (``InputError`` if impossible)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
        (staging / STAGING_MARKER).write_text(f"{os.getpid()}\n")
    except OSError as error:
        raise InputError(f"cannot write output {output}: {error.strerror or error}") from None
    return staging


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(output: Path) -> tuple[list[Path], list[Path]]:
    """Delete staging folders of ``output`` left by dead processes.

    Returns ``(removed, unknown)``: folders deleted, and hidden folders named like staging folders
    but without a readable marker (left in place, for the caller to report).
    """
    removed: list[Path] = []
    unknown: list[Path] = []
    if not output.parent.is_dir():
        return removed, unknown
    for candidate in output.parent.glob(f".{output.name}.*"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        marker = candidate / STAGING_MARKER
        try:
            pid = int(marker.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            unknown.append(candidate)
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed, unknown
