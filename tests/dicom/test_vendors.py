"""Tests of bonelesion.dicom.vendors against real scanner DICOM and analytic truth.

Truth comes from outside the code under test: the reference conversions kept with the data
(dcm2niix / dicom2nifti ``.bval`` / ``.bvec``), strings the scanner wrote itself (Siemens
SequenceName ``ep_b1000#1``, the MANIFEST's TE values), the physics of the fat–water shift,
and the published ranges of CLINICAL_REFERENCE.md.
"""

from __future__ import annotations

import copy
import gzip
import math
import warnings
from collections import Counter
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.tag import Tag
from support.testdata import shared_path

from bonelesion.dicom import vendors as v
from bonelesion.dicom.vendors import DiffusionKind, Role, Vendor
from bonelesion.errors import DataQualityWarning, UnsupportedInputError

pytestmark = pytest.mark.shared_data

#: Reference bvec files print 6 significant digits; |cos| of two unit vectors that agree to
#: that precision differs from 1 by far less than this.
ATOL_ABS_DOT = 2e-3
#: b-values are stored as integers or FL/FD of integers.
ATOL_B_S_PER_MM2 = 1e-3
#: Unit vectors computed here are normalised in float64.
ATOL_UNIT = 1e-9
#: Two echo times are "the same" to the TE precision of headers (µs).
ATOL_TE_MS = 1e-3


# ---------------------------------------------------------------------------------------
# Helpers: read and flatten (the reader owns the real `flatten_frames`)
# ---------------------------------------------------------------------------------------


def _read(path: Path) -> Dataset:
    """Read a header; the reading warnings real data raise are expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            return pydicom.dcmread(fh, stop_before_pixels=True, force=True)


def _flatten(ds: Dataset) -> list[Dataset]:
    """One flat header per frame: shared + per-frame functional group items at top level."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [ds]
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        flat = Dataset()
        for elem in ds:
            if elem.keyword in (
                "PerFrameFunctionalGroupsSequence",
                "SharedFunctionalGroupsSequence",
            ):
                continue
            flat.add(elem)
        for group in (shared, item):
            for seq in group:
                if seq.VR == "SQ" and len(seq.value) == 1:
                    for elem in seq.value[0]:
                        flat.add(elem)
        if "FrameType" in flat:
            flat.ImageType = flat.FrameType
        if "EffectiveEchoTime" in flat:
            flat.EchoTime = flat.EffectiveEchoTime
        frames.append(flat)
    return frames


@cache
def _file_frames(path: Path) -> tuple[Dataset, ...]:
    """Flat frames of one file (read once per test session)."""
    return tuple(_flatten(_read(path)))


def _headers(*parts: str) -> tuple[Dataset, ...]:
    """Flat headers of every file under shared/data/<parts>, in file-name order."""
    root = shared_path(*parts)
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return tuple(frame for path in paths for frame in _file_frames(path))


def _first_frames(*parts: str) -> list[Dataset]:
    """First flat frame of each file under a folder (one enhanced file = one volume)."""
    root = shared_path(*parts)
    return [_file_frames(p)[0] for p in sorted(root.iterdir())]


def _nibabel_data(name: str) -> Path:
    """Return a real Siemens file shipped with nibabel's own tests (skip when absent)."""
    import nibabel

    path = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / name
    if not path.exists():
        pytest.skip(f"nibabel test file {name} not installed")
    return path


def _reference(dataset: str, name: str) -> Path:
    return shared_path(dataset, "reference", name)


def _image_space(vector: tuple[float, float, float], ds: Dataset) -> np.ndarray:
    """LPS vector → dcm2niix/dicom2nifti image-space bvec (row, −column, normal)."""
    iop = [float(x) for x in ds.ImageOrientationPatient]
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    g = np.asarray(vector)
    return np.array([g @ row, -(g @ col), g @ np.cross(row, col)])


# ---------------------------------------------------------------------------------------
# b-values against the reference .bval files
# ---------------------------------------------------------------------------------------

BVAL_CASES = [
    # (data set, dicom folder parts, reference bval)
    ("dwi_ge_signa_pioneer", ("01_Ax_DWI_TENSOR_R2",), "Ax_DWI_TENSOR_R2_1.bval"),
    ("dwi_ge_signa_pioneer", ("04_Ax_DWI_TENSOR_R2MB2",), "Ax_DWI_TENSOR_R2MB2_4.bval"),
    ("dwi_canon_galan_v60_classic", ("9000_DTI_PA-ortho",), "DTI_PA-ortho_9000.bval"),
    (
        "multivendor_cases_dicom2nifti",
        ("philips", "dti", "002"),
        "philips/dti/002_ground_truth.bval",
    ),
    (
        "multivendor_cases_dicom2nifti",
        ("philips", "dti", "001"),
        "philips/dti/001_ground_truth.bval",
    ),
    (
        "multivendor_cases_dicom2nifti",
        ("philips_enhanced", "dti", "001"),
        "philips_enhanced/dti/001_ground_truth.bval",
    ),
    (
        "multivendor_cases_dicom2nifti",
        ("siemens", "dti_classic", "001"),
        "siemens/dti_classic/001_ground_truth.bval",
    ),
    (
        "multivendor_cases_dicom2nifti",
        ("siemens", "dti", "001"),
        "siemens/dti/001_ground_truth.bval",
    ),
    ("multivendor_cases_dicom2nifti", ("ge", "dti", "001"), "ge/dti/001_ground_truth.bval"),
    ("dwi_siemens_xa30_enhanced_pa", ("10_DWI_dir80_PA",), "10_DWI_dir80_PA.bval"),
]


@pytest.mark.parametrize(
    ("dataset", "folder", "bval"),
    [
        pytest.param(*case, marks=pytest.mark.slow)  # 21 files, 819 enhanced frames
        if case[0] == "dwi_siemens_xa30_enhanced_pa"
        else case
        for case in BVAL_CASES
    ],
    ids=lambda x: str(x),
)
def test_b_values_match_reference_bval(dataset: str, folder: tuple[str, ...], bval: str) -> None:
    """Per-image b-values, counted per volume, equal the reference converter's .bval."""
    headers = _headers(dataset, "dicom", *folder)
    reference = np.loadtxt(_reference(dataset, bval), ndmin=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # dicom2nifti GE: no PE direction
        found = [v.b_value_s_per_mm2(ds) for ds in headers]
    assert None not in found
    images_per_volume, remainder = divmod(len(headers), reference.size)
    assert remainder == 0
    expected = Counter({float(b): n * images_per_volume for b, n in Counter(reference).items()})
    assert Counter(float(b) for b in found) == expected  # type: ignore[arg-type]


@pytest.mark.slow  # reads the 819 frames of series 10
def test_xa30_b_value_sequence_matches_bval_volume_by_volume() -> None:
    """Enhanced functional-group b-values, volume by volume (one file = one volume)."""
    reference = np.loadtxt(_reference("dwi_siemens_xa30_enhanced_pa", "10_DWI_dir80_PA.bval"))
    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "10_DWI_dir80_PA")
    found: list[float] = []
    for path in sorted(folder.iterdir()):
        frames = _file_frames(path)
        values = {v.b_value_s_per_mm2(f) for f in frames}
        assert len(values) == 1  # every frame of a volume carries the volume's b
        value = values.pop()
        assert value is not None
        found.append(value)
    np.testing.assert_allclose(np.asarray(found), reference, atol=ATOL_B_S_PER_MM2)


