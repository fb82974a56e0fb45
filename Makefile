# The two commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LINTED := src tests benchmarks examples

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

# torch is pinned through constraints.txt: an unpinned torch pulls a CUDA build of several GB.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# torch-fidelity cross-checks KID and FID; its torchvision (no CPU build here) is not needed for that
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps torch-fidelity==0.4.0
	touch $@

# Trains a VAE on scikit-learn's bundled 8x8 digits (about a minute on 2 CPU cores) and writes
# runs/demo/: model.safetensors, config.json, samples.png, reconstructions.png,
# interpolation.png, latents.png, training.png, metrics.json, and report.html (all of it on one page).
demo: setup
	$(BIN)/simulacra train --config examples/demo.toml --out runs/demo --overwrite
	$(BIN)/simulacra report runs/demo -o runs/demo/report.html

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# The whole test suite, with ruff, on two processes (pytest-xdist; every test uses one thread).
# CI (.ci/run) runs exactly this. One file alone: .venv/bin/python -m pytest tests/test_x.py
test: lint
	$(BIN)/python -m pytest -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
