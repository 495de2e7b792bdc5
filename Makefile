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
	@command -v dciodvfy >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq dicom3tools) || echo "dciodvfy (dicom3tools) not installed: DICOM SEG/SR validation tests will skip"; }
	@{ command -v Orthanc >/dev/null 2>&1 || test -x /usr/sbin/Orthanc; } && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb) || echo "Orthanc (orthanc, orthanc-dicomweb) not installed: PACS loop tests will skip"; }
	@touch $(STAMP)

install: $(STAMP)

# No ROI file: lesions are detected on each study's CT (rois = "auto"); the vertebrae are
# labelled. sample_data's CTs are coarse (2-3 mm voxels): candidates are refused there, with the
# reason in the results, and the studies are measured with zero lesions (see README).
demo: install
	$(PY) -m bonelesion run combined sample_data --out $(DEMO_OUT)
	@echo "Results are in $(DEMO_OUT)/ (lesions.csv, results.json, summary.txt, studies/*/report.html)"

test: install
	$(PY) -m pytest -q

# Benchmarks print their figures; they are never part of `make test` (timings are not asserted).
bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
