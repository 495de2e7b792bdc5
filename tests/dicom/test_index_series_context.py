"""Stack keys that depend on the series: the catalogue applies the reader's b0 fill.

A Philips classic DWI b0 image carries no diffusion evidence of its own but its private
b-value element (2001,1003) = 0; in a series that also holds b > 0 images it is that series'
b0 (`bonelesion.dicom.multiframe.series_stack_keys`). The catalogue must give it the same
stack key and role as the reader, and follow the series as files come and go.

Truth: the reader (`load_series(decode=False)`), and (2001,1003) read back with pydicom.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from bonelesion.dicom import index as ix
from bonelesion.dicom.index import Catalogue, index_export
from bonelesion.dicom.multiframe import (
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.dicom.series import load_series
from bonelesion.errors import InputError
from bonelesion.phantom import write_study

pytestmark = pytest.mark.slow  # writes a phantom study and indexes it several times (~8 s)

#: Philips private b-value element (Diffusion B-Factor).
PHILIPS_B_FACTOR = (0x2001, 0x1003)
#: b-values in the keys are rounded to 1 s/mm².
ATOL_B_S_PER_MM2 = 0.5


@pytest.fixture(scope="module")
def philips_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("philips") / "study"
    write_study(out, vendor="philips", noise_free=True, seed=4)
    return out / "DICOM"


def _dwi_folder(study: Path) -> Path:
    return next(p for p in sorted(study.iterdir()) if p.name.startswith("020_DWI"))


def _stored_b_values(folder: Path) -> dict[str, float]:
    """(2001,1003) of every file of a folder, read with pydicom (the truth)."""
    out = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[path.name] = float(ds[PHILIPS_B_FACTOR].value)
    return out


def _reader_by_file(folder: Path) -> dict[str, tuple[str, str]]:
    """Return the reader's (stack key, role) of every file under ``folder``."""
    out = {}
    for stack in load_series(folder, decode=False):
        for path in stack.files:
            out[Path(path).relative_to(folder).as_posix()] = (str(stack.key), stack.info.role)
    return out


def _catalogue_by_file(db: Path) -> dict[str, tuple[str, str | None]]:
    with Catalogue(db) as cat:
        return {r.path: (r.stack_keys[0], r.role) for r in cat.files() if r.stack_keys}


def test_philips_b0_key_and_role_are_the_readers(philips_study: Path, tmp_path: Path) -> None:
    summary = index_export(philips_study, tmp_path / "cat.sqlite", workers=1)
    dwi = _dwi_folder(philips_study)
    stored = _stored_b_values(dwi)
    b0_names = [name for name, b in stored.items() if b == 0.0]
    assert 0 < len(b0_names) < len(stored)  # the phantom's DWI: b0 plus b > 0 images
    assert summary.files_reread == len(stored)  # only the mixed series is read again
    reader = _reader_by_file(philips_study)
    catalogue = _catalogue_by_file(summary.db_path)
    assert catalogue == reader
    with Catalogue(summary.db_path) as cat:
        records = {Path(r.path).name: r for r in cat.files() if r.path.startswith(dwi.name)}
    for name in b0_names:
        rec = records[name]
        key, role = reader[f"{dwi.name}/{name}"]
        assert rec.stack_keys == (key,) and rec.role == role == "dwi"
        assert " | b 0 | " in key and key.endswith(" | b0")
        assert rec.b_value_s_per_mm2 == pytest.approx(stored[name], abs=ATOL_B_S_PER_MM2)
        assert rec.series_b_value_s_per_mm2 == pytest.approx(0.0, abs=ATOL_B_S_PER_MM2)
        assert rec.stack_b_values_s_per_mm2 == (rec.b_value_s_per_mm2,)
        assert "series that also holds b > 0 images" in rec.notes
    for name, b in stored.items():
        if b > 0.0:
            rec = records[name]
            assert rec.series_b_value_s_per_mm2 is None
            assert rec.b_value_s_per_mm2 == pytest.approx(b, abs=ATOL_B_S_PER_MM2)
    again = index_export(philips_study, summary.db_path, workers=1)
    assert again.files_read == 0 and again.files_reread == 0
    assert _catalogue_by_file(summary.db_path) == reader


