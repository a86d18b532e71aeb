"""Real file-system conditions for the data-safety tests: a read-only folder, a file in place of a folder.

Root ignores permission bits, so ``chmod`` alone does not make a folder read-only for root: as
root the folder is bind-mounted read-only onto itself (a real ``EROFS`` file system); as another
user ``chmod 0o555`` is enough. When neither works the test is skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _is_writable(folder: Path) -> bool:
    probe = folder / ".write_probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only_folder(parent: Path) -> Iterator[Path]:
    """A folder under ``parent`` in which nothing can be created; cleaned up afterwards."""
    folder = parent / "read_only"
    folder.mkdir()
    (folder / "existing.txt").write_text("kept\n")
    mounted = False
    if os.geteuid() == 0:
        mount = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
        if mount.returncode == 0:
            mounted = True
            remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True, text=True)
            if remount.returncode != 0:
                subprocess.run(["umount", str(folder)], check=False)
                mounted = False
    else:
        folder.chmod(0o555)
    try:
        if _is_writable(folder):
            pytest.skip("cannot make a read-only folder here (root without mount rights)")
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o755)
