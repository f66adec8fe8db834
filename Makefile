# Two entry points for a fresh machine: `make demo` runs the service's main job with
# embedded defaults, `make test` runs the whole suite. Both set up .venv themselves.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

.PHONY: demo test lint bench
demo: $(VENV)/.installed
	PAPERWIRE_DEV=1 $(VENV)/bin/newsletter demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench.ingest
	$(VENV)/bin/python -m bench.summarize
	$(VENV)/bin/python -m bench.deliver
	$(VENV)/bin/python -m bench.web