def _without_standard_b(headers: tuple[Dataset, ...], *, bare: bool) -> list[Dataset]:
    """Copy headers without (0018,9087); `bare` also drops (0018,9089), the other clue."""
    stripped = []
    for ds in headers:
        copy_ = copy.deepcopy(ds)
        del copy_.DiffusionBValue
        if bare:
            del copy_.DiffusionGradientOrientation
        stripped.append(copy_)
    return stripped


@pytest.mark.parametrize("folder", ["002", "001"])
def test_philips_private_b_value_used_when_standard_tag_absent(folder: str) -> None:
    """(2001,1003) alone (FL, and VR UN in the Ingenia files) gives the reference b-values.

    Per image, b0 needs evidence (here the standard tag kept on the b0 images); for a series
    stripped of every standard tag, the series-level helper recovers the b0 images.
    """
    headers = _headers("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", folder)
    bval = _reference("multivendor_cases_dicom2nifti", f"philips/dti/{folder}_ground_truth.bval")
    reference = np.loadtxt(bval, ndmin=1)
    expected = np.sort(np.repeat(reference, len(headers) // reference.size))
    per_image = [v.b_value_s_per_mm2(ds) for ds in _without_standard_b(headers, bare=False)]
    np.testing.assert_allclose(sorted(per_image), expected)  # type: ignore[type-var]
    bare = _without_standard_b(headers, bare=True)
    b0_indices = [i for i, ds in enumerate(headers) if float(ds.DiffusionBValue) == 0.0]
    assert b0_indices
    assert all(v.b_value_s_per_mm2(bare[i]) is None for i in b0_indices)
    by_series = v.b_values_of_series_s_per_mm2(bare)
    np.testing.assert_allclose(sorted(by_series), expected)  # type: ignore[type-var]


def test_series_helper_leaves_non_diffusion_series_alone() -> None:
    """A series without any b > 0 gets no b0 by context (CHAOS, Philips T1 dual echo)."""
    headers = _headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    assert set(v.b_values_of_series_s_per_mm2(list(headers))) == {None}
    ge = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    assert v.b_values_of_series_s_per_mm2(list(ge)) == [v.b_value_s_per_mm2(ds) for ds in ge]


def test_siemens_private_b_value_and_creator_block_moved() -> None:
    """Siemens (0019,xx0C) is found through its creator even when moved to block 0x11."""
    ds = _read(_nibabel_data("siemens_dwi_1000.dcm.gz"))
    # The scanner's own sequence name states the b-value: "ep_b1000#1".
    assert ds.SequenceName.startswith("ep_b1000")
    moved = Dataset()
    for elem in ds:
        if elem.tag.group == 0x0019:
            continue
        moved.add(elem)
    moved.add_new(Tag(0x0019, 0x0011), "LO", "SIEMENS MR HEADER")
    moved.add_new(Tag(0x0019, 0x0010), "LO", "SOME OTHER CREATOR")
    moved.add_new(Tag(0x0019, 0x110C), "IS", "1000")
    moved.add_new(Tag(0x0019, 0x100C), "IS", "9999")  # another owner's element: ignored
    for name in ("SequenceName",):
        delattr(moved, name)
    moved[Tag(0x0029, 0x1010)] = copy.deepcopy(ds[Tag(0x0029, 0x1010)])
    assert v.b_value_s_per_mm2(moved) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)
    del moved[Tag(0x0029, 0x1010)]
    assert v.b_value_s_per_mm2(moved) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)


def test_siemens_csa_header_b_value_and_direction() -> None:
    """CSA image header B_value / DiffusionGradientDirection (nibabel's real Siemens files)."""
    dwi = _read(_nibabel_data("siemens_dwi_1000.dcm.gz"))
    b0 = _read(_nibabel_data("siemens_dwi_0.dcm.gz"))
    private_direction = [float(x) for x in dwi[Tag(0x0019, 0x100E)].value]
    # CSA path only: drop the (0019,xxxx) block so nothing else can answer.
    csa_only = Dataset()
    for elem in dwi:
        if elem.tag.group != 0x0019:
            csa_only.add(elem)
    assert v.b_value_s_per_mm2(csa_only) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)
    assert v.diffusion_kind(csa_only) is DiffusionKind.DIRECTIONAL
    direction = v.diffusion_direction_lps(csa_only)
    assert direction is not None
    # The CSA direction and the scanner's separate (0019,100E) element agree.
    unit = np.asarray(private_direction) / np.linalg.norm(private_direction)
    assert abs(float(np.dot(direction, unit))) == pytest.approx(1.0, abs=ATOL_ABS_DOT)
    assert b0.SequenceName == "ep_b0"
    assert v.b_value_s_per_mm2(b0) == 0.0
    assert v.diffusion_kind(b0) is DiffusionKind.B0
    assert v.diffusion_direction_lps(b0) is None


def test_ge_private_b_value_with_and_without_offset() -> None:
    """GE (0043,1039) first value, plain (as the SIGNA stores it) and with the 1e9 offset."""
    headers = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    dwi = next(ds for ds in headers if "DiffusionBValue" in ds)
    as_stored = copy.deepcopy(dwi)
    del as_stored.DiffusionBValue
    assert v.b_value_s_per_mm2(as_stored) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)
    offset = copy.deepcopy(as_stored)
    values = list(offset[Tag(0x0043, 0x1039)].value)
    offset[Tag(0x0043, 0x1039)].value = [1_000_000_000 + 1000, *values[1:]]
    assert v.b_value_s_per_mm2(offset) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)
    b0 = next(ds for ds in headers if "DiffusionBValue" not in ds)
    b0_offset = copy.deepcopy(b0)
    b0_offset[Tag(0x0043, 0x1039)].value = [1_000_000_000, *values[1:]]
    assert v.b_value_s_per_mm2(b0_offset) == 0.0


def test_ge_offset_in_the_standard_b_value_element() -> None:
    """Some GE software writes the 1e9 offset into (0018,9087) as well (dcm2niix #602)."""
    headers = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    dwi = copy.deepcopy(next(ds for ds in headers if "DiffusionBValue" in ds))
    dwi.DiffusionBValue = 1_000_000_000 + 1000
    assert v.b_value_s_per_mm2(dwi) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)


