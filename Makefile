# The two set-up commands of the README:
#   make dashboard   builds .venv if needed, then serves the dashboard on the shipped checkpoint
#   make test        builds .venv if needed, then lint, format check and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: dashboard test lint bench venv browser screenshots

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-torch.txt
	$(PY) -m pip install --quiet -c requirements-torch.txt -e '.[dev]'
	touch $@

dashboard: venv
	$(VENV)/bin/streamlit run dashboards/app.py --server.address localhost --browser.gatherUsageStats false

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian's chromium for the browser test (never `playwright install`: it downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "the browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test: venv lint browser
	$(PY) -m pytest

bench: venv
	$(PY) -m benchmarks.bench_forward

# Re-take the README's dashboard screenshots (the browser test writes them to a temp dir otherwise).
screenshots: venv browser
	MINIGPT_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_browser.py
