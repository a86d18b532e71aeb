"""The shipped Fast DDS profile for camera-sized images, and the environment that selects it.

Fast DDS reads its default participant profile from ``FASTDDS_DEFAULT_PROFILES_FILE`` (Fast DDS 3,
ROS 2 Kilted and later) or ``FASTRTPS_DEFAULT_PROFILES_FILE`` (Fast DDS 2, Humble and Jazzy) when a
process creates its first participant, i.e. at ``rclpy.init``/node creation. Both are set, so the
same environment works on every target distro. See ``config/fastdds_large_images*.xml`` and the
README section "Large images over DDS" for why the default shared-memory segment loses 640x480
images under best-effort QoS.

``EFC_DDS_PROFILE`` overrides what the efc tools choose: ``none`` (or ``off``) leaves Fast DDS at
its defaults, a path selects that file. A profile variable the user already set always wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, MutableMapping

PROFILE_ENV_VARS: tuple[str, ...] = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: SHM with a large segment + UDPv4 on every interface (robots with remote viewers).
LARGE_IMAGES_PROFILE = "fastdds_large_images.xml"
#: The same with UDPv4 on 127.0.0.1 only (tests, CI, benchmarks, ROS_LOCALHOST_ONLY setups).
LARGE_IMAGES_LOCALHOST_PROFILE = "fastdds_large_images_localhost.xml"
CHOICE_ENV_VAR = "EFC_DDS_PROFILE"
_OFF = ("none", "off", "false", "0")
PACKAGE_NAME = "efc_ros"


def config_directories() -> list[Path]:
    """Folders that may hold the shipped profiles: the installed share folder, then the checkout."""
    directories: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            directories.append(Path(get_package_share_directory(PACKAGE_NAME)) / "config")
        except (PackageNotFoundError, OSError):  # no sourced ROS environment
            pass
    except ImportError:  # ament_index_python is absent outside ROS installs
        pass
    directories.append(Path(__file__).resolve().parents[1] / "config")
    return directories


def shipped_profile(*, localhost: bool = False) -> Path:
    """Path of the shipped large-image profile (the loopback-only variant with ``localhost``).

    Raises:
        FileNotFoundError: neither the install nor the checkout has it (names the places looked in).
    """
    name = LARGE_IMAGES_LOCALHOST_PROFILE if localhost else LARGE_IMAGES_PROFILE
    candidates = [directory / name for directory in config_directories()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fast DDS profile {name} not found in {', '.join(str(c.parent) for c in candidates)}")


def wants_localhost(environ: Mapping[str, str]) -> bool:
    """True when the environment restricts ROS 2 to this machine (either distro's spelling)."""
    return environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST" or \
        environ.get("ROS_LOCALHOST_ONLY", "") == "1"


def profile_environment(profile: str | Path | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with both profile variables set to ``profile``,
    or with them removed and ``EFC_DDS_PROFILE=none`` when ``profile`` is None (Fast DDS defaults).
    """
    environ = dict(os.environ if base is None else base)
    for name in PROFILE_ENV_VARS:
        environ.pop(name, None)
    if profile is None:
        environ[CHOICE_ENV_VAR] = "none"
    else:
        environ.pop(CHOICE_ENV_VAR, None)
        for name in PROFILE_ENV_VARS:
            environ[name] = str(profile)
    return environ


def use_large_image_profile(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Select the large-image profile in ``environ`` (default ``os.environ``) before rclpy starts.

    A profile variable already set is kept (and copied to the other spelling); ``EFC_DDS_PROFILE``
    = ``none`` selects nothing, = a path selects that file; otherwise the shipped profile, its
    loopback-only variant when the environment is restricted to localhost.

    Returns:
        The profile now in effect, or None for Fast DDS's defaults.

    Raises:
        FileNotFoundError: ``EFC_DDS_PROFILE`` names a file that does not exist.
    """
    environ = os.environ if environ is None else environ
    for name in PROFILE_ENV_VARS:
        if environ.get(name):
            chosen = Path(environ[name])
            break
    else:
        choice = environ.get(CHOICE_ENV_VAR, "").strip()
        if choice.lower() in _OFF:
            return None
        if choice:
            chosen = Path(choice).expanduser()
            if not chosen.is_file():
                raise FileNotFoundError(f"{CHOICE_ENV_VAR}={choice!r}: no such Fast DDS profile file")
        else:
            try:
                chosen = shipped_profile(localhost=wants_localhost(environ))
            except FileNotFoundError:
                return None  # a partial install: Fast DDS defaults, as without this module
    for name in PROFILE_ENV_VARS:
        environ.setdefault(name, str(chosen))
    return chosen
