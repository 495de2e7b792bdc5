"""Phantom QA: measure named regions of a phantom scan against expected values.

A QA spec is a TOML file (validated by `bonelesion.config.build_config`; unknown keys are
errors)::

    name = "ct_water"
    description = "CT number of water (ACR: -7 to +7 HU)"

    [[checks]]
    name = "water"
    quantity = "ct_number_hu"        # ct_number_hu | adc_mm2_per_s | fat_fraction | signal
    centre_lps_mm = [0.0, 0.0, 0.0]  # a sphere …
    radius_mm = 10.0
    # mask = "water_mask.nii.gz"     # … or a label image (NIfTI, RAS as nibabel writes it)
    expected = 0.0
    tolerance = 7.0                  # absolute, in the quantity's unit
    # tolerance_pct = 5.0            # or relative to `expected`

`run_qa(spec, scan_dir)` plans and loads the scan's series as every command does (index,
series policy, loader), measures each region (`measure_check`) and returns a `QaReport`;
`write_junit` writes it as JUnit XML (one test case per check) for CI.

Quantities
----------
``ct_number_hu``
    Mean (or median) CT number of the region in the CT stack (HU after the modality LUT).
``adc_mm2_per_s``
    Mean ADC of the region: the scanner's ADC map when present (``adc_source = "auto"`` or
    ``"scanner"``), else a map fitted from the DWI stacks by `bonelesion.stages.dwi_adc.fit_adc`.
``fat_fraction``
    Signal fat fraction F / (W + F) of the region means, from Dixon water and fat images;
    without them, from in/opposed phase as (IP − OP) / (2·IP), valid for FF ≤ 0.5.
``signal``
    Mean stored signal of the region in the stack with role ``role``.
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.config import build_config, read_toml
from bonelesion.errors import ConfigError, EmptyMaskError, InputError, SeriesSelectionError
from bonelesion.model.volume import Volume
from bonelesion.pipeline.definition import RoleSpec
from bonelesion.pipeline.plan import ChoiceStatus, RoleChoice, StackCandidate, StudyPlan
from bonelesion.pipeline.selection import choose_role
from bonelesion.roi.lesion import Sphere, rasterise_sphere

__all__ = [
    "QaCheck",
    "QaSpec",
    "QaResult",
    "QaReport",
    "load_qa_spec",
    "run_qa",
    "write_junit",
    "format_table",
    "sphere_mask",
    "measure_check",
    "spec_from_truth",
    "QUANTITIES",
]

logger = logging.getLogger(__name__)

#: Quantity → (stack roles it reads, unit for display).
QUANTITIES: dict[str, tuple[tuple[str, ...], str]] = {
    "ct_number_hu": (("ct",), "HU"),
    "adc_mm2_per_s": (("adc", "dwi"), "mm²/s"),
    "fat_fraction": (("dixon_water", "dixon_fat", "dixon_in_phase", "dixon_opposed_phase"), ""),
    "signal": ((), ""),
}
_STATISTICS = ("mean", "median")
_ADC_SOURCES = ("auto", "scanner", "fitted")


@dataclass(frozen=True, kw_only=True)
class QaCheck:
    """One region and its expected value (see module docstring)."""

    name: str
    quantity: str
    expected: float
    tolerance: float | None = None
    tolerance_pct: float | None = None
    # tuple[float, ...] (length checked below): config.build_config mis-coerces fixed-length
    # tuples (it swaps type and value in bonelesion/config.py::_coerce; reported to the lead).
    centre_lps_mm: tuple[float, ...] | None = None
    radius_mm: float | None = None
    mask: str = ""
    statistic: str = "mean"
    role: str = ""
    series_description: str = ""
    adc_source: str = "auto"
    min_voxels: int = 10
    note: str = ""

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ConfigError(f"quantity: {self.quantity!r} is not one of {', '.join(QUANTITIES)}")
        if self.quantity == "signal" and not self.role:
            raise ConfigError("role: quantity 'signal' needs the stack role to read (e.g. 'dwi')")
        if (self.tolerance is None) == (self.tolerance_pct is None):
            raise ConfigError("tolerance: give exactly one of tolerance and tolerance_pct")
        tol = self.tolerance if self.tolerance is not None else self.tolerance_pct
        assert tol is not None
        if not (math.isfinite(tol) and tol > 0):
            raise ConfigError(f"tolerance: must be a positive number, found {tol}")
        if self.tolerance_pct is not None and self.expected == 0:
            raise ConfigError("tolerance_pct: a relative tolerance needs a non-zero expected value")
        sphere = self.centre_lps_mm is not None or self.radius_mm is not None
        if sphere == bool(self.mask):
            raise ConfigError("region: give either centre_lps_mm + radius_mm, or mask")
        if self.centre_lps_mm is not None and len(self.centre_lps_mm) != 3:
            raise ConfigError(
                f"centre_lps_mm: expected 3 numbers (L, P, S mm), found {len(self.centre_lps_mm)}"
            )
        if sphere and (self.centre_lps_mm is None or self.radius_mm is None or self.radius_mm <= 0):
            raise ConfigError("radius_mm: a sphere needs centre_lps_mm and a positive radius_mm")
        if self.statistic not in _STATISTICS:
            raise ConfigError(
                f"statistic: {self.statistic!r} is not one of {', '.join(_STATISTICS)}"
            )
        if self.adc_source not in _ADC_SOURCES:
            raise ConfigError(
                f"adc_source: {self.adc_source!r} is not one of {', '.join(_ADC_SOURCES)}"
            )
        if self.min_voxels < 1:
            raise ConfigError("min_voxels: must be ≥ 1")
        try:
            re.compile(self.series_description)
        except re.error as exc:
            raise ConfigError(
                f"series_description: not a valid regular expression ({exc})"
            ) from exc

    @property
    def half_width(self) -> float:
        """Absolute tolerance in the quantity's unit."""
        if self.tolerance is not None:
            return float(self.tolerance)
        assert self.tolerance_pct is not None
        return abs(self.expected) * self.tolerance_pct / 100.0


