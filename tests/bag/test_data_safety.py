"""Nothing lost, nothing wrong (issue 13): the real ``efc bag`` console runs against hostile paths.

Every case runs ``python -m efc_ros.cli`` in a subprocess on real files: the input bag passed as
its own output, a read-only folder (a read-only bind mount), a file where a folder goes, a real
SIGTERM / SIGKILL in the middle of ``bag process``, an existing report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag
from tests.fs_helpers import read_only_folder

REPO_ROOT = Path(__file__).resolve().parents[2]


def efc_command(*args) -> list[str]:
    return [sys.executable, "-m", "efc_ros.cli", *map(str, args)]


def run_efc(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(efc_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, exactly one stderr line ``efc: error: ...`` holding every fragment."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("efc: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    return make_synthetic_bag(tmp_path_factory.mktemp("safety") / "camera",
                              SyntheticBagOptions(width=64, height=48, num_frames=4))


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory) -> Path:
    """Long enough that ``bag process`` runs for seconds on the CI machine (to be killed midway)."""
    return make_synthetic_bag(tmp_path_factory.mktemp("safety_long") / "long",
                              SyntheticBagOptions(width=320, height=240, num_frames=60, with_ground_truth=False))


# ---- case 1: the input is never an output ----

def test_process_refuses_an_output_that_is_contains_or_lies_inside_the_input(tmp_path, small_bag, demo_model):
    before = folder_bytes(small_bag)
    assert_one_line_error(run_efc("bag", "process", small_bag, small_bag, "--overwrite", "--model", demo_model),
                          "is the input")
    assert_one_line_error(run_efc("bag", "process", small_bag, small_bag / "out", "--overwrite", "--model", demo_model),
                          "lies inside the input")
    assert_one_line_error(run_efc("bag", "process", small_bag, small_bag.parent, "--overwrite", "--model", demo_model),
                          "contains the input")
    single_file = next(small_bag.glob("*.mcap"))
    assert_one_line_error(run_efc("bag", "process", single_file, small_bag, "--overwrite", "--model", demo_model),
                          "contains the input")
    assert folder_bytes(small_bag) == before, "the input bag was modified"


def test_overwrite_replaces_only_a_bag(tmp_path, small_bag, demo_model):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    assert_one_line_error(run_efc("bag", "process", small_bag, precious, "--overwrite", "--model", demo_model),
                          "is not a bag")
    assert (precious / "thesis.tex").read_text() == "years of work\n"


# ---- case 2: SIGTERM and killed runs leave nothing behind ----

def _start_and_wait_for_staging(long_bag: Path, output: Path, demo_model: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(efc_command("bag", "process", long_bag, output, "--model", demo_model, "--no-color"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        staged = [p for p in output.parent.glob(f".{output.name}.*/{output.name}/*.mcap") if p.stat().st_size > 0]
        if staged:
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    pytest.fail("bag process never started writing")


def _staging_folders(output: Path) -> list[Path]:
    return [p for p in output.parent.glob(f".{output.name}.*") if p.is_dir()]


@pytest.mark.slow
def test_sigterm_during_process_removes_the_staging_folder(tmp_path, long_bag, demo_model):
    output = tmp_path / "out"
    process = _start_and_wait_for_staging(long_bag, output, demo_model)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert _staging_folders(output) == [], "SIGTERM left a staging folder"
    assert not output.exists()


@pytest.mark.slow
def test_staging_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path, long_bag, demo_model):
    output = tmp_path / "out"
    process = _start_and_wait_for_staging(long_bag, output, demo_model)
    process.kill()  # SIGKILL: no handler runs, the staging folder stays
    process.communicate(timeout=60)
    [stale] = _staging_folders(output)
    result = run_efc("bag", "process", long_bag, output, "--model", demo_model, "--no-color")
    assert result.returncode == 0, result.stderr
    assert f"removed {stale}" in result.stderr and "killed run" in result.stderr
    assert _staging_folders(output) == [] and (output / "metadata.yaml").is_file()


# ---- case 3: unwritable outputs fail in one line, before any work ----

def test_unwritable_outputs_fail_in_one_line(tmp_path, small_bag, demo_model):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder\n")
    with read_only_folder(tmp_path) as read_only:
        assert_one_line_error(run_efc("bag", "process", small_bag, read_only / "out", "--model", demo_model),
                              "Read-only file system")
        assert_one_line_error(run_efc("bag", "make-synthetic", read_only / "synthetic", "--frames", "2", "--size",
                                      "32x32"),
                              "Read-only file system")
    assert_one_line_error(run_efc("bag", "process", small_bag, a_file, "--overwrite", "--model", demo_model),
                          "is a file")
    assert_one_line_error(run_efc("bag", "process", small_bag, a_file / "out", "--model", demo_model), str(a_file))
    assert a_file.read_text() == "not a folder\n"


@pytest.fixture(scope="module")
def processed_bag(tmp_path_factory, small_bag, demo_model) -> Path:
    output = tmp_path_factory.mktemp("processed") / "processed"
    result = run_efc("bag", "process", small_bag, output, "--model", demo_model)
    assert result.returncode == 0, result.stderr
    return output


def test_eval_output_read_only_a_file_or_an_existing_report(tmp_path, processed_bag):
    a_file = tmp_path / "a_file"
    a_file.write_text("x\n")
    with read_only_folder(tmp_path) as read_only:
        assert_one_line_error(run_efc("bag", "eval", processed_bag, "--output", read_only / "report"),
                              "Read-only file system")
    assert_one_line_error(run_efc("bag", "eval", processed_bag, "--output", a_file), "is a file")
    report = tmp_path / "report"
    assert run_efc("bag", "eval", processed_bag, "--output", report).returncode == 0
    first = (report / "report.json").read_bytes()
    (report / "report.json").write_text("{}")  # a report the user edited: not silently replaced
    assert_one_line_error(run_efc("bag", "eval", processed_bag, "--output", report), "already exists", "--overwrite")
    assert (report / "report.json").read_text() == "{}"
    assert run_efc("bag", "eval", processed_bag, "--output", report, "--overwrite").returncode == 0
    assert json.loads((report / "report.json").read_bytes()) == json.loads(first)
    assert_one_line_error(run_efc("bag", "eval", processed_bag, "--output", processed_bag, "--overwrite"),
                          "is the input")


# ---- case 5: --json, and no progress-bar fragment before an error ----

def test_json_into_a_missing_folder_is_written_and_under_a_file_fails_first(tmp_path, small_bag, demo_model):
    json_path = tmp_path / "new" / "folder" / "stats.json"
    result = run_efc("bag", "process", small_bag, tmp_path / "out", "--model", demo_model, "--json", json_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(json_path.read_text())["frames"] == 4
    a_file = tmp_path / "a_file"
    a_file.write_text("x\n")
    result = run_efc("bag", "process", small_bag, tmp_path / "out2", "--model", demo_model, "--json",
                     a_file / "stats.json")
    assert_one_line_error(result, "cannot write")
    assert not (tmp_path / "out2").exists(), "the bag was written although --json could not be"


def test_error_line_has_no_progress_bar_fragment(tmp_path, small_bag, demo_model):
    result = run_efc("bag", "process", small_bag, tmp_path / "out", "--model", demo_model, "--topic", "/nope")
    line = assert_one_line_error(result, "/nope")
    assert "frame/s" not in result.stderr and "\r" not in result.stderr, line
