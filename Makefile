# Two commands: `make demo` and `make test`. Both create .venv and install what is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@sh ci/system-deps.sh
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m bonelesion run combined sample_data --out $(DEMO_OUT) --rois sample_data/spine_phantom/rois.csv
	@echo "Results are in $(DEMO_OUT)/ (lesions.csv, results.json, summary.txt, studies/*/report.html)"

test: install
	$(PY) -m pytest -q

# Benchmarks print their figures; they are never part of `make test` (timings are not asserted).
bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