@dataclass(frozen=True, kw_only=True)
class QaSpec:
    """A named list of checks."""

    name: str
    checks: tuple[QaCheck, ...] = ()
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if not self.checks:
            raise ConfigError("checks: need at least one [[checks]] table")
        names = [c.name for c in self.checks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"checks: duplicate check name {dup[0]!r}")


@dataclass(frozen=True, kw_only=True)
class QaResult:
    """Outcome of one check (``measured`` is None when it could not be measured)."""

    check: QaCheck
    passed: bool
    measured: float | None
    voxel_count: int = 0
    series_instance_uid: str = ""
    message: str = ""
    duration_s: float = 0.0

    @property
    def deviation(self) -> float | None:
        """Measured − expected."""
        return None if self.measured is None else self.measured - self.check.expected


@dataclass(frozen=True, kw_only=True)
class QaReport:
    """All results of one spec on one scan."""

    spec: QaSpec
    scan_dir: str
    results: tuple[QaResult, ...]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(r.passed for r in self.results)


def load_qa_spec(path: str | Path) -> QaSpec:
    """Read and validate a QA spec.

    Raises
    ------
    ConfigError
        Unreadable TOML, unknown key or invalid value (naming the dotted key and file).
    """
    path = Path(path)
    data = read_toml(path)
    checks = data.get("checks")
    if isinstance(checks, list):
        data = dict(data)
        data["checks"] = checks
    try:
        spec = build_config(QaSpec, data)
    except ConfigError as exc:
        raise ConfigError(f"QA spec {path}: {exc}") from exc
    import dataclasses

    resolved = tuple(
        dataclasses.replace(c, mask=str((path.parent / c.mask).resolve())) if c.mask else c
        for c in spec.checks
    )
    return dataclasses.replace(spec, checks=resolved, source=str(path))


# ----------------------------------------------------------------------------- regions


def sphere_mask(
    volume: Volume, centre_lps_mm: Sequence[float], radius_mm: float
) -> NDArray[np.bool_]:
    """Voxels of ``volume`` whose centres lie within ``radius_mm`` of ``centre_lps_mm``.

    Works on any (oblique) grid; this is `bonelesion.roi.lesion.rasterise_sphere`, which
    evaluates only the sphere's bounding box in index space, so large volumes cost little.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(array=np.zeros((5, 5, 5)), spacing_mm=(1.0, 1.0, 1.0),
    ...            origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3))
    >>> int(sphere_mask(v, (2.0, 2.0, 2.0), 1.0).sum())  # centre + 6 face neighbours
    7
    """
    l_mm, p_mm, s_mm = (float(x) for x in centre_lps_mm)
    # + 1e-9 mm: voxel centres on the sphere's surface count as inside despite rounding
    return rasterise_sphere(volume, Sphere((l_mm, p_mm, s_mm), float(radius_mm) + 1e-9))


