"""Phantom QA on analytic phantoms: regions, quantities, pass/fail, JUnit XML, spec validation.

The region maths (`measure_check`) run on analytic volumes by role; the series choice and
loading are the one path every command takes (tests/pipeline/test_qa_cli.py runs `qa` on
real DICOM phantoms).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bonelesion.errors import ConfigError, InputError, SeriesSelectionError
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.phantom.qa import (
    QaReport,
    QaResult,
    QaSpec,
    format_table,
    load_qa_spec,
    measure_check,
    run_qa,
    sphere_mask,
    write_junit,
)
from bonelesion.units import IntensityUnit

#: CT noise SD of the analytic phantom; a 10 mm sphere (~4000 voxels) has SE ≈ 0.2 HU.
CT_NOISE_SD_HU = 10.0
#: Tolerance of a region mean against truth: 5 standard errors of the mean of a 10 mm sphere.
ATOL_REGION_MEAN_HU = 1.0
#: Float64 round-off of a ratio of means.
ATOL_FRACTION = 1e-9

# An oblique grid: rotated 20° about S, so the regions are not axis-aligned boxes.
_A = np.deg2rad(20.0)
DIRECTION = np.array([[np.cos(_A), -np.sin(_A), 0.0], [np.sin(_A), np.cos(_A), 0.0], [0.0, 0.0, 1.0]])
SPACING = (2.0, 1.0, 1.0)
ORIGIN = (-40.0, -30.0, -20.0)
SHAPE = (30, 60, 60)
WATER_CENTRE = (-20.0, -10.0, 10.0)
BONE_CENTRE = (0.0, 5.0, 10.0)


@dataclass
class FakeStack:
    """What run_qa reads of a reader Stack: ``info`` and ``volume``."""

    info: SeriesInfo
    volume: Volume


def _volume(array: np.ndarray, role: str, uid: str, unit: IntensityUnit = IntensityUnit.ARBITRARY,
            desc: str = "") -> FakeStack:
    info = SeriesInfo(series_instance_uid=uid, role=role, series_description=desc,
                      frame_of_reference_uid="1.2.9")
    vol = Volume(array=array, spacing_mm=SPACING, origin_lps_mm=ORIGIN, direction_lps=DIRECTION,
                 intensity_unit=unit, series=info)
    return FakeStack(info=info, volume=vol)


def _distance_mm(centre: tuple[float, float, float]) -> np.ndarray:
    """Distance of every voxel centre from ``centre``, by brute force over all voxels."""
    idx = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    pts = np.asarray(ORIGIN) + (idx * np.asarray(SPACING)) @ DIRECTION.T
    return np.linalg.norm(pts - np.asarray(centre), axis=1).reshape(SHAPE)


@pytest.fixture(scope="module")
def stacks() -> list[FakeStack]:
    rng = np.random.default_rng(7)
    ct = np.full(SHAPE, -1000.0)
    ct[_distance_mm(WATER_CENTRE) <= 15.0] = 0.0
    ct[_distance_mm(BONE_CENTRE) <= 12.0] = 900.0
    ct = ct + rng.normal(0.0, CT_NOISE_SD_HU, SHAPE)
    adc = np.zeros(SHAPE)
    adc[_distance_mm(WATER_CENTRE) <= 15.0] = 1.10e-3
    water = np.full(SHAPE, 100.0) * 0.7
    fat = np.full(SHAPE, 100.0) * 0.3
    ip = np.full(SHAPE, 100.0)
    op = np.full(SHAPE, 40.0)  # |W − F| = 0.4 → FF 0.3
    return [
        _volume(ct, "ct", "1.1", IntensityUnit.HU),
        _volume(adc, "adc", "1.2", IntensityUnit.MM2_PER_S),
        _volume(water, "dixon_water", "1.3"),
        _volume(fat, "dixon_fat", "1.4"),
        _volume(ip, "dixon_in_phase", "1.5"),
        _volume(op, "dixon_opposed_phase", "1.6"),
    ]


def _report(spec: QaSpec, stacks: list[FakeStack]) -> QaReport:
    """Every check of ``spec`` measured on the given volumes (what run_qa does after it has
    chosen and loaded the series)."""
    import math

    by_role: dict[str, tuple[Volume, ...]] = {}
    for s in stacks:
        by_role[s.info.role] = (*by_role.get(s.info.role, ()), s.volume)
    results = []
    for check in spec.checks:
        try:
            measured, n, uid = measure_check(check, by_role)
        except InputError as exc:
            results.append(QaResult(check=check, passed=False, measured=None, message=str(exc)))
            continue
        ok = math.isfinite(measured) and abs(measured - check.expected) <= check.half_width
        msg = "" if ok else (f"{check.name}: measured {measured:.6g}, expected "
                             f"{check.expected:.6g} ± {check.half_width:.3g} (deviation "
                             f"{measured - check.expected:+.3g}) in series {uid}")
        results.append(QaResult(check=check, passed=ok, measured=measured, voxel_count=n,
                                series_instance_uid=uid, message=msg))
    return QaReport(spec=spec, scan_dir="analytic", results=tuple(results))


def _spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text('name = "analytic"\n' + body)
    return path


def _check(name: str, quantity: str, centre: tuple[float, ...], radius: float, expected: float,
           tol: str, extra: str = "") -> str:
    return (f'[[checks]]\nname = "{name}"\nquantity = "{quantity}"\n'
            f"centre_lps_mm = [{', '.join(map(str, centre))}]\nradius_mm = {radius}\n"
            f"expected = {expected}\n{tol}\n{extra}\n")


def test_sphere_mask_matches_brute_force_on_an_oblique_grid(stacks: list[FakeStack]) -> None:
    for centre, radius in ((WATER_CENTRE, 10.0), (BONE_CENTRE, 3.3), ((-39.0, -29.0, -20.0), 6.0)):
        expected = _distance_mm(centre) <= radius
        np.testing.assert_array_equal(sphere_mask(stacks[0].volume, centre, radius), expected)


def test_ct_adc_and_fat_fraction_checks(tmp_path: Path, stacks: list[FakeStack]) -> None:
    body = (
        _check("water", "ct_number_hu", WATER_CENTRE, 10.0, 0.0, "tolerance = 7.0")
        + _check("bone", "ct_number_hu", BONE_CENTRE, 8.0, 910.0, "tolerance = 60.0")
        + _check("bone_strict", "ct_number_hu", BONE_CENTRE, 8.0, 950.0, "tolerance = 7.0")
        + _check("ice_water_adc", "adc_mm2_per_s", WATER_CENTRE, 10.0, 1.10e-3, "tolerance_pct = 5.0")
        + _check("ff_dixon", "fat_fraction", WATER_CENTRE, 10.0, 0.3, "tolerance = 0.05")
    )
    report = _report(load_qa_spec(_spec(tmp_path, body)), stacks)
    by = {r.check.name: r for r in report.results}
    assert by["water"].passed and abs(by["water"].measured) < ATOL_REGION_MEAN_HU
    assert by["bone"].passed and by["bone"].measured == pytest.approx(900.0, abs=ATOL_REGION_MEAN_HU)
    assert not by["bone_strict"].passed
    assert "expected 950 ± 7 (deviation -5" in by["bone_strict"].message
    assert by["ice_water_adc"].measured == pytest.approx(1.10e-3, rel=1e-6)
    assert by["ff_dixon"].measured == pytest.approx(0.3, abs=ATOL_FRACTION)
    assert by["water"].voxel_count == int((_distance_mm(WATER_CENTRE) <= 10.0).sum())
    assert not report.passed
    table = format_table(report)
    assert "bone_strict" in table and "FAIL" in table and "4 passed, 1 failed" in table


def test_fat_fraction_from_in_and_opposed_phase(tmp_path: Path, stacks: list[FakeStack]) -> None:
    ip_op = [s for s in stacks if s.info.role in ("dixon_in_phase", "dixon_opposed_phase")]
    body = _check("ff", "fat_fraction", WATER_CENTRE, 10.0, 0.3, "tolerance = 0.01")
    report = _report(load_qa_spec(_spec(tmp_path, body)), ip_op)
    assert report.passed
    assert report.results[0].measured == pytest.approx(0.3, abs=ATOL_FRACTION)


def test_unmeasurable_checks_fail_with_reason_and_others_run(tmp_path: Path, stacks: list[FakeStack]) -> None:
    body = (
        _check("outside", "ct_number_hu", (500.0, 500.0, 500.0), 5.0, 0.0, "tolerance = 7.0")
        + _check("no_dwi", "adc_mm2_per_s", WATER_CENTRE, 5.0, 1e-3, "tolerance_pct = 5", 'adc_source = "fitted"')
        + _check("two_cts", "signal", WATER_CENTRE, 5.0, 1.0, "tolerance = 1", 'role = "dixon_water"')
        + _check("water", "ct_number_hu", WATER_CENTRE, 10.0, 0.0, "tolerance = 7.0")
    )
    no_water = [s for s in stacks if s.info.role != "dixon_water"]
    report = _report(load_qa_spec(_spec(tmp_path, body)), no_water)
    by = {r.check.name: r for r in report.results}
    assert "region holds 0 voxels" in by["outside"].message and "Potential fix" in by["outside"].message
    assert "no ADC map or DWI series" in by["no_dwi"].message
    assert "no dixon_water series" in by["two_cts"].message
    assert by["water"].passed
    assert [r.passed for r in report.results] == [False, False, False, True]


def test_two_equal_series_for_a_check_are_an_error_naming_them(tmp_path: Path) -> None:
    from bonelesion.phantom.qa import _choose
    from bonelesion.pipeline.plan import StackCandidate

    body = _check("w", "signal", WATER_CENTRE, 5.0, 1.0, "tolerance = 1", 'role = "dixon_water"')
    (check,) = load_qa_spec(_spec(tmp_path, body)).checks
    twins = [StackCandidate(study_instance_uid="1", series_instance_uid=f"1.{i}", stack_key="k",
                            modality="MR", role="dixon_water", series_number=5,
                            files=tuple(f"/x/{i}/{k}" for k in range(10))) for i in (1, 2)]
    with pytest.raises(SeriesSelectionError, match=r"2 dixon_water series could serve it .*"
                       r"Potential fix: set series_description"):
        _choose(check, "dixon_water", twins, "scan")
    named = load_qa_spec(_spec(tmp_path, body.replace('role = "dixon_water"',
                                                      'role = "dixon_water"\nseries_description = "^copy$"')))
    twins[1] = StackCandidate(**{**twins[1].__dict__, "series_description": "copy"})
    choice = _choose(named.checks[0], "dixon_water", twins, "scan")
    assert choice is not None and choice.series_instance_uid == "1.2"


def test_mask_file_region(tmp_path: Path, stacks: list[FakeStack]) -> None:
    # The mask is written on its own axis-aligned 1 mm RAS grid (nibabel), covering a 6 mm
    # cube around the bone insert centre; QA must resample it onto the oblique CT grid.
    size = 13
    affine = np.eye(4)
    centre_ras = np.array([-BONE_CENTRE[0], -BONE_CENTRE[1], BONE_CENTRE[2]])
    affine[:3, 3] = centre_ras - (size - 1) / 2.0
    data = np.zeros((size, size, size), dtype=np.uint8)
    data[3:10, 3:10, 3:10] = 1
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "bone.nii.gz")
    body = ('[[checks]]\nname = "bone_mask"\nquantity = "ct_number_hu"\nmask = "bone.nii.gz"\n'
            "expected = 900.0\ntolerance = 7.0\n")
    report = _report(load_qa_spec(_spec(tmp_path, body)), stacks)
    assert report.passed, report.results[0].message
    assert report.results[0].voxel_count > 100


def test_junit_xml(tmp_path: Path, stacks: list[FakeStack]) -> None:
    body = (_check("water", "ct_number_hu", WATER_CENTRE, 10.0, 0.0, "tolerance = 7.0")
            + _check("bad", "ct_number_hu", WATER_CENTRE, 10.0, 100.0, "tolerance = 7.0"))
    report = _report(load_qa_spec(_spec(tmp_path, body)), stacks)
    root = ET.parse(write_junit(report, tmp_path / "out" / "qa.xml")).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["water"].find("failure") is None
    failure = cases["bad"].find("failure")
    assert failure is not None and "expected 100 ± 7" in failure.get("message", "")


@pytest.mark.parametrize(("body", "match"), [
    ("", r"checks: need at least one"),
    (_check("a", "hu", WATER_CENTRE, 1, 0, "tolerance = 1"), r"quantity: 'hu' is not one of"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1\ntolerance_pct = 1"), r"exactly one of tolerance"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = -1"), r"tolerance: must be a positive"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance_pct = 5"), r"needs a non-zero expected"),
    (_check("a", "ct_number_hu", WATER_CENTRE, -1, 0, "tolerance = 1"), r"positive radius_mm"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", 'mask = "m.nii"'), r"either centre_lps_mm"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", 'statistic = "mode"'), r"statistic: 'mode'"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", 'adc_source = "x"'), r"adc_source: 'x'"),
    (_check("a", "signal", WATER_CENTRE, 1, 0, "tolerance = 1"), r"role: quantity 'signal' needs"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", "min_voxels = 0"), r"min_voxels"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", 'series_description = "("'), r"series_description: not a valid"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1", "colour = 1"), r"checks\[0\].colour: unknown key"),
    (_check("a", "ct_number_hu", WATER_CENTRE, 1, 0, "tolerance = 1") * 2, r"duplicate check name 'a'"),
    (_check("a", "ct_number_hu", (1.0, 2.0), 1, 0, "tolerance = 1"), r"centre_lps_mm: expected 3 numbers"),
])
def test_invalid_spec_is_a_config_error(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_qa_spec(_spec(tmp_path, body))


def test_unreadable_or_4d_mask_fails_the_check_with_reason(tmp_path: Path, stacks: list[FakeStack]) -> None:
    (tmp_path / "garbage.nii").write_bytes(b"not a nifti file at all" * 20)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), dtype=np.uint8), np.eye(4)), tmp_path / "four_d.nii")
    body = "".join(
        f'[[checks]]\nname = "{n}"\nquantity = "ct_number_hu"\nmask = "{f}"\nexpected = 0.0\ntolerance = 7.0\n'
        for n, f in (("garbage", "garbage.nii"), ("four_d", "four_d.nii"))
    )
    report = _report(load_qa_spec(_spec(tmp_path, body)), stacks)
    by = {r.check.name: r for r in report.results}
    assert "cannot be read as NIfTI" in by["garbage"].message
    assert "expected a 3-D label image, found shape (4, 4, 4, 2)" in by["four_d"].message


def test_scan_without_usable_stacks_is_an_input_error(tmp_path: Path) -> None:
    body = _check("water", "ct_number_hu", WATER_CENTRE, 10.0, 0.0, "tolerance = 7.0")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("not DICOM")
    with pytest.raises(InputError, match="no usable DICOM stack found"):
        run_qa(load_qa_spec(_spec(tmp_path, body)), empty)
