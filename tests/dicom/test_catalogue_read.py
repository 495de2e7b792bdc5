"""The fast header reader gives the same catalogue records as pydicom's ``read_partial``.

`bonelesion.dicom.index` reads plain Part 10 headers with
`bonelesion.dicom.fastheader.read_header` and falls back to pydicom's ``read_partial`` for
everything else. Truth: the pydicom path, forced by making the fast reader decline every file,
over real scanner files of every vendor and transfer syntax and over phantom studies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bonelesion.dicom import index as ix
from bonelesion.dicom.catalogue import read as catalogue_read
from bonelesion.dicom.index import read_file_record
from bonelesion.phantom import write_study

pytestmark = pytest.mark.slow  # ~1,100 real and phantom files read twice (~8 s)

SHARED_SETS = ("compressed_nema_pydicom", "ct_bone_phantom_ge_ctpace", "ct_ge_hispeed_head",
               "dixon_philips15T_chaos_set1", "dwi_canon_galan_v60_classic",
               "dwi_ge_signa_pioneer", "dwi_siemens_xa30_enhanced_pa",
               "enhanced_philips_siemens_small", "multivendor_cases_dicom2nifti",
               "ts_siemens_trio_mr_9syntaxes")


def _records(folder: Path) -> list[ix.FileRecord]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [read_file_record(folder, p.relative_to(folder).as_posix()) for p in files]


def _compare(folder: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    fast = _records(folder)
    with monkeypatch.context() as patch:
        patch.setattr(catalogue_read, "_fast_header", lambda path: None)
        slow = _records(folder)
    n_fast = 0
    for a, b in zip(fast, slow, strict=True):
        assert dataclasses.asdict(a) == dataclasses.asdict(b), a.path
        n_fast += a.status == "ok"
    return n_fast


@pytest.mark.parametrize("name", SHARED_SETS)
def test_fast_header_records_equal_pydicom_records_on_scanner_files(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.testdata import shared_path

    assert _compare(shared_path(name), monkeypatch) > 0


PHANTOMS = {"ge_enhanced": {"vendor": "ge", "enhanced": True},
            "siemens_compressed": {"vendor": "siemens", "compressed": True},
            "philips_classic": {"vendor": "philips"}}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for i, (name, options) in enumerate(PHANTOMS.items()):
        folder = tmp_path_factory.mktemp(name) / "study"
        write_study(folder, noise_free=True, seed=6 + i, **options)  # type: ignore[arg-type]
        out[name] = folder / "DICOM"
    return out


@pytest.mark.parametrize("name", sorted(PHANTOMS))
def test_fast_header_records_equal_pydicom_records_on_phantoms(
        name: str, phantoms: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _compare(phantoms[name], monkeypatch) > 0


def test_fast_header_is_used_for_plain_part10(phantoms: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain Part 10 files never reach pydicom's file reader."""
    folder = phantoms["philips_classic"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pydicom read_partial called for a plain Part 10 file")

    monkeypatch.setattr(catalogue_read, "read_partial", refuse)
    records = _records(folder)
    assert records and all(r.status == "ok" for r in records)


def test_fast_header_decline_falls_back_to_checked_pydicom(
        phantoms: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the fast reader declines is read by pydicom after the structure check: same record."""
    folder = phantoms["ge_enhanced"]
    path = next(p for p in sorted(folder.rglob("*.dcm")))
    rel = path.relative_to(folder).as_posix()
    expected = read_file_record(folder, rel)

    def declines(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setattr(catalogue_read, "read_header", declines)
    assert read_file_record(folder, rel) == expected


@pytest.mark.shared_data
def test_first_frame_groups_from_bytes_equal_the_pydicom_parse() -> None:
    """The first frame's position, orientation, spacing, thickness and echo time the
    catalogue reads from the raw functional-group bytes = those of pydicom's parse."""
    import warnings

    from support.testdata import SHARED_DATA

    from bonelesion.dicom.catalogue.values import _float, _floats
    from bonelesion.dicom.header import read_file_header
    from bonelesion.dicom.multiframe import is_multiframe

    keywords = {"PlanePositionSequence": ["ImagePositionPatient"],
                "PlaneOrientationSequence": ["ImageOrientationPatient"],
                "PixelMeasuresSequence": ["PixelSpacing", "SliceThickness"],
                "MREchoSequence": ["EffectiveEchoTime"]}
    n_files = 0
    for name in ("dwi_siemens_xa30_enhanced_pa", "enhanced_philips_siemens_small",
                 "multivendor_cases_dicom2nifti"):
        for path in sorted(p for p in (SHARED_DATA / name).rglob("*") if p.is_file()):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ds, _ = read_file_header(path, [])
                except Exception:  # noqa: BLE001 - not DICOM (README, NIfTI …)
                    continue
                if not is_multiframe(ds):
                    continue
                fast = catalogue_read._first_frame_groups(ds)
                assert fast is not None, path  # the raw path is the one taken
                slow = catalogue_read._first_frame_groups_parsed(ds)
                for group, names in keywords.items():
                    a, b = fast(group), slow(group)
                    assert (a is None) == (b is None), (path, group)
                    for keyword in names:
                        assert _floats(a, keyword) == _floats(b, keyword), (path, keyword)
                        assert _float(a, keyword) == _float(b, keyword), (path, keyword)
            n_files += 1
    assert n_files >= 25


def test_values_decoded_once_per_process_equal_a_fresh_decode() -> None:
    """`_raw` of equal bytes in two headers (the process-wide decode memo) is the fresh
    decode; a list value is a copy: changing it changes nothing for the next header."""
    from pydicom import Dataset
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    from bonelesion.dicom.catalogue import values as catalogue_values

    def header(vr: str, raw: bytes, little: bool = True) -> Dataset:
        tag = BaseTag(0x00080008)
        return Dataset({tag: RawDataElement(tag, vr, len(raw), raw, 0, False, little)})

    cases = [("CS", b"ORIGINAL\\PRIMARY\\AXIAL "), ("CS", b""), ("US", b"\x00\x02"),
             ("US", b"\x00\x02\x01\x00"), ("LO", b"caf\xe9"), ("FD", b"\x00" * 7)]
    for vr, raw in cases:
        for little in (True, False):
            catalogue_values._DECODED.clear()
            first = catalogue_values._raw(header(vr, raw, little), "ImageType")
            fresh = first.copy() if isinstance(first, list) else first
            if isinstance(first, list):
                first.append("changed")
            second = catalogue_values._raw(header(vr, raw, little), "ImageType")
            assert second == fresh, (vr, raw, little)
            assert len(catalogue_values._DECODED) == 1