def _mask_from_file(path: str, target: Volume) -> NDArray[np.bool_]:
    import nibabel as nib

    try:
        img: Any = nib.load(path)
        data = np.asarray(img.dataobj)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(
            f"QA mask {path} cannot be read as NIfTI ({exc}). Potential fix: "
            "write the mask as .nii or .nii.gz."
        ) from exc
    if data.ndim != 3:
        raise InputError(
            f"QA mask {path}: expected a 3-D label image, found shape {data.shape}. "
            "Potential fix: save one 3-D mask per region."
        )
    # The Volume keeps the NIfTI axes as stored; its affine (RAS → LPS) places them, and
    # resampling through patient coordinates puts the mask on the target grid.
    affine = np.asarray(img.affine, dtype=np.float64)
    vol = Volume.from_ras_affine(np.asarray(data != 0, dtype=np.float32), affine)
    return (
        np.asarray(vol.resample_like(target, order=0, check_frame_of_reference=False).array) > 0.5
    )


# ----------------------------------------------------------------------------- measuring


def _region(check: QaCheck, volume: Volume) -> NDArray[np.bool_]:
    if check.mask:
        return _mask_from_file(check.mask, volume)
    assert check.centre_lps_mm is not None and check.radius_mm is not None
    return sphere_mask(volume, check.centre_lps_mm, check.radius_mm)


def _stat(values: NDArray[Any], statistic: str) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(np.median(values) if statistic == "median" else np.mean(values, dtype=np.float64))


def _region_values(check: QaCheck, volume: Volume) -> tuple[NDArray[Any], int]:
    mask = _region(check, volume)
    n = int(mask.sum())
    if n < check.min_voxels:
        raise EmptyMaskError(
            f"QA check {check.name!r}: region holds {n} voxels of series "
            f"{volume.series.series_instance_uid} (need ≥ {check.min_voxels}). Potential fix: "
            "check the centre (LPS mm) lies inside the scan's field of view, or enlarge radius_mm."
        )
    return np.asarray(volume.array)[mask].astype(np.float64), n


#: Preferences of the series policy when several series could serve a check (a tie is an
#: error: name the series with ``series_description``).
QA_PREFER = ("original", "thinnest_slice", "most_slices")


def _spec_for(check: QaCheck, role: str) -> RoleSpec:
    return RoleSpec(modality="CT" if role == "ct" else "MR", stack_roles=(role,),
                    unit="series" if role == "dwi" else "stack",
                    description_pattern=check.series_description, prefer=QA_PREFER)


def _choose(check: QaCheck, role: str, candidates: Sequence[StackCandidate],
            scan_dir: str) -> RoleChoice | None:
    """Return the series policy's choice for a check's role (None when the scan has none)."""
    choice = choose_role(role, _spec_for(check, role), candidates)
    if choice.status == ChoiceStatus.MISSING:
        return None
    if choice.status == ChoiceStatus.TIE:
        raise SeriesSelectionError(
            f"QA check {check.name!r} in {scan_dir}: {len(choice.candidates)} {role} series "
            f"could serve it ({'; '.join(choice.candidates)}). Potential fix: set "
            "series_description in the check to a pattern naming one series."
        )
    return choice


def _volumes_for(check: QaCheck, candidates: Sequence[StackCandidate], scan_dir: str,
                 study_uid: str) -> dict[str, tuple[Volume, ...]]:
    """Choose (series policy) and load the series a check reads, by role."""
    from bonelesion.pipeline.loading import load_study_volumes

    roles = (check.role,) if check.quantity == "signal" else QUANTITIES[check.quantity][0]
    choices = [c for c in (_choose(check, r, candidates, scan_dir) for r in roles)
               if c is not None]
    if check.quantity == "adc_mm2_per_s":
        by = {c.role: c for c in choices}
        if check.adc_source == "scanner" or (check.adc_source == "auto" and "adc" in by):
            choices = [by["adc"]] if "adc" in by else []
        else:
            choices = [by["dwi"]] if "dwi" in by else []
    plan = StudyPlan(study_instance_uid=study_uid, choices=tuple(choices), stages=(),
                     skipped_stages={})
    return dict(load_study_volumes(plan).by_role)


