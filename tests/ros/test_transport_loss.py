"""Transport loss from header-stamp gaps (efc_ros.transport_loss) and its place in /diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from efc_ros.diagnostics import NodeStatistics, status_values
from efc_ros.dds_profile import (
    CHOICE_ENV_VAR,
    PROFILE_ENV_VARS,
    profile_environment,
    shipped_profile,
    use_large_image_profile,
)
from efc_ros.transport_loss import TransportLossEstimator

PERIOD_NS = 33_333_333


def _stamps(indices) -> list[int]:
    return [1_000_000_000_000 + int(i) * PERIOD_NS for i in indices]


def test_a_camera_losing_80_percent_is_counted_from_the_gaps() -> None:
    rng = np.random.default_rng(1)
    arrived = sorted(rng.choice(600, size=120, replace=False))  # 80 % of 600 frames lost
    estimator = TransportLossEstimator()
    lost = sum(estimator.observe(stamp, "cam") for stamp in _stamps(arrived))
    # Frames missing between the first and the last arrival; the first gaps only estimate the period.
    missing = (arrived[-1] - arrived[0]) - (len(arrived) - 1)
    assert 0.85 * missing <= lost <= missing
    assert estimator.camera_rate_hz() == pytest.approx(30.0, rel=0.01)


def test_steady_jittery_stamps_pauses_and_loops_are_not_loss() -> None:
    rng = np.random.default_rng(2)
    estimator = TransportLossEstimator(max_gap_s=2.0)
    jittered = [s + int(rng.integers(-3_000_000, 3_000_000)) for s in _stamps(range(100))]
    assert sum(estimator.observe(s, "cam") for s in jittered) == 0
    assert estimator.observe(jittered[-1] + 5_000_000_000, "cam") == 0      # a 5 s pause
    assert estimator.observe(jittered[0], "cam") == 0                        # bag loop: time goes back
    assert estimator.observe(jittered[0], "cam") == 0                        # repeated stamp
    assert estimator.observe(jittered[0] + 3 * PERIOD_NS, "cam") == 2        # then two frames missing
    assert estimator.observe(jittered[0], "other") == 0                      # streams are per frame_id


def test_diagnostics_warn_when_the_camera_rate_hides_transport_loss() -> None:
    now = [0.0]
    stats = NodeStatistics(clock=lambda: now[0])
    arrived = sorted(np.random.default_rng(3).choice(300, size=60, replace=False))  # 80 % lost, at random
    for index in arrived:
        now[0] = index / 30.0
        stats.record_received(_stamps([index])[0], "cam")
        stats.record_processed({"inference": 50.0}, pair_reset=False)
    now[0] = 300 / 30.0
    status = stats.report(name="n", hardware_id="h", info={}, period_s=10.0)
    values = status_values(status)
    assert status.level == DiagnosticStatus.WARN and "lost before reaching the node" in status.message
    missing = (arrived[-1] - arrived[0]) - (len(arrived) - 1)
    assert 0.8 * missing <= int(values["frames_lost_in_transport"]) <= missing
    assert float(values["transport_loss_percent"]) > 65
    assert float(values["camera_rate_hz"]) == pytest.approx(30.0, rel=0.01)
    assert float(values["input_rate_hz"]) == pytest.approx(6.0, rel=0.05)


def test_profile_selection_respects_the_user(tmp_path) -> None:
    environ: dict[str, str] = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert use_large_image_profile(environ) == shipped_profile(localhost=True)
    assert all(environ[name] == str(shipped_profile(localhost=True)) for name in PROFILE_ENV_VARS)
    own = tmp_path / "own.xml"
    own.write_text("<dds/>")
    environ = {"FASTRTPS_DEFAULT_PROFILES_FILE": str(own)}  # Humble spelling set by the user: kept, copied
    assert use_large_image_profile(environ) == own and environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(own)
    environ = {CHOICE_ENV_VAR: "none"}
    assert use_large_image_profile(environ) is None and not any(name in environ for name in PROFILE_ENV_VARS)
    assert use_large_image_profile({}) == shipped_profile(localhost=False)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        use_large_image_profile({CHOICE_ENV_VAR: str(tmp_path / "missing.xml")})
    off = profile_environment(None, {"FASTDDS_DEFAULT_PROFILES_FILE": "x"})
    assert off[CHOICE_ENV_VAR] == "none" and "FASTDDS_DEFAULT_PROFILES_FILE" not in off


def test_shipped_profiles_are_valid_and_size_the_segment_for_large_outputs() -> None:
    import xml.etree.ElementTree as ElementTree

    namespace = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    for localhost in (False, True):
        root = ElementTree.parse(shipped_profile(localhost=localhost)).getroot()
        descriptors = {d.findtext("f:transport_id", namespaces=namespace): d
                       for d in root.iterfind(".//f:transport_descriptor", namespace)}
        shm = next(d for d in descriptors.values() if d.findtext("f:type", namespaces=namespace) == "SHM")
        # A 1920x1080 flow image (32FC2) is 16.6 MB; all outputs of such a frame about 48 MB.
        assert int(shm.findtext("f:segment_size", namespaces=namespace)) >= 48 * 1024 * 1024
        udp = next(d for d in descriptors.values() if d.findtext("f:type", namespaces=namespace) == "UDPv4")
        whitelist = [a.text for a in udp.iterfind(".//f:address", namespace)]
        assert whitelist == (["127.0.0.1"] if localhost else [])
        participant = root.find(".//f:participant", namespace)
        assert participant.get("is_default_profile") == "true"
        assert participant.findtext(".//f:useBuiltinTransports", namespaces=namespace) == "false"
        used = [t.text for t in participant.iterfind(".//f:userTransports/f:transport_id", namespace)]
        assert sorted(used) == sorted(descriptors)
