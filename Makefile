# The two commands of the README: `make run` (the default sweep) and `make test`.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch, installed first so that the open torch range in pyproject.toml is
# already satisfied (a bare `torch` requirement would pull a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The compiled training loops (C++: the fused CPU kernel and the native loop; ~30 s to
	# compile, cached); without them the eager Python loop runs.
	$(BIN)/python -m irismodel.native build || echo "compiled training loops not built: the eager loop will be used"
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/iris-sweep $(ARGS)

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/flow.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