def measure_check(check: QaCheck, volumes: Mapping[str, Sequence[Volume]]
                  ) -> tuple[float, int, str]:
    """Measure one check on the chosen volumes (role → volumes); pure apart from the fit.

    Returns the region statistic, its voxel count and the series UID measured.

    Raises
    ------
    SeriesSelectionError
        The volumes the check's quantity needs are absent.
    EmptyMaskError
        The region holds fewer than ``min_voxels`` voxels.
    """
    def one(role: str) -> Volume | None:
        vols = volumes.get(role) or ()
        return vols[0] if vols else None

    def stat(volume: Volume) -> tuple[float, int, str]:
        values, n = _region_values(check, volume)
        return _stat(values, check.statistic), n, volume.series.series_instance_uid

    def pair(a: Volume, b: Volume) -> tuple[float, float, int, str]:
        va, n = _region_values(check, a)
        vb, _ = _region_values(check, b.resample_like(a, order=1))
        return _stat(va, check.statistic), _stat(vb, check.statistic), n, \
            a.series.series_instance_uid

    if check.quantity in ("ct_number_hu", "signal"):
        role = "ct" if check.quantity == "ct_number_hu" else check.role
        volume = one(role)
        if volume is None:
            raise SeriesSelectionError(f"QA check {check.name!r}: no {role} series. Potential "
                                       "fix: check the scan, or the check's series_description.")
        return stat(volume)
    if check.quantity == "adc_mm2_per_s":
        scanner, dwi = one("adc"), tuple(volumes.get("dwi") or ())
        if scanner is not None and check.adc_source in ("auto", "scanner"):
            return stat(scanner)
        if dwi and check.adc_source in ("auto", "fitted"):
            from bonelesion.stages.config import DwiAdcConfig
            from bonelesion.stages.dwi_adc import fit_adc

            fit = fit_adc(dwi, config=DwiAdcConfig())
            values, n = _region_values(check, fit.volume)
            return _stat(values, check.statistic), n, dwi[0].series.series_instance_uid
        raise SeriesSelectionError(
            f"QA check {check.name!r}: no "
            f"{'scanner ADC map' if check.adc_source == 'scanner' else 'ADC map or DWI series'} "
            f"(adc_source={check.adc_source!r}). Potential fix: check the scan holds diffusion "
            "series."
        )
    water, fat = one("dixon_water"), one("dixon_fat")
    if water is not None and fat is not None:
        mw, mf, n, uid = pair(water, fat)
        return mf / (mw + mf), n, uid
    ip, op = one("dixon_in_phase"), one("dixon_opposed_phase")
    if ip is not None and op is not None:
        mi, mo, n, uid = pair(ip, op)
        return (mi - mo) / (2.0 * mi), n, uid
    raise SeriesSelectionError(
        f"QA check {check.name!r}: no Dixon water+fat or in/opposed-phase pair. "
        "Potential fix: check the scan holds the chemical-shift series."
    )


def run_qa(spec: QaSpec, scan_dir: str | Path) -> QaReport:
    """Measure every check of ``spec`` on the phantom scan in ``scan_dir``.

    The scan goes the way every study goes: the export is indexed
    (`bonelesion.pipeline.inventory`), each check's series are chosen by the series policy
    (`bonelesion.pipeline.selection`) and loaded (`bonelesion.pipeline.loading`). A check
    that cannot be measured (no such series, region outside the field of view) fails with
    the reason; the others still run.

    Raises
    ------
    InputError
        If ``scan_dir`` holds no readable image series, or more than one study.
    """
    import tempfile

    from bonelesion.pipeline.inventory import build_inventory

    scan = str(scan_dir)
    with tempfile.TemporaryDirectory(prefix="bonelesion-qa-") as tmp:
        inventory = build_inventory(scan_dir, Path(tmp) / "catalogue.sqlite")
    studies = [s for s in inventory.studies if s.candidates]
    if not studies:
        raise InputError(
            f"QA scan {scan}: no usable DICOM stack found. Potential fix: point "
            "SCAN_DIR at the folder holding the phantom series."
        )
    if len(studies) > 1:
        raise InputError(
            f"QA scan {scan}: holds {len(studies)} studies "
            f"({', '.join(s.study_instance_uid for s in studies)}); a QA spec measures one scan. "
            "Potential fix: point SCAN_DIR at one study's folder."
        )
    study = studies[0]
    results = []
    for check in spec.checks:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                volumes = _volumes_for(check, study.candidates, scan, study.study_instance_uid)
                measured, n, uid = measure_check(check, volumes)
        except InputError as exc:
            results.append(QaResult(check=check, passed=False, measured=None, message=str(exc),
                                    duration_s=time.perf_counter() - start))
            continue
        ok = math.isfinite(measured) and abs(measured - check.expected) <= check.half_width
        msg = "" if ok else (
            f"{check.name}: measured {measured:.6g}, expected {check.expected:.6g} ± "
            f"{check.half_width:.3g} (deviation {measured - check.expected:+.3g}) "
            f"in series {uid}")
        results.append(QaResult(check=check, passed=ok, measured=measured, voxel_count=n,
                                series_instance_uid=uid, message=msg,
                                duration_s=time.perf_counter() - start))
    return QaReport(spec=spec, scan_dir=scan, results=tuple(results))


# ----------------------------------------------------------------------------- output


