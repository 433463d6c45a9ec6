# The two commands of the README: `make run` (the default sweep) and `make test`.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch, installed first so that the open torch range in pyproject.toml is
# already satisfied (a bare `torch` requirement would pull a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
ARGS ?=
NATIVE_SOURCES := $(wildcard irismodel/native/*.cpp irismodel/native/*.h)

.PHONY: install run test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The compiled training loops (C++: the fused CPU kernel and the native loop; ~30 s to compile,
# cached). The first training that wants them compiles them (see irismodel/native), so nothing
# depends on this step for speed: it only does that compile ahead of time (`make install`,
# `make test`, so that no test waits for it, `make bench`). A failed build is not fatal: the
# first training tries again and logs why.
$(BIN)/.native: $(BIN)/.installed $(NATIVE_SOURCES)
	$(BIN)/python -m irismodel.native build && touch $@ \
		|| echo "compiled training loops not built now: the first training will try again"

install: $(BIN)/.native

run: $(BIN)/.installed
	$(BIN)/iris-sweep $(ARGS)

test: $(BIN)/.native
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(ARGS)

bench: $(BIN)/.native
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/flow.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