def test_ge_acquisition_flags_overrule_a_non_zero_slop_value() -> None:
    """(0043,1039) exists on every GE MR image; with the DWI flags off it is no b-value."""
    headers = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    ds = copy.deepcopy(next(ds for ds in headers if "DiffusionBValue" not in ds))
    ds[Tag(0x0043, 0x1030)].value = 0  # vas collapse flag: not 14/16
    ds[Tag(0x0021, 0x105A)].value = 0  # diffusion direction code: none
    ds[Tag(0x0019, 0x10E0)].value = "0"  # number of DTI directions
    values = list(ds[Tag(0x0043, 0x1039)].value)
    ds[Tag(0x0043, 0x1039)].value = [500, *values[1:]]
    assert not v.is_diffusion_acquisition(ds)
    assert v.b_value_s_per_mm2(ds) is None
    assert v.diffusion_kind(ds) is DiffusionKind.NONE


def test_ge_element_of_another_creator_is_not_read() -> None:
    """(0043,1039) is only GE's b-value when (0043,00xx) names GEMS_PARM_01."""
    headers = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    dwi = copy.deepcopy(next(ds for ds in headers if "DiffusionBValue" in ds))
    del dwi.DiffusionBValue
    dwi[Tag(0x0043, 0x0010)].value = "NOT_GEMS_PARM"
    assert v.b_value_s_per_mm2(dwi) is None


@pytest.mark.parametrize(
    "parts",
    [
        ("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL"),
        ("multivendor_cases_dicom2nifti", "dicom", "hitachi", "anatomical", "001"),
        ("compressed_nema_pydicom", "dicom", "MR2_UNCR.dcm"),
        ("compressed_nema_pydicom", "dicom", "MR-SIEMENS-DICOM-WithOverlays.dcm"),
        ("compressed_nema_pydicom", "dicom", "emri_small.dcm"),
        ("ts_siemens_trio_mr_9syntaxes", "dicom", "1.dcm"),  # BOLD: CSA B_value empty
        ("enhanced_philips_siemens_small", "dicom", "Philips", "IM_0027_fMAP.dcm"),
        ("ct_ge_hispeed_head", "dicom", "GE_series2"),
        ("multivendor_cases_dicom2nifti", "dicom", "failing", "notavolume", "001"),
    ],
    ids=lambda p: "/".join(p),
)
def test_non_diffusion_images_have_no_b_value(parts: tuple[str, ...]) -> None:
    """An ordinary MR (or CT) image is not "b = 0"."""
    headers = _headers(*parts)
    assert headers
    for ds in headers:
        assert v.b_value_s_per_mm2(ds) is None
        assert v.diffusion_kind(ds) is DiffusionKind.NONE
        assert v.diffusion_direction_lps(ds) is None
        assert not v.is_diffusion_acquisition(ds)


@pytest.mark.parametrize("bad", [-5.0, 2.0e6, math.nan, math.inf])
def test_absurd_b_value_is_refused_with_warning(bad: float) -> None:
    """Negative, huge or non-finite stored b-values → None and a DataQualityWarning."""
    headers = _headers("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "002")
    ds = copy.deepcopy(headers[1])
    ds.DiffusionBValue = bad
    with pytest.warns(DataQualityWarning, match=r"b-value .* outside 0–50000 s/mm².*Potential fix"):
        assert v.b_value_s_per_mm2(ds) is None


# ---------------------------------------------------------------------------------------
# Diffusion kinds and roles
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "kinds", "role"),
    [
        ("10_DWI_dir80_PA", {DiffusionKind.B0, DiffusionKind.DIRECTIONAL}, Role.DWI),
        ("11_DWI_dir80_PA", {DiffusionKind.ADC}, Role.ADC),
        ("12_DWI_dir80_PA", {DiffusionKind.TRACE}, Role.DWI),
        ("16_DWI_dir80_PA", {DiffusionKind.B0}, Role.DWI),
    ],
)
def test_xa30_diffusion_kinds_and_roles(series: str, kinds: set[DiffusionKind], role: Role) -> None:
    """Raw directional + b0, scanner ADC, TRACEW, and TENSOR_B0 (a b = 0 image)."""
    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", series)
    files = sorted(folder.iterdir())[:2]  # series 10: the b0 volume and one direction
    headers = [frame for path in files for frame in _file_frames(path)]
    assert {v.diffusion_kind(ds) for ds in headers} == kinds
    assert {v.stack_role(ds) for ds in headers} == {role}
    assert {v.vendor_of(ds) for ds in headers} == {Vendor.SIEMENS}
    if series == "16_DWI_dir80_PA":
        assert {v.b_value_s_per_mm2(ds) for ds in headers} == {0.0}
    if series == "11_DWI_dir80_PA":
        assert {v.b_value_s_per_mm2(ds) for ds in headers} == {None}
    if series == "12_DWI_dir80_PA":
        assert {v.b_value_s_per_mm2(ds) for ds in headers} == {2500.0}


