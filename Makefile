# Two entry points for a fresh machine: `make demo` runs the service's main job with
# embedded defaults, `make test` runs the whole suite. Both set up .venv themselves.
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

# axe-core (npm) for the accessibility tests of pages and mail; without npm they are skipped
# locally (and fail in CI, which installs it).
AXE := $(VENV)/axe/node_modules/axe-core/axe.min.js
$(AXE):
	@if command -v npm >/dev/null; then \
		npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/axe axe-core@4.11; \
	else echo "npm is not installed: the axe-core accessibility tests will be skipped"; fi

.PHONY: demo test lint bench messages
# The gettext catalogs, compiled from their .po (newsletter/i18n.py); a wheel build compiles
# them too (setup.py).
CATALOGS := $(patsubst %.po,%.mo,$(wildcard newsletter/translations/*/LC_MESSAGES/*.po))
%.mo: %.po $(VENV)/.installed
	$(VENV)/bin/pybabel -q compile -i $< -o $@

# After changing a page's or a mail's words: the .po files gain the new ones, to translate.
messages: $(VENV)/.installed
	for domain in site mail; do \
		$(VENV)/bin/pybabel -q extract --no-wrap --sort-by-file -F babel-$$domain.cfg \
			-o newsletter/translations/$$domain.pot . && \
		$(VENV)/bin/pybabel -q update --no-wrap -D $$domain \
			-i newsletter/translations/$$domain.pot -d newsletter/translations; \
	done

demo: $(VENV)/.installed $(CATALOGS)
	PAPERWIRE_DEV=1 $(VENV)/bin/newsletter demo

test: $(VENV)/.installed $(AXE) $(CATALOGS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

bench: $(VENV)/.installed $(CATALOGS)
	$(VENV)/bin/python -m bench.ingest
	$(VENV)/bin/python -m bench.summarize
	$(VENV)/bin/python -m bench.deliver
	$(VENV)/bin/python -m bench.web
