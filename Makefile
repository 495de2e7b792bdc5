# Two commands: `make demo` and `make test`. Both create .venv and install what is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out
FUZZ_CASES ?= 6000
FUZZ_SEED ?= 13
FUZZ_JOBS ?= 1
FUZZ_OUT ?= fuzz_out

.PHONY: install demo test bench fuzz lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@sh ci/system-deps.sh
	@touch $(STAMP)

# The report templates compiled ahead of time (a wheel build does the same; kept up to date
# here for a checkout, whose templates the package checks before using them compiled).
install: $(STAMP)
	@$(PY) src/bonelesion/report/precompile.py

# No ROI file: lesions are detected on each study's CT (rois = "auto") and the vertebrae
# labelled. lumbar_thin_ct (2 mm slices) gives its lesions; the other two sample CTs are coarse
# (2.5-3 mm slices), so the detector refuses to search them, says why in their results and
# measures them with zero lesions. The phantoms are untreated: treatment_naive.toml says so
# (without it, CT-only calls of detected lesions stay indeterminate; see README).
demo: install
	$(PY) -m bonelesion run combined sample_data --out $(DEMO_OUT) \
		--classifier-config sample_data/treatment_naive.toml
	@echo "Results are in $(DEMO_OUT)/ (lesions.csv, results.json, summary.txt, studies/*/report.html)"

test: install
	$(PY) -m pytest -q

# Benchmarks print their figures; they are never part of `make test` (timings are not asserted).
bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# A long mutational campaign over every reading entry point (index, series --json, convert,
# load_series; load_volume and run on whole phantom studies), 20 s and 4 GiB per run. Report in
# $(FUZZ_OUT)/report.json, minimal reproducers of any finding in $(FUZZ_OUT)/findings/.
# Seeds: ../shared/data when present, and phantom studies. A short slice runs in `make test`.
fuzz: install
	PYTHONPATH=tests $(PY) -m fuzz --cases $(FUZZ_CASES) --seed $(FUZZ_SEED) --jobs $(FUZZ_JOBS) \
		--study-every 50 --out $(FUZZ_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(FUZZ_OUT) .pytest_cache