def test_philips_isotropic_images_are_trace() -> None:
    """Philips b > 0 with a zero gradient vector (reference bvec all zero) → trace."""
    headers = _headers("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "002")
    bvec = np.loadtxt(
        _reference("multivendor_cases_dicom2nifti", "philips/dti/002_ground_truth.bvec")
    )
    assert not np.any(bvec)
    for ds in headers:
        expected = DiffusionKind.B0 if v.b_value_s_per_mm2(ds) == 0.0 else DiffusionKind.TRACE
        assert v.diffusion_kind(ds) is expected
        assert v.diffusion_direction_lps(ds) is None


def _synthetic_mr(**attributes: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesInstanceUID = "1.2.3.4"
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    ("image_type", "description", "manufacturer", "kind"),
    [
        (["DERIVED", "PRIMARY", "DIFFUSION", "FA"], "", "SIEMENS", DiffusionKind.OTHER_DERIVED),
        (["DERIVED", "PRIMARY", "DIFFUSION", "EXP"], "", "SIEMENS", DiffusionKind.OTHER_DERIVED),
        (
            ["DERIVED", "PRIMARY", "DIFFUSION", "CALC_BVALUE", "TRACEW"],
            "",
            "SIEMENS",
            DiffusionKind.OTHER_DERIVED,
        ),
        (
            ["DERIVED", "PRIMARY", "EADC"],
            "",
            "Philips Medical Systems",
            DiffusionKind.OTHER_DERIVED,
        ),
        (["DERIVED", "PRIMARY", "ADC", "ADC"], "", "Philips Medical Systems", DiffusionKind.ADC),
        (["ORIGINAL", "PRIMARY", "ADC_UNSPECIFIED", "ADC"], "", "", DiffusionKind.ADC),
        (
            ["DERIVED", "PRIMARY", "OTHER"],
            "ADC (10^-6 mm^2/s):Nov 21",
            "GE MEDICAL SYSTEMS",
            DiffusionKind.ADC,
        ),
        (
            ["DERIVED", "PRIMARY", "OTHER"],
            "eADC",
            "GE MEDICAL SYSTEMS",
            DiffusionKind.OTHER_DERIVED,
        ),
        (
            ["ORIGINAL", "PRIMARY", "M", "ND"],
            "t1_mprage_ADC_protocol",
            "SIEMENS",
            DiffusionKind.NONE,
        ),
        (
            ["ORIGINAL", "PRIMARY", "OTHER"],
            "ADC (10^-6 mm^2/s):Nov 21",
            "GE MEDICAL SYSTEMS",
            DiffusionKind.ADC,
        ),
        (
            ["ORIGINAL", "PRIMARY", "OTHER"],
            "Ax DWI with ADC",
            "GE MEDICAL SYSTEMS",
            DiffusionKind.NONE,
        ),
        (["DERIVED", "PRIMARY", "M"], "ep2d_diff_ADC", "SIEMENS", DiffusionKind.ADC),
        (["DERIVED", "PRIMARY", "M"], "ep2d_diff_FA", "SIEMENS", DiffusionKind.OTHER_DERIVED),
    ],
)
def test_derived_diffusion_maps(
    image_type: list[str], description: str, manufacturer: str, kind: DiffusionKind
) -> None:
    """ADC maps and other derived maps (FA, exponential ADC, computed b, eADC)."""
    ds = _synthetic_mr(
        ImageType=image_type, SeriesDescription=description, Manufacturer=manufacturer
    )
    assert v.diffusion_kind(ds) is kind
    assert v.b_value_s_per_mm2(ds) is None
    expected_role = {DiffusionKind.ADC: Role.ADC}.get(kind, Role.OTHER)
    assert v.stack_role(ds) is expected_role


def test_chaos_dual_echo_roles_from_protocol_name() -> None:
    """CHAOS T1-DUAL: TE 2.302 ms opposed phase, TE 4.635 ms in phase (MANIFEST)."""
    headers = _headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    roles = Counter((v.stack_role(ds), round(float(ds.EchoTime), 3)) for ds in headers)
    assert roles == Counter(
        {(Role.DIXON_OPPOSED_PHASE, 2.302): 35, (Role.DIXON_IN_PHASE, 4.635): 35}
    )
    assert {v.vendor_of(ds) for ds in headers} == {Vendor.PHILIPS}  # Manufacturer blanked


def test_chaos_dual_echo_roles_from_echo_time_alone() -> None:
    """Without any label, TE against 1.5 T separates the two echoes of one GRE series."""
    headers = _headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    for ds in headers:
        bare = copy.deepcopy(ds)
        bare.ProtocolName = ""
        te = v.echo_time_ms(bare)
        assert te is not None
        expected = Role.DIXON_OPPOSED_PHASE if abs(te - 2.302) < ATOL_TE_MS else Role.DIXON_IN_PHASE
        assert v.stack_role(bare) is expected
        # A single-echo GRE with the same TE is not called a Dixon echo.
        bare.EchoTrainLength = 1
        bare.EchoNumbers = 1
        assert v.stack_role(bare) is Role.OTHER


@pytest.mark.parametrize(
    ("manufacturer", "image_type", "description", "role"),
    [
        ("SIEMENS", ["ORIGINAL", "PRIMARY", "DIXON", "WATER"], "", Role.DIXON_WATER),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "FAT"], "", Role.DIXON_FAT),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "IN_PHASE"], "", Role.DIXON_IN_PHASE),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "OUT_PHASE"], "", Role.DIXON_OPPOSED_PHASE),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "OPP_PHASE"], "", Role.DIXON_OPPOSED_PHASE),
        (
            "SIEMENS",
            ["ORIGINAL", "PRIMARY", "M", "IN_PHASE", "NORM", "DIS2D"],
            "",
            Role.DIXON_IN_PHASE,
        ),
        ("SIEMENS", ["DERIVED", "PRIMARY", "M", "NORM", "WATER", "DIS2D"], "", Role.DIXON_WATER),
        (
            "SIEMENS",
            ["ORIGINAL", "PRIMARY", "M", "ND"],
            "t1_vibe_dixon_tra_opp",
            Role.DIXON_OPPOSED_PHASE,
        ),
        (
            "SIEMENS",
            ["ORIGINAL", "PRIMARY", "M", "ND"],
            "t1_vibe_dixon_tra_in",
            Role.DIXON_IN_PHASE,
        ),
        ("SIEMENS", ["DERIVED", "PRIMARY", "M", "ND"], "t2_tse_dixon_tra_W", Role.DIXON_WATER),
        ("SIEMENS", ["DERIVED", "PRIMARY", "M", "ND"], "t2_tse_dixon_tra_F", Role.DIXON_FAT),
        ("SIEMENS", ["ORIGINAL", "PRIMARY", "M", "ND"], "t2_tse_tra_fat_sat", Role.OTHER),
        ("SIEMENS", ["ORIGINAL", "PRIMARY", "M", "ND"], "t1_tse_sag T1-W", Role.OTHER),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "W", "W", "DIXON"],
            "",
            Role.DIXON_WATER,
        ),
        ("Philips Medical Systems", ["ORIGINAL", "PRIMARY", "F", "F", "DIXON"], "", Role.DIXON_FAT),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "IP", "IP", "DIXON"],
            "",
            Role.DIXON_IN_PHASE,
        ),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "OP", "OP", "DIXON"],
            "",
            Role.DIXON_OPPOSED_PHASE,
        ),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "W_FFE", "W", "FFE"],
            "",
            Role.DIXON_WATER,
        ),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "DIXON", "WATER"],
            "",
            Role.DIXON_WATER,
        ),
        (
            "Philips Medical Systems",
            ["ORIGINAL", "PRIMARY", "DIXON", "FAT_FRACTION"],
            "",
            Role.OTHER,
        ),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "WATER_FRACTION"], "", Role.OTHER),
        ("SIEMENS", ["DERIVED", "PRIMARY", "DIXON", "R2_STAR"], "", Role.OTHER),
        ("Philips Medical Systems", ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "", Role.OTHER),
        (
            "GE MEDICAL SYSTEMS",
            ["DERIVED", "PRIMARY", "DIXON", "WATER"],
            "WATER: COR LAVA DIAF",
            Role.DIXON_WATER,
        ),
        (
            "GE MEDICAL SYSTEMS",
            ["ORIGINAL", "PRIMARY", "OTHER"],
            "FAT: AX LAVA FLEX",
            Role.DIXON_FAT,
        ),
        (
            "GE MEDICAL SYSTEMS",
            ["ORIGINAL", "PRIMARY", "OTHER"],
            "AX T1 IN PHASE",
            Role.DIXON_IN_PHASE,
        ),
        (
            "GE MEDICAL SYSTEMS",
            ["ORIGINAL", "PRIMARY", "OTHER"],
            "AX T1 OUT OF PHASE",
            Role.DIXON_OPPOSED_PHASE,
        ),
        ("GE MEDICAL SYSTEMS", ["ORIGINAL", "PRIMARY", "OTHER"], "FF: AX IDEAL", Role.OTHER),
    ],
)
def test_dixon_roles_from_labels(
    manufacturer: str, image_type: list[str], description: str, role: Role
) -> None:
    """ImageType tokens and description keywords of Siemens, Philips and GE Dixon images."""
    ds = _synthetic_mr(
        Manufacturer=manufacturer, ImageType=image_type, SeriesDescription=description
    )
    ds.ScanningSequence = "GR"
    ds.EchoTime = 90.0  # a TE that is neither in nor opposed phase: labels alone decide
    ds.MagneticFieldStrength = 1.5
    assert v.stack_role(ds) is role


