# Two commands do all set-up: `make demo` runs the demo audit, `make test` runs the tests.
# Both create .venv (python3 -m venv + pip install -e .[test]) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustcnn audit

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache build *.egg-info