def test_series_context_follows_files_coming_and_going(philips_study: Path,
                                                       tmp_path: Path) -> None:
    export = tmp_path / "export"
    dwi = export / "dwi"
    shutil.copytree(_dwi_folder(philips_study), dwi)
    parked = tmp_path / "parked"
    parked.mkdir()
    db = tmp_path / "cat.sqlite"
    stored = _stored_b_values(dwi)
    b0_names = {name for name, b in stored.items() if b == 0.0}

    index_export(export, db, workers=1)
    assert _catalogue_by_file(db) == _reader_by_file(export)
    # the b > 0 images go: the b0 images have no diffusion clue left, their keys revert
    for name in set(stored) - b0_names:
        (dwi / name).rename(parked / name)
    summary = index_export(export, db, workers=1)
    assert summary.files_removed == len(stored) - len(b0_names)
    assert summary.files_reread == len(b0_names)
    catalogue = _catalogue_by_file(db)
    assert catalogue == _reader_by_file(export)
    assert all(" | b0" not in key and role != "dwi" for key, role in catalogue.values())
    with Catalogue(db) as cat:
        assert all(r.series_b_value_s_per_mm2 is None for r in cat.files())
    # ... and come back: the b0 images are the series' b0 again
    for name in set(stored) - b0_names:
        (parked / name).rename(dwi / name)
    summary = index_export(export, db, workers=1)
    assert summary.files_read == len(stored) - len(b0_names)
    assert summary.files_reread == len(stored)
    catalogue = _catalogue_by_file(db)
    assert catalogue == _reader_by_file(export)
    assert sum(key.endswith(" | b0") for key, _ in catalogue.values()) == len(b0_names)


def test_interrupted_series_pass_resumes_next_run(philips_study: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    export = tmp_path / "export"
    shutil.copytree(_dwi_folder(philips_study), export / "dwi")
    db = tmp_path / "cat.sqlite"

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ix, "_series_context_records", interrupt)
        with pytest.raises(KeyboardInterrupt):
            index_export(export, db, workers=1)
    reader = _reader_by_file(export)
    assert _catalogue_by_file(db) != reader  # every file written, the series pass not
    summary = index_export(export, db, workers=1)
    assert summary.files_read == 0 and summary.files_reread == len(reader)
    assert _catalogue_by_file(db) == reader


def test_series_without_mixed_b_values_are_not_reread(tmp_path: Path) -> None:
    out = tmp_path / "study"
    write_study(out, vendor="siemens", noise_free=True, seed=5)
    summary = index_export(out / "DICOM", tmp_path / "cat.sqlite", workers=1)
    assert summary.files_reread == 0  # Siemens b0 images say b = 0 themselves
    assert _catalogue_by_file(summary.db_path) == _reader_by_file(out / "DICOM")


def test_series_stack_keys_leaves_single_headers_alone(philips_study: Path) -> None:
    dwi = _dwi_folder(philips_study)
    stored = _stored_b_values(dwi)
    b0 = next(name for name, b in stored.items() if b == 0.0)
    b_high = next(name for name, b in stored.items() if b > 0.0)
    flats = [pydicom.dcmread(dwi / name, stop_before_pixels=True) for name in (b0, b_high)]
    keys = [stack_key(flat) for flat in flats]
    assert keys[0].b_value_s_per_mm2 is None  # no evidence of its own
    alone = series_stack_keys(flats[:1], keys[:1])
    assert alone == [(keys[0], None)]
    together = series_stack_keys(flats, keys)
    assert together[1] == (keys[1], None)
    filled, series_b = together[0]
    assert series_b == pytest.approx(stored[b0], abs=ATOL_B_S_PER_MM2)
    assert filled.b_value_s_per_mm2 == pytest.approx(0.0, abs=ATOL_B_S_PER_MM2)
    assert filled.acquisition_kind == "b0"
    assert series_context_role("other", series_b) == "dwi"
    assert series_context_role("dixon_water", series_b) == "dixon_water"
    assert series_context_role("other", None) == "other"


def test_series_stack_keys_length_mismatch_raises(philips_study: Path) -> None:
    path = next(_dwi_folder(philips_study).iterdir())
    flat = pydicom.dcmread(path, stop_before_pixels=True)
    with pytest.raises(InputError, match=r"1 headers but 0 keys.*Potential fix"):
        series_stack_keys([flat], [])


@pytest.mark.parametrize("name", ["dwi_ge_signa_pioneer", "multivendor_cases_dicom2nifti",
                                  "enhanced_philips_siemens_small", "dwi_canon_galan_v60_classic"])
def test_catalogue_stack_keys_are_the_readers_on_scanner_files(name: str,
                                                               tmp_path: Path) -> None:
    """Every stack of real GE, Philips, Siemens and Canon exports, classic and enhanced."""
    import warnings

    from support.testdata import shared_path

    folder = shared_path(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # real data: pydicom warns about odd values
        summary = index_export(folder, tmp_path / "cat.sqlite", workers=1)
        with Catalogue(summary.db_path) as cat:
            indexed = {(st.series_instance_uid, st.stack_key)
                       for se in cat.series() for st in cat.stacks(se.series_instance_uid)}
        stacks = load_series(folder, decode=False)
    expected = {(s.info.series_instance_uid, str(s.key)) for s in stacks}
    assert indexed == expected