@pytest.mark.parametrize("label", ["T1 IN/OUT PHASE", "t1_fl2d_in-opp", "AX IN PHASE & OUT PHASE"])
def test_one_label_for_both_echoes_defers_to_echo_time(label: str) -> None:
    """A dual-echo series named for both echoes: TE (1.5 T) decides, not the label."""
    for te_ms, role in ((2.3, Role.DIXON_OPPOSED_PHASE), (4.6, Role.DIXON_IN_PHASE)):
        ds = _synthetic_mr(
            Manufacturer="SIEMENS",
            ImageType=["ORIGINAL", "PRIMARY", "M", "ND"],
            SeriesDescription=label,
            ScanningSequence="GR",
            EchoTime=te_ms,
            EchoNumbers=1 if te_ms < 3 else 2,
            MagneticFieldStrength=1.5,
        )
        assert v.stack_role(ds) is role


def test_roles_of_real_non_dixon_series() -> None:
    """A CT → ct; a T1 brain MR (Siemens 3D FLASH MPR) → other; DWI → dwi."""
    ct = _headers("ct_ge_hispeed_head", "dicom", "GE_series2")
    assert {v.stack_role(ds) for ds in ct} == {Role.CT}
    t1 = _headers("compressed_nema_pydicom", "dicom", "MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert {v.stack_role(ds) for ds in t1} == {Role.OTHER}
    hitachi = _headers("multivendor_cases_dicom2nifti", "dicom", "hitachi", "anatomical", "001")
    assert {v.stack_role(ds) for ds in hitachi} == {Role.OTHER}
    ge = _headers("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    assert {v.stack_role(ds) for ds in ge} == {Role.DWI}
    canon = _headers("dwi_canon_galan_v60_classic", "dicom", "9000_DTI_PA-ortho")
    assert {v.diffusion_kind(ds) for ds in canon} == {DiffusionKind.B0, DiffusionKind.DIRECTIONAL}
    assert {v.stack_role(ds) for ds in canon} == {Role.DWI}


# ---------------------------------------------------------------------------------------
# Gradient directions against the reference .bvec files
# ---------------------------------------------------------------------------------------


@pytest.mark.slow  # reads the 819 frames of series 10
def test_xa30_directions_match_dcm2niix_bvec() -> None:
    """Enhanced (0018,9089) per frame, against dcm2niix's image-space bvec."""
    frames = _first_frames("dwi_siemens_xa30_enhanced_pa", "dicom", "10_DWI_dir80_PA")
    bvec = np.loadtxt(_reference("dwi_siemens_xa30_enhanced_pa", "10_DWI_dir80_PA.bvec"))
    assert len(frames) == bvec.shape[1]
    for i, ds in enumerate(frames):
        direction = v.diffusion_direction_lps(ds)
        if not np.any(bvec[:, i]):
            assert direction is None
            continue
        assert direction is not None
        assert np.linalg.norm(direction) == pytest.approx(1.0, abs=ATOL_UNIT)
        dot = float(_image_space(direction, ds) @ bvec[:, i])
        assert abs(dot) == pytest.approx(1.0, abs=ATOL_ABS_DOT)


@pytest.mark.parametrize(
    ("series", "bvec_name"),
    [
        ("01_Ax_DWI_TENSOR_R2", "Ax_DWI_TENSOR_R2_1.bvec"),
        ("04_Ax_DWI_TENSOR_R2MB2", "Ax_DWI_TENSOR_R2MB2_4.bvec"),
    ],
)
def test_ge_directions_match_dcm2niix_bvec(series: str, bvec_name: str) -> None:
    """GE logical-frame (0019,10BB-BD) rotated to LPS, on oblique axial SIGNA data."""
    headers = _headers("dwi_ge_signa_pioneer", "dicom", series)
    bvec = np.loadtxt(_reference("dwi_ge_signa_pioneer", bvec_name))
    # Volume order of GE classic files = order of first appearance by instance number.
    volumes: dict[tuple[float, ...] | None, Dataset] = {}
    for ds in sorted(headers, key=lambda d: int(d.InstanceNumber)):
        direction = v.diffusion_direction_lps(ds)
        key = None if direction is None else tuple(np.round(direction, 6))
        volumes.setdefault(key, ds)
    assert len(volumes) == bvec.shape[1]
    for i, (key, ds) in enumerate(volumes.items()):
        if key is None:
            assert not np.any(bvec[:, i])
            continue
        dot = float(_image_space(key, ds) @ bvec[:, i])  # type: ignore[arg-type]
        assert abs(dot) == pytest.approx(1.0, abs=ATOL_ABS_DOT)


@pytest.mark.parametrize(
    ("folder", "bvec_name", "frame"),
    [
        (("philips", "dti", "001"), "philips/dti/001_ground_truth.bvec", "lps"),
        (("philips_enhanced", "dti", "001"), "philips_enhanced/dti/001_ground_truth.bvec", "lps"),
        (("siemens", "dti_classic", "001"), "siemens/dti_classic/001_ground_truth.bvec", "image"),
        (("siemens", "dti", "001"), "siemens/dti/001_ground_truth.bvec", "image"),
        (("ge", "dti", "001"), "ge/dti/001_ground_truth.bvec", "image"),
    ],
    ids=lambda x: str(x),
)
def test_directions_match_dicom2nifti_bvec(
    folder: tuple[str, ...], bvec_name: str, frame: str
) -> None:
    """Every directional image matches one reference volume's bvec (|cos| = 1).

    dicom2nifti writes Philips gradients as stored (LPS) and Siemens/GE ones in image space.
    """
    headers = _headers("multivendor_cases_dicom2nifti", "dicom", *folder)
    bvec = np.loadtxt(_reference("multivendor_cases_dicom2nifti", bvec_name), ndmin=2)
    references = [bvec[:, i] for i in range(bvec.shape[1]) if np.any(bvec[:, i])]
    matched = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # GE set lacks (0018,1312)
        directions = [(ds, v.diffusion_direction_lps(ds)) for ds in headers]
    for ds, direction in directions:
        if direction is None:
            assert v.diffusion_kind(ds) is DiffusionKind.B0
            continue
        vector = np.asarray(direction) if frame == "lps" else _image_space(direction, ds)
        cosines = [abs(float(vector @ r)) for r in references]
        best = int(np.argmax(cosines))
        assert cosines[best] == pytest.approx(1.0, abs=ATOL_ABS_DOT)
        matched.add(best)
    assert matched == set(range(len(references)))


def test_canon_directions_match_dcm2niix_bvec() -> None:
    """Canon classic ImageComments vectors, against dcm2niix's bvec (12 directions)."""
    headers = _headers("dwi_canon_galan_v60_classic", "dicom", "9000_DTI_PA-ortho")
    bvec = np.loadtxt(_reference("dwi_canon_galan_v60_classic", "DTI_PA-ortho_9000.bvec"))
    volumes: dict[tuple[float, ...] | None, Dataset] = {}
    for ds in sorted(headers, key=lambda d: int(d.InstanceNumber)):
        direction = v.diffusion_direction_lps(ds)
        volumes.setdefault(None if direction is None else tuple(np.round(direction, 6)), ds)
    assert len(volumes) == bvec.shape[1] == 13
    for i, (key, ds) in enumerate(volumes.items()):
        if key is None:
            assert not np.any(bvec[:, i])
            continue
        dot = float(_image_space(key, ds) @ bvec[:, i])  # type: ignore[arg-type]
        assert abs(dot) == pytest.approx(1.0, abs=ATOL_ABS_DOT)


def test_canon_row_phase_encoding_direction_unknown() -> None:
    """The Canon component order is only validated for COL phase encoding."""
    headers = _headers("dwi_canon_galan_v60_classic", "dicom", "9000_DTI_PA-ortho")
    ds = copy.deepcopy(next(d for d in headers if float(d.DiffusionBValue) > 0))
    ds.InPlanePhaseEncodingDirection = "ROW"
    assert v.diffusion_kind(ds) is DiffusionKind.DIRECTIONAL
    with pytest.warns(DataQualityWarning, match=r"Canon ImageComments gradient with ROW"):
        assert v.diffusion_direction_lps(ds) is None


def test_ge_missing_phase_direction_warns() -> None:
    """GE rotation without (0018,1312) assumes COL and says so (only when rotating)."""
    headers = _headers("multivendor_cases_dicom2nifti", "dicom", "ge", "dti", "001")
    dwi = next(ds for ds in headers if v.b_value_s_per_mm2(ds) == 1000.0)
    assert v.diffusion_kind(dwi) is DiffusionKind.DIRECTIONAL  # no warning needed for this
    assert v.stack_role(dwi) is Role.DWI
    with pytest.warns(DataQualityWarning, match=r"InPlanePhaseEncodingDirection .* missing.*COL"):
        v.diffusion_direction_lps(dwi)


def _ge_oblique(logical: tuple[float, float, float], phase: str, iop: list[float]) -> Dataset:
    ds = _synthetic_mr(
        Manufacturer="GE MEDICAL SYSTEMS",
        ImageOrientationPatient=iop,
        InPlanePhaseEncodingDirection=phase,
        ScanningSequence=["EP", "SE"],
        DiffusionBValue=1000.0,
    )
    ds.add_new(Tag(0x0019, 0x0010), "LO", "GEMS_ACQU_01")
    for offset, value in zip((0xBB, 0xBC, 0xBD), logical, strict=True):
        ds.add_new(Tag(0x0019, 0x1000 | offset), "DS", f"{value:.6f}")
    return ds


@pytest.mark.parametrize("phase", ["COL", "ROW"])
@pytest.mark.parametrize(
    "iop",
    [
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],  # axial
        [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],  # sagittal
        [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],  # coronal
        [0.7262333631, -0.6816839993, 0.0888370834, 0.6873778036, 0.7219207610, -0.0796377418],
    ],
    ids=["axial", "sagittal", "coronal", "oblique"],
)
def test_ge_logical_axes_map_to_the_image_axes(phase: str, iop: list[float]) -> None:
    """Analytic: slice gradient ∥ slice normal; frequency gradient ∥ row or column vector.

    The frequency axis is the row vector for COL phase encoding, the column vector for ROW.
    """
    row, col = np.asarray(iop[:3]), np.asarray(iop[3:])
    normal = np.cross(row, col)
    slice_direction = v.diffusion_direction_lps(_ge_oblique((0.0, 0.0, 1.0), phase, iop))
    frequency_direction = v.diffusion_direction_lps(_ge_oblique((1.0, 0.0, 0.0), phase, iop))
    phase_direction = v.diffusion_direction_lps(_ge_oblique((0.0, 1.0, 0.0), phase, iop))
    assert slice_direction is not None
    assert frequency_direction is not None
    assert phase_direction is not None
    assert abs(float(np.dot(slice_direction, normal))) == pytest.approx(1.0, abs=ATOL_UNIT)
    frequency_axis, phase_axis = (row, col) if phase == "COL" else (col, row)
    assert abs(float(np.dot(frequency_direction, frequency_axis))) == pytest.approx(
        1.0, abs=ATOL_UNIT
    )
    assert abs(float(np.dot(phase_direction, phase_axis))) == pytest.approx(1.0, abs=ATOL_UNIT)


def test_ge_gradient_without_orientation_warns() -> None:
    """A GE gradient cannot be rotated without ImageOrientationPatient: warn, None."""
    ds = _ge_oblique((1.0, 0.0, 0.0), "COL", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    del ds.ImageOrientationPatient
    with pytest.warns(DataQualityWarning, match=r"ImageOrientationPatient .* missing"):
        assert v.diffusion_direction_lps(ds) is None


# ---------------------------------------------------------------------------------------
# Echo time, field strength, fat–water phase
# ---------------------------------------------------------------------------------------


def test_echo_phase_times_from_physics() -> None:
    """TE_OP = 1/(2Δf), TE_IP = 1/Δf with Δf = 3.4 ppm · 42.577 MHz/T · B0."""
    for field_t in (1.5, 3.0):
        delta_f_hz = 3.4e-6 * 42.577478e6 * field_t
        opposed_ms, in_phase_ms = v.echo_phase_ms(field_t)
        assert opposed_ms == pytest.approx(500.0 / delta_f_hz, rel=1e-9)
        assert in_phase_ms == pytest.approx(1000.0 / delta_f_hz, rel=1e-9)
    # CLINICAL_REFERENCE.md default 10 ranges contain the computed times.
    assert 2.0 <= v.echo_phase_ms(1.5)[0] <= 2.5 and 4.2 <= v.echo_phase_ms(1.5)[1] <= 4.9
    assert 1.0 <= v.echo_phase_ms(3.0)[0] <= 1.3 and 2.1 <= v.echo_phase_ms(3.0)[1] <= 2.5


@pytest.mark.parametrize("bad", [0.0, -1.5, math.nan])
def test_echo_phase_ms_rejects_bad_field(bad: float) -> None:
    """A non-positive or NaN field strength is a programming error: ValueError."""
    with pytest.raises(ValueError, match=r"expected a positive number of tesla.*Potential fix"):
        v.echo_phase_ms(bad)


@pytest.mark.parametrize(
    ("te_ms", "field_t", "phase"),
    [
        # the edges of CLINICAL_REFERENCE.md default 10
        (2.0, 1.5, "opposed"),
        (2.5, 1.5, "opposed"),
        (4.2, 1.5, "in"),
        (4.9, 1.5, "in"),
        (1.0, 3.0, "opposed"),
        (1.3, 3.0, "opposed"),
        (2.1, 3.0, "in"),
        (2.5, 3.0, "in"),
        (2.302, 1.5, "opposed"),
        (4.635, 1.5, "in"),  # CHAOS
        (6.9, 1.5, "opposed"),  # second opposed-phase echo
        (3.4, 1.5, None),
        (1.7, 3.0, None),
        (90.0, 1.5, None),
        (0.5, 1.5, None),
        (-1.0, 1.5, None),
        (2.3, 0.0, None),
        (math.nan, 1.5, None),
    ],
)
def test_echo_time_phase(te_ms: float, field_t: float, phase: str | None) -> None:
    """In/opposed phase at the published TE ranges; None between them and for long TE."""
    assert v.echo_time_phase(te_ms, field_t) == phase


def test_echo_time_and_field_strength_of_real_headers() -> None:
    """TE from EffectiveEchoTime of enhanced frames; 0-TE field-map frames → None."""
    xa30 = _headers("dwi_siemens_xa30_enhanced_pa", "dicom", "16_DWI_dir80_PA")
    assert {v.echo_time_ms(ds) for ds in xa30} == {68.0}  # EffectiveEchoTime of the frames
    assert {v.magnetic_field_strength_t(ds) for ds in xa30} == {3.0}
    fmap = _headers("enhanced_philips_siemens_small", "dicom", "Philips", "IM_0027_fMAP.dcm")
    te = {v.echo_time_ms(ds) for ds in fmap}
    assert te == {1.52, None}  # magnitude frames TE 1.52 ms; field-map frames store 0
    chaos = _headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    assert {v.magnetic_field_strength_t(ds) for ds in chaos} == {1.5}


def test_field_strength_normalisation() -> None:
    """Gauss → tesla, ImagingFrequency fallback, implausible values refused."""
    assert v.magnetic_field_strength_t(_synthetic_mr(MagneticFieldStrength=15000)) == 1.5
    assert v.magnetic_field_strength_t(_synthetic_mr(MagneticFieldStrength="3")) == 3.0
    # CHAOS: 63.897062 MHz proton frequency ↔ 1.5 T.
    assert v.magnetic_field_strength_t(_synthetic_mr(ImagingFrequency=63.897062)) == 1.5
    assert v.magnetic_field_strength_t(_synthetic_mr(ImagingFrequency=127.7277)) == 3.0
    assert v.magnetic_field_strength_t(_synthetic_mr()) is None
    with pytest.warns(DataQualityWarning, match=r"neither tesla .* nor gauss"):
        assert v.magnetic_field_strength_t(_synthetic_mr(MagneticFieldStrength=50)) is None


# ---------------------------------------------------------------------------------------
# Vendor
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manufacturer", "vendor"),
    [
        ("SIEMENS", Vendor.SIEMENS),
        ("Siemens Healthineers", Vendor.SIEMENS),
        ("GE MEDICAL SYSTEMS", Vendor.GE),
        ("GE Healthcare", Vendor.GE),
        ("Philips Medical Systems", Vendor.PHILIPS),
        ("Philips Healthcare", Vendor.PHILIPS),
        ("Philips", Vendor.PHILIPS),
        ("TOSHIBA", Vendor.CANON),
        ("TOSHIBA_MEC", Vendor.CANON),
        ("CANON_MEC", Vendor.CANON),
        ("Hitachi Medical Corporation", Vendor.HITACHI),
        ("Bruker BioSpin", Vendor.OTHER),
        ("GEMINI RESEARCH", Vendor.OTHER),
    ],
)
def test_vendor_from_manufacturer(manufacturer: str, vendor: Vendor) -> None:
    """Manufacturer strings of the five families, and others."""
    assert v.vendor_of(_synthetic_mr(Manufacturer=manufacturer)) is vendor


@pytest.mark.parametrize(
    ("creator", "vendor"),
    [
        ("Philips Imaging DD 001", Vendor.PHILIPS),
        ("SIEMENS CSA HEADER", Vendor.SIEMENS),
        ("GEMS_ACQU_01", Vendor.GE),
        ("CANON_MEC_MR3", Vendor.CANON),
        ("SOMEBODY ELSE", Vendor.OTHER),
    ],
)
def test_vendor_from_private_creator_when_manufacturer_blanked(
    creator: str, vendor: Vendor
) -> None:
    """A blanked Manufacturer falls back on private creator strings."""
    ds = _synthetic_mr(Manufacturer="")
    ds.add_new(Tag(0x0029 if "SIEMENS" in creator else 0x2001, 0x0010), "LO", creator)
    assert v.vendor_of(ds) is vendor


def test_vendor_of_real_files() -> None:
    """Vendors of real files, including CHAOS whose Manufacturer was blanked."""
    cases = {
        ("dwi_canon_galan_v60_classic", "dicom", "9000_DTI_PA-ortho"): Vendor.CANON,
        ("multivendor_cases_dicom2nifti", "dicom", "hitachi", "anatomical", "001"): Vendor.HITACHI,
        ("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2"): Vendor.GE,
        ("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL"): Vendor.PHILIPS,
    }
    for parts, vendor in cases.items():
        assert {v.vendor_of(ds) for ds in _headers(*parts)} == {vendor}


# ---------------------------------------------------------------------------------------
# ADC scale
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _xa30_adc() -> tuple[Dataset, np.ndarray]:
    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA")
    path = next(folder.iterdir())
    ds = pydicom.dcmread(path)
    transform = ds.PerFrameFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    values = ds.pixel_array.astype(np.float64) * float(transform.RescaleSlope) + float(
        transform.RescaleIntercept
    )
    return _flatten(ds)[0], values


def test_adc_scale_of_siemens_scanner_adc_map() -> None:
    """Series 11 stores 10⁻⁶ mm²/s integers; median brain ADC lands in 0.5–1.5e-3 mm²/s."""
    ds, values = _xa30_adc()
    factor = v.adc_scale_to_mm2_per_s(ds, values)
    assert factor == 1e-6
    median_mm2_per_s = float(np.median(values[values > 0])) * factor
    assert 0.5e-3 <= median_mm2_per_s <= 1.5e-3


def test_adc_scale_of_other_units() -> None:
    """The same tissue values stored in mm²/s and in 10⁻³ mm²/s."""
    ds, values = _xa30_adc()
    generic = _synthetic_mr(Manufacturer="GE MEDICAL SYSTEMS")
    assert v.adc_scale_to_mm2_per_s(generic, values * 1e-6) == 1.0
    assert v.adc_scale_to_mm2_per_s(generic, values * 1e-3) == 1e-3
    with pytest.warns(DataQualityWarning, match=r"Siemens ADC maps are stored in 10⁻⁶"):
        assert v.adc_scale_to_mm2_per_s(ds, values * 1e-3) == 1e-3


@pytest.mark.parametrize("scale", [0.025, 1e-8, 20.0])
def test_adc_scale_ambiguous_raises(scale: float) -> None:
    """Medians between or beyond the known ranges are refused, naming the series."""
    ds, values = _xa30_adc()
    uid = str(ds.SeriesInstanceUID)
    with pytest.raises(
        UnsupportedInputError, match=rf"Series {uid}: ADC map unit is ambiguous.*Potential fix"
    ):
        v.adc_scale_to_mm2_per_s(ds, values * scale)


def test_adc_scale_without_positive_values_raises() -> None:
    """A map with no positive value cannot be scaled."""
    ds = _synthetic_mr()
    with pytest.raises(
        UnsupportedInputError, match=r"Series 1\.2\.3\.4: .*no positive finite value"
    ):
        v.adc_scale_to_mm2_per_s(ds, np.array([0.0, -1.0, np.nan]))


# ---------------------------------------------------------------------------------------
# Philips floating-point scaling, CSA errors, vendor fallbacks, Philips private gradient
# ---------------------------------------------------------------------------------------

#: dcm2niix writes scl_slope / scl_inter as float32 computed from float32 copies of RS and
#: SS (observed agreement 6e-6 on the field-map frames).
RTOL_DCM2NIIX_SCALE = 1e-5


@pytest.mark.parametrize(
    ("frame_token", "nifti"),
    [
        ("M", "Philips_WIP_B0_NS_801_e1.nii"),
        ("FIELD_MAP", "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii"),
    ],
)
def test_philips_float_rescale_matches_dcm2niix(frame_token: str, nifti: str) -> None:
    """FP = PV/SS + RI/(RS·SS): dcm2niix writes the same slope/intercept into its NIfTI."""
    import nibabel

    reference = nibabel.load(_reference("enhanced_philips_siemens_small", nifti))
    slope_ref = float(reference.dataobj.slope)  # type: ignore[attr-defined]
    inter_ref = float(reference.dataobj.inter)  # type: ignore[attr-defined]
    frames = _headers("enhanced_philips_siemens_small", "dicom", "Philips", "IM_0027_fMAP.dcm")
    chosen = [ds for ds in frames if ds.ImageType[3] == frame_token]
    assert len(chosen) == 32
    for ds in chosen:
        result = v.philips_float_rescale(ds)
        assert result is not None
        assert result[0] == pytest.approx(slope_ref, rel=RTOL_DCM2NIIX_SCALE)
        assert result[1] == pytest.approx(inter_ref, rel=RTOL_DCM2NIIX_SCALE, abs=1e-9)


def test_philips_float_rescale_absent() -> None:
    """No private scale slope (CHAOS) or not Philips (xa30): None."""
    chaos = _headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    assert {v.philips_float_rescale(ds) for ds in chaos} == {None}
    xa30 = _headers("dwi_siemens_xa30_enhanced_pa", "dicom", "16_DWI_dir80_PA")
    assert {v.philips_float_rescale(ds) for ds in xa30} == {None}


def test_unreadable_csa_header_falls_back_to_private_element() -> None:
    """A damaged CSA image header is skipped; (0019,100C) still gives the b-value."""
    ds = _read(_nibabel_data("siemens_dwi_1000.dcm.gz"))
    ds[Tag(0x0029, 0x1010)].value = b"SV10\x04\x03\x02\x01" + b"\xff" * 64
    assert v.b_value_s_per_mm2(ds) == pytest.approx(1000.0, abs=ATOL_B_S_PER_MM2)
    assert v.diffusion_direction_lps(ds) is not None


def test_vendor_from_software_version_when_uids_anonymised() -> None:
    """CHAOS with its Philips UID roots replaced: the "PMS" software string still tells."""
    ds = copy.deepcopy(_headers("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")[0])
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        setattr(ds, keyword, "1.2.826.0.1.3680043.8.498.1")
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("1.2.826.0.1.3680043.8.498.1")
    assert v.vendor_of(ds) is Vendor.PHILIPS
    ds.SoftwareVersions = ""
    assert v.vendor_of(ds) is Vendor.OTHER


def test_philips_private_gradient() -> None:
    """(2005,xxB0-B2) with its creator gives the direction when (0018,9089) is absent."""
    ds = _synthetic_mr(Manufacturer="Philips Medical Systems", ImageType=["ORIGINAL", "PRIMARY"])
    ds.add_new(Tag(0x2001, 0x0010), "LO", "Philips Imaging DD 001")
    ds.add_new(Tag(0x2001, 0x1003), "FL", 1000.0)
    ds.add_new(Tag(0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
    for offset, value in zip((0xB0, 0xB1, 0xB2), (0.0, 3.0, 4.0), strict=True):
        ds.add_new(Tag(0x2005, 0x1000 | offset), "FL", value)
    assert v.b_value_s_per_mm2(ds) == 1000.0
    assert v.diffusion_kind(ds) is DiffusionKind.DIRECTIONAL
    direction = v.diffusion_direction_lps(ds)
    assert direction is not None
    np.testing.assert_allclose(np.asarray(direction), np.array([0.0, 0.6, 0.8]), atol=ATOL_UNIT)
    for offset in (0xB0, 0xB1, 0xB2):
        ds[Tag(0x2005, 0x1000 | offset)].value = 0.0
    assert v.diffusion_kind(ds) is DiffusionKind.TRACE  # Philips isotropic: b > 0, no gradient
    assert v.diffusion_direction_lps(ds) is None


def _scanner_files(per_folder: int) -> list[Path]:
    """The first files of every folder of DICOM files in the shared data."""
    from support.testdata import SHARED_DATA

    found = []
    for folder in sorted(p for p in SHARED_DATA.rglob("*") if p.is_dir()):
        if "dicom" not in folder.parts:
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        found.extend(files[:per_folder])
    return found


def _flats_of(path: Path) -> list[pydicom.Dataset] | None:
    from bonelesion.dicom.header import read_file_header
    from bonelesion.dicom.multiframe import flatten_frames
    from bonelesion.errors import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, _ = read_file_header(path, [])
            return flatten_frames(ds)
    except InputError:
        return None


@pytest.mark.shared_data
@pytest.mark.slow
def test_diffusion_facts_equal_the_three_calls_on_scanner_files() -> None:
    """`diffusion_facts` (one read of the evidence) = diffusion_kind, b_value_s_per_mm2 and
    diffusion_direction_lps called in turn: values and warnings, every frame."""
    n_frames = 0
    kinds: Counter[str] = Counter()
    for path in _scanner_files(per_folder=10):
        ours, reference = _flats_of(path), _flats_of(path)  # two fresh reads
        if ours is None or reference is None:
            continue
        for a, b in zip(ours, reference, strict=True):
            with warnings.catch_warnings(record=True) as got_warnings:
                warnings.simplefilter("always")
                got = v.diffusion_facts(a)
            with warnings.catch_warnings(record=True) as want_warnings:
                warnings.simplefilter("always")
                want = (v.diffusion_kind(b), v.b_value_s_per_mm2(b),
                        v.diffusion_direction_lps(b))
            assert got == want, (path, a.get((0x0021, 0x1001)))
            assert {str(w.message) for w in got_warnings} == \
                {str(w.message) for w in want_warnings}, path
            kinds[got[0].value] += 1
            n_frames += 1
    assert n_frames > 800, n_frames
    # every kind but a scanner-labelled "other derived" map occurs in the data
    assert {"none", "b0", "directional", "trace", "adc"} <= set(kinds), kinds
