# Two entry points for a fresh machine (README.md): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint check sysdeps venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# System packages the tests drive for real (sshd, tmux, ...); needs root or sudo, else says what is missing.
sysdeps:
	bash scripts/install-system-deps.sh

demo: venv
	$(BIN)/gputui demo

test: sysdeps venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check gputui tests benchmarks scripts
	$(BIN)/ruff format --check gputui tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

check: test lint

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
