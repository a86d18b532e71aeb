# Two commands for a fresh machine (no GPU, no internet beyond the package index):
#   make demo   sets up .venv on first use and runs the end-to-end demo on the shipped model
#   make test   sets up .venv on first use and runs the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Every process that starts rclpy stays on loopback, on a domain of its own (docs/ENVIRONMENT.md).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
export ROS_DOMAIN_ID ?= $(shell echo $$(( RANDOM % 100 + 1 )))
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
# Fast DDS profile for camera-sized images (README "Large images over DDS"): a 64 MB shared-memory
# segment, UDP on loopback only. Both spellings: Fast DDS 3 (Kilted+) and Fast DDS 2 (Humble/Jazzy).
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_large_images_localhost.xml
export FASTRTPS_DEFAULT_PROFILES_FILE ?= $(FASTDDS_DEFAULT_PROFILES_FILE)
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# Editable install: puts efc, perception_node, ... on .venv/bin, code stays in this checkout.
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m efc_ros.demo --output outputs/demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.bench_model

clean:
	rm -rf build install log outputs .pytest_cache