def format_table(report: QaReport) -> str:
    """Render the report as a fixed-width pass/fail table."""
    header = ("check", "quantity", "measured", "expected", "tolerance", "voxels", "result")
    rows = [header]
    for r in report.results:
        c = r.check
        tol = f"±{c.tolerance:g}" if c.tolerance is not None else f"±{c.tolerance_pct:g}%"
        rows.append(
            (
                c.name,
                c.quantity,
                "-" if r.measured is None else f"{r.measured:.6g}",
                f"{c.expected:.6g}",
                tol,
                str(r.voxel_count),
                "PASS" if r.passed else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_fail = sum(not r.passed for r in report.results)
    lines.append("")
    lines.append(f"{report.spec.name}: {len(report.results) - n_fail} passed, {n_fail} failed")
    for r in report.results:
        if not r.passed:
            lines.append(f"  FAIL {r.message}")
    return "\n".join(lines) + "\n"


def write_junit(report: QaReport, path: str | Path) -> Path:
    """Write JUnit XML (one ``testcase`` per check; ``failure`` holds the reason)."""
    failures = sum(not r.passed for r in report.results)
    suite = ET.Element(
        "testsuite",
        {
            "name": report.spec.name,
            "tests": str(len(report.results)),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0",
            "time": f"{sum(r.duration_s for r in report.results):.3f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "spec", "value": report.spec.source})
    for r in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"bonelesion.qa.{report.spec.name}",
                "name": r.check.name,
                "time": f"{r.duration_s:.3f}",
            },
        )
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"quantity={r.check.quantity} measured={r.measured} expected={r.check.expected} "
            f"half_width={r.check.half_width} voxels={r.voxel_count} "
            f"series={r.series_instance_uid}"
        )
        if not r.passed:
            fail = ET.SubElement(case, "failure", {"message": r.message, "type": "QaFailure"})
            fail.text = r.message
    root = ET.Element("testsuites", {"tests": str(len(report.results)), "failures": str(failures)})
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path


def spec_from_truth(
    truth_path: str | Path,
    *,
    name: str = "digital_phantom",
    radius_fraction: float = 0.5,
    ct_tolerance_hu: float = 7.0,
    adc_tolerance_pct: float = 5.0,
    fat_fraction_tolerance: float = 0.05,
) -> str:
    """TOML text of a QA spec for a digital phantom study, from its ``truth.json``.

    One CT, ADC and fat-fraction check per lesion sphere, each on a concentric sphere of
    ``radius_fraction`` × the lesion radius (inside the homogeneous core, clear of partial
    volume at the edge). Tolerances: CT ±7 HU (ACR water range, CLINICAL_REFERENCE §D2),
    ADC ±5 % (ice-water criterion, CLINICAL_REFERENCE QA item 17), fat fraction ±0.05
    (design choice: twice the noise-free two-point Dixon error at the phantom's SNR).
    """
    import json

    truth = json.loads(Path(truth_path).read_text())
    roles = {s["role"] for s in truth.get("series", [])}
    lines = [
        "# Generated by bonelesion.phantom.qa.spec_from_truth from the digital phantom's",
        "# truth.json (lesion centres and radii in LPS mm; true values of each sphere).",
        f'name = "{name}"',
        f'description = "Digital phantom (vendor {truth.get("vendor", "?")}): lesion inserts"',
        "",
    ]
    for les in truth["lesions"]:
        centre = ", ".join(f"{float(x):.3f}" for x in les["center_lps_mm"])
        radius = float(les["radius_mm"]) * radius_fraction
        region = f"centre_lps_mm = [{centre}]\nradius_mm = {radius:.3f}"
        if "ct" in roles:
            lines += [
                "[[checks]]",
                f'name = "{les["lesion_id"]}_ct"',
                'quantity = "ct_number_hu"',
                region,
                f"expected = {float(les['attenuation_mean_hu']):.3f}",
                f"tolerance = {ct_tolerance_hu}",
                "",
            ]
        if roles & {"adc", "dwi"}:
            lines += [
                "[[checks]]",
                f'name = "{les["lesion_id"]}_adc"',
                'quantity = "adc_mm2_per_s"',
                region,
                f"expected = {float(les['adc_mm2_per_s']):.6e}",
                f"tolerance_pct = {adc_tolerance_pct}",
                "",
            ]
        if roles & {"dixon_water", "dixon_in_phase"}:
            lines += [
                "[[checks]]",
                f'name = "{les["lesion_id"]}_fat_fraction"',
                'quantity = "fat_fraction"',
                region,
                f"expected = {float(les['fat_fraction']):.4f}",
                f"tolerance = {fat_fraction_tolerance}",
                "",
            ]
    return "\n".join(lines)
