"""Reports of a run: canonical results.json plus lesions.csv, DICOM SEG/SR, QC images, HTML.

Public API
----------
write_reports(out_dir, studies, *, config, ...) -> ReportFiles
    Every view of a run from the same `StudyResult` objects.
study_result(lesions, *, calls=None, config=None, volumes=None, masks=None) -> StudyResult
    Bundle one study's measurements, calls, source volumes and lesion masks.
"""

from __future__ import annotations

from bonelesion.report.json_report import SCHEMA_VERSION, build_results_document
from bonelesion.report.study import StudyResult, study_result
from bonelesion.report.writer import ReportFiles, write_reports

__all__ = [
    "SCHEMA_VERSION",
    "StudyResult",
    "study_result",
    "ReportFiles",
    "write_reports",
    "build_results_document",
]
