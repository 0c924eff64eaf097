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

# Every benchmark at this project's documented sizes (about 75 minutes on 2 cores), JSON under
# benchmarks/results/, then the tables of docs/benchmarks.md refreshed from it.
RESULTS := benchmarks/results
bench: venv
	$(BIN)/python benchmarks/ingest.py --hosts 100 1000 3000 --seconds 20 --settle 90 --out $(RESULTS)/ingest.json
	$(BIN)/python benchmarks/detection.py --per-kind 15 --rounds 2 --out $(RESULTS)/detection.json
	$(BIN)/python benchmarks/memory_ff.py --hosts 1000 --minutes 1 10 30 --out $(RESULTS)/memory-ff-1000.json
	$(BIN)/python benchmarks/monitor_memory.py --hosts 200 --minutes 1 5 10 --out $(RESULTS)/memory-200.json
	$(BIN)/python benchmarks/tui_cost.py --hosts 1000 --ticks 180 --out $(RESULTS)/tui_cost-1000.json
	$(BIN)/python benchmarks/ingest.py --hosts 1000 --strategies floor-lean gputui gputui-in-process floor-lean --workers 2 --seconds 20 --settle 60 --out $(RESULTS)/ingest-targets-1000.json
	$(BIN)/python benchmarks/ingest.py --hosts 3000 --strategies floor-lean gputui gputui-in-process --workers 2 --seconds 20 --settle 90 --out $(RESULTS)/ingest-targets-3000.json
	$(BIN)/python benchmarks/ingest.py --hosts 10000 --strategies floor-lean gputui --workers 2 --seconds 20 --settle 150 --out $(RESULTS)/ingest-targets-10000.json
	$(BIN)/python benchmarks/app_ingest.py --hosts 3000 --workers 2 --seconds 60 --settle 120 --out $(RESULTS)/app_ingest-3000-workers2-final.json
	$(BIN)/python benchmarks/detect_screen.py --hosts 1000 --per-kind 30 --workers 2 --out $(RESULTS)/detect_screen-1000.json
	$(BIN)/python benchmarks/prom_source.py --hosts 10000 --endpoints 8 --scrape-s 60 --query-s 30 --ticks 3 --ssh-hosts 1000 --out $(RESULTS)/prom_source-10000.json
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
