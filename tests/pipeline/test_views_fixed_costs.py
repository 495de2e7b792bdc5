"""What ``--no-qc``/``--no-dicom`` skip: the renderers' imports and the report's lesion masks.

Truth: ``sys.modules`` of a fresh interpreter that ran ``bonelesion measure`` (the renderer
modules must be absent, and present when their view is asked for, so the check can fail),
and counts of the lesion-rasterising calls made for the report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.phantom_kit import PhantomExport

from bonelesion.roi.lesion import Lesion

#: Modules of the key-image renderer (matplotlib, Pillow's drawing parts; pydicom itself
#: imports PIL.Image).
QC_MODULES = {"matplotlib", "PIL.ImageDraw", "PIL.ImageFont"}
#: Modules of the DICOM SEG/SR writers.
DICOM_MODULES = {"bonelesion.report.dicom_out", "bonelesion.report.dicom_seg",
                 "bonelesion.report.dicom_sr", "bonelesion.report.dicom_sources", "highdicom"}

_CHILD = """
import json, sys
from bonelesion.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def one_study(phantom_export: PhantomExport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    uid = next(iter(phantom_export.folders))
    export = tmp_path_factory.mktemp("one_study") / "export"
    shutil.copytree(phantom_export.folders[uid], export / "s")
    return export


def _modules(export: Path, rois: Path, out: Path, *flags: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, "-q", "measure", str(export), "--rois", str(rois),
         "--out", str(out), *flags],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    return set(result["modules"])


def test_no_qc_no_dicom_import_no_renderer(one_study: Path, phantom_export: PhantomExport,
                                           tmp_path: Path) -> None:
    bare = _modules(one_study, phantom_export.rois, tmp_path / "bare", "--no-qc", "--no-dicom")
    assert not bare & (QC_MODULES | DICOM_MODULES)
    # sphere ROIs, and the report's lesion sizes, need no scikit-image (70 ms to import)
    assert not {m for m in bare if m.split(".")[0] == "skimage"}
    # one study, run in this process, on the ROIs given: no process pool (multiprocessing,
    # ~4 ms to import) and no candidate search
    assert not bare & {"multiprocessing", "concurrent.futures.process",
                       "bonelesion.roi.candidates"}
    with_qc = _modules(one_study, phantom_export.rois, tmp_path / "qc", "--no-dicom")
    assert "matplotlib" in with_qc and not with_qc & DICOM_MODULES
    assert any((tmp_path / "qc").rglob("*.png"))


def test_report_masks_only_for_the_views_asked_for(
        phantom_export: PhantomExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bonelesion.batch import run_export
    from bonelesion.report.outputs import OutputOptions

    calls = {"box_mask_on": 0, "mask_on": 0}
    voxels: list[int] = []  # size of every grid a lesion is rasterised on for the views

    def counted(name: str):  # type: ignore[no-untyped-def]
        real = getattr(Lesion, name)

        def wrapper(self, target, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls[name] += 1
            if name == "mask_on":
                voxels.append(int(np.prod(target.shape)))
            return real(self, target, *args, **kwargs)
        return wrapper

    for name in calls:
        monkeypatch.setattr(Lesion, name, counted(name))
    summary = run_export("combined", phantom_export.export, tmp_path / "bare",
                         rois=phantom_export.rois,
                         outputs=OutputOptions(qc=False, dicom=False, html=False))
    assert summary.lesions > 0 and summary.studies_failed == 0
    assert calls == {"box_mask_on": 0, "mask_on": 0}  # measured on crops; nothing for views
    run_export("combined", phantom_export.export, tmp_path / "qc", rois=phantom_export.rois,
               outputs=OutputOptions(qc=True, dicom=False, html=False))
    # each lesion is put on the first series within its box once (drawable? its size and
    # key slices), and the key images rasterise it on crops around it, never on a whole series
    assert calls["box_mask_on"] == summary.lesions and calls["mask_on"] > 0
    ct_voxels = 42 * 128 * 128  # the phantom CT (slices × rows × columns)
    assert max(voxels) < ct_voxels // 4


_IMPORTS_CHILD = """
import json, sys
from bonelesion.pipeline.per_study import import_study_modules
from bonelesion.report.outputs import OutputOptions
before = set(sys.modules)
thread = import_study_modules(OutputOptions(html=sys.argv[1] == "html"))
thread.join()
again = import_study_modules(OutputOptions(html=sys.argv[1] == "html"))
print(json.dumps({"new": sorted(set(sys.modules) - before), "again": again is None}))
"""


@pytest.mark.parametrize("html", [True, False])
def test_study_modules_imported_in_the_background(html: bool) -> None:
    """The modules a study's run needs are imported by the background thread (fresh
    interpreter: they were not there before), the report's template engine only with the
    HTML report, and a second call starts no thread."""
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_CHILD, "html" if html else "bare"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    new = set(result["new"])
    assert "scipy.ndimage" in new
    assert ("jinja2" in new) is html
    assert not {n for n in new if n.startswith("bonelesion")}
    assert not new & QC_MODULES
    assert result["again"] is True


def test_each_role_is_handed_over_as_soon_as_it_is_read(
        one_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``on_loaded`` gets each role's first volume (the very object the study volumes hold)
    right after its series is read, before the next series is: the per-study run starts
    the CT's vertebra labelling there while the MR series load."""
    from support.testdata import plan_and_load

    import bonelesion.dicom.series as series_module
    from bonelesion.pipeline.loading import load_study_volumes

    plan, _ = plan_and_load(one_study, tmp_path)
    events: list[tuple[str, object]] = []
    real = series_module.load_series

    def read(files, **kwargs):  # type: ignore[no-untyped-def]
        events.append(("read", len(files)))
        return real(files, **kwargs)

    monkeypatch.setattr(series_module, "load_series", read)
    volumes = load_study_volumes(plan, on_loaded=lambda role, v: events.append((role, v)))
    handed = [(e[0], e[1]) for e in events if e[0] != "read"]
    assert [role for role, _ in handed] == list(volumes.by_role)  # once per role, plan order
    assert {"ct", "dixon_in_phase"} <= set(volumes.by_role)
    for role, volume in handed:
        assert volume is volumes.one(role)
    first = events.index(handed[0])
    assert [e[0] for e in events[:first + 1]] == ["read", "ct"]  # CT first, before any MR read
    assert sum(e[0] == "read" for e in events) > 1
