"""Helpers shared by the tests (one package; ``tests`` is on pytest's ``pythonpath``).

- `testdata`: where ``../shared/data`` and ``sample_data`` are (skips when absent);
- `synthetic`: small analytic volumes and DICOM data sets with known truth;
- `classify_factory`, `report_series`: lesion results, documents and DICOM series for the
  classifier and report tests;
- `detect_kit`: spine-phantom CTs for the detection tests;
- `phantom_kit`, `batchkit`, `pacs_kit`: phantom exports for the pipeline, batch and PACS tests;
- `orthanc_server`, `chromium_cdp`: the real Orthanc and headless Chromium, started and stopped
  by the tests that need them.
"""
