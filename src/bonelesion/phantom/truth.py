"""The truth of a phantom study: typed records, ``truth.json`` and ``rois.csv``.

``truth.json`` is the serialisation of `StudyTruth` (``dataclasses.asdict``, tuples as
lists, enums as their values). `load_truth` is strict: a missing or unknown key, or a value
of the wrong type, is an `InputError`. `TRUTH_JSON_SCHEMA` is the same contract as a JSON
Schema (draft 2020-12) document for tools outside Python.

Schema versions
---------------
* ``1.0``: the lumbar study of `bonelesion.phantom.write_study` (still written by it, so
  its files do not change). No ``anatomy`` or ``spine`` key.
* ``2.0``: adds ``anatomy`` (``lumbar`` or ``thoracolumbar_pelvis``) and ``spine``
  (`SpineTruth` or null): vertebrae, discs, ribs, sacroiliac joints, lesions with volumes
  and measured core values, look-alikes and the CT reconstruction. Written by
  `bonelesion.phantom.write_spine_study`.

`load_truth` reads both; a 1.0 file loads with ``anatomy="lumbar"`` and ``spine=None``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.errors import InputError

__all__ = [
    "TRUTH_SCHEMA_VERSION",
    "LUMBAR_TRUTH_SCHEMA_VERSION",
    "SUPPORTED_TRUTH_SCHEMA_VERSIONS",
    "TRUTH_JSON_SCHEMAS",
    "SpineTruth",
    "SpineOptionsTruth",
    "CtReconstructionTruth",
    "VertebraTruth",
    "DiscTruth",
    "RibTruth",
    "SacroiliacJointTruth",
    "SpineLesionTruth",
    "LookAlikeTruth",
    "TRUTH_FILENAME",
    "ROIS_FILENAME",
    "ROIS_CSV_COLUMNS",
    "TRUTH_JSON_SCHEMA",
    "LesionTruth",
    "TissueTruth",
    "SeriesTruth",
    "AcquisitionTruth",
    "NoiseTruth",
    "StudyTruth",
    "load_truth",
    "write_truth",
    "write_rois_csv",
]

#: Current schema (written by the spine study).
TRUTH_SCHEMA_VERSION = "2.0"
#: The lumbar study's schema, still written by `bonelesion.phantom.write_study`.
LUMBAR_TRUTH_SCHEMA_VERSION = "1.0"
SUPPORTED_TRUTH_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "2.0")
#: Keys that schema 2.0 adds at the top level.
_KEYS_SINCE_2_0 = ("anatomy", "spine")
TRUTH_FILENAME = "truth.json"
ROIS_FILENAME = "rois.csv"
ROIS_CSV_COLUMNS = (
    "lesion_id",
    "center_l_mm",
    "center_p_mm",
    "center_s_mm",
    "radius_mm",
    "study_instance_uid",
    "treated",
)


@dataclass(frozen=True, kw_only=True)
class LesionTruth:
    """True values of one lesion (homogeneous sphere; values hold in its core).

    Attributes
    ----------
    lesion_id, vertebra, kind : str
        Identifier, vertebral body, ``metastasis`` / ``enostosis`` / ``near_threshold``.
    center_lps_mm : (3,) tuple of float
        Sphere centre in LPS mm.
    radius_mm : float
        Sphere radius.
    attenuation_mean_hu : float
        CT number inside the sphere (noise-free core mean, exact).
    fat_fraction : float
        Signal fat fraction F / (W + F).
    chemical_shift_ratio : float
        Opposed-phase / in-phase signal ratio, ``|1 − 2·FF|``.
    adc_mm2_per_s : float
        ADC inside the sphere.
    mr_signal_scale : float
        Relative MR proton signal (Dixon in-phase = scale · dixon full scale).
    expected_nature : str
        ``benign``, ``malignant`` or ``indeterminate``.
    treated : bool
        Presented as treated (also written to rois.csv).
    """

    lesion_id: str
    vertebra: str
    kind: str
    center_lps_mm: tuple[float, float, float]
    radius_mm: float
    attenuation_mean_hu: float
    fat_fraction: float
    chemical_shift_ratio: float
    adc_mm2_per_s: float
    mr_signal_scale: float
    expected_nature: str
    treated: bool


@dataclass(frozen=True, kw_only=True)
class TissueTruth:
    """True values of a background tissue."""

    name: str
    attenuation_hu: float
    fat_fraction: float
    chemical_shift_ratio: float
    adc_mm2_per_s: float
    mr_signal_scale: float


@dataclass(frozen=True, kw_only=True)
class SeriesTruth:
    """One written series (a DWI series holds one stack per b-value).

    Attributes
    ----------
    role : str
        ``ct``, ``dixon_in_phase``, ``dixon_opposed_phase``, ``dixon_water``,
        ``dixon_fat``, ``dwi`` or ``adc`` (the vocabulary of `bonelesion.dicom.vendors.Role`).
    path : str
        Folder of the series, relative to the study folder (POSIX separators).
    n_files : int
        Files in the folder (a multi-frame object counts once).
    shape : (3,) tuple of int
        [slice, row, column] size of one stack.
    spacing_mm, origin_lps_mm : (3,) tuple of float
        Geometry of one stack, as in `bonelesion.model.volume.Volume`.
    direction_lps : (3, 3) tuple
        Rows of the direction matrix; column *k* is the unit vector of axis *k*.
    b_values_s_per_mm2 : tuple of float
        b-values of the stacks (empty for non-diffusion series).
    echo_time_ms : float
    image_type : tuple of str
        ImageType of the first stack (DWI: the b = 0 stack).
    """

    role: str
    series_instance_uid: str
    series_number: int
    series_description: str
    modality: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str
    n_files: int
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: tuple[tuple[float, float, float], ...]
    b_values_s_per_mm2: tuple[float, ...]
    echo_time_ms: float
    image_type: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AcquisitionTruth:
    """Acquisition parameters and signal models of the study.

    Attributes
    ----------
    magnetic_field_strength_t : float
    echo_time_opposed_phase_ms, echo_time_in_phase_ms : float
        ``1 / (2·Δf)`` and ``1 / Δf`` with Δf = 3.4 ppm · 42.577 MHz/T · B0.
    dixon_full_scale : float
        Stored in-phase value of tissue with ``mr_signal_scale`` 1. Model (no T2* decay):
        IP = S·(W + F), OP = S·|W − F|, water = S·W, fat = S·F, W = 1 − FF, F = FF.
    dwi_b_values_s_per_mm2 : tuple of float
    dwi_s0_full_scale : float
        Stored b = 0 value of fat-free tissue with ``mr_signal_scale`` 1. Model
        (fat-suppressed, water signal only): S(b) = full · scale · (1 − FF) · exp(−b · ADC).
    adc_map_units_mm2_per_s : float
        Value of one stored ADC-map unit (1e-6 mm²/s).
    ct_rescale_intercept_hu, ct_rescale_slope : float
    """

    magnetic_field_strength_t: float
    echo_time_opposed_phase_ms: float
    echo_time_in_phase_ms: float
    dixon_full_scale: float
    dwi_b_values_s_per_mm2: tuple[float, ...]
    dwi_s0_full_scale: float
    adc_map_units_mm2_per_s: float
    ct_rescale_intercept_hu: float
    ct_rescale_slope: float


@dataclass(frozen=True, kw_only=True)
class NoiseTruth:
    """Standard deviations of the added Gaussian noise (all 0 for a noise-free study).

    The CT noise is added in HU before rounding; the MR noise to the in-/opposed-phase and
    each b-value image in stored units (water and fat are then derived from the noisy
    in-/opposed-phase pair, as a two-point Dixon reconstruction does); the ADC map is
    fitted from the noisy DWI.
    """

    ct_sd_hu: float
    dixon_sd: float
    dwi_sd: float


@dataclass(frozen=True, kw_only=True)
class SpineOptionsTruth:
    """Variants the spine study was built with (see `bonelesion.phantom.SpineOptions`)."""

    lumbar_rib: bool
    sacralised_l5: bool
    osteoporotic: bool
    contrast: bool
    lesions: bool
    lytic_lesions: bool
    look_alikes: bool


@dataclass(frozen=True, kw_only=True)
class CtReconstructionTruth:
    """How the spine CT was reconstructed, blurred and made noisy.

    Attributes
    ----------
    rows, columns, slices : int
    pixel_spacing_mm, slice_spacing_mm, slice_thickness_mm : float
        Slices overlap when the thickness exceeds the spacing.
    field_of_view_mm : float
        Reconstruction diameter (square field of view).
    field_of_view_centre_lps_mm : (3,) tuple of float
        Centre of the reconstruction (the middle of the volume).
    patient_position : str
    psf_fwhm_in_plane_mm : float
        In-plane Gaussian point-spread function (before pixel integration).
    slice_profile_fwhm_mm : float
        Full width at half maximum of the slice sensitivity profile: a box of the slice
        thickness convolved with a Gaussian of ``slice_profile_gauss_fwhm_mm``.
    slice_profile_gauss_fwhm_mm : float
    noise_sd_hu : float
        Standard deviation of the added noise (0 for noise-free): white Gaussian noise
        filtered by the same in-plane kernel as the image (correlated like CT noise) and
        scaled to this SD.
    trabecular_texture_sd_hu : float
        SD of the heterogeneity of trabecular bone before blurring (smoothed noise with
        about 1 mm correlation, mean 0; 0: homogeneous marrow).
    render_sub_slices : int
        Sub-slices per slice spacing used to integrate the slice profile.
    render_sub_pixels : int
        Sub-pixels per pixel edge used to integrate bone over each pixel.
    pixel_padding_value : int or None
        Stored value outside the reconstruction circle (None: no padding).
    rescale_intercept_hu, rescale_slope : float
    bits_stored : int
    signed_pixels : bool
    """

    rows: int
    columns: int
    slices: int
    pixel_spacing_mm: float
    slice_spacing_mm: float
    slice_thickness_mm: float
    field_of_view_mm: float
    field_of_view_centre_lps_mm: tuple[float, float, float]
    patient_position: str
    psf_fwhm_in_plane_mm: float
    slice_profile_fwhm_mm: float
    slice_profile_gauss_fwhm_mm: float
    noise_sd_hu: float
    trabecular_texture_sd_hu: float
    render_sub_slices: int
    render_sub_pixels: int
    pixel_padding_value: int | None
    rescale_intercept_hu: float
    rescale_slope: float
    bits_stored: int
    signed_pixels: bool


@dataclass(frozen=True, kw_only=True)
class VertebraTruth:
    """One vertebra (T10–L5) or the first sacral segment (S1).

    Attributes
    ----------
    label : str
        ``T10`` … ``L5``, ``S1``.
    region : str
        ``thoracic``, ``lumbar`` or ``sacral``.
    body_centroid_lps_mm : (3,) tuple of float
        Centroid of the vertebral body (cortex and marrow, lesions included), from the
        analytic scene sampled at 0.5 mm.
    superior_axis_lps : (3,) tuple of float
        Unit vector of the body's cranial axis.
    body_width_mm, body_depth_mm, body_height_mm : float
        Nominal body size (lateral, AP, cranio-caudal at the centre).
    trabecular_true_hu : float
        CT number of the trabecular bone.
    trabecular_mean_hu, trabecular_sd_hu : float or None
        Mean and SD of the written CT image over the eroded trabecular core of the body
        (voxels whose centres lie ≥ 2.5 mm in-plane and ≥ half a slice thickness + 1 mm
        along the slice axis from any other structure, lesions included).
    trabecular_voxel_count : int
    rib_sides : tuple of str
        Sides with a rib articulating with this vertebra (``left``, ``right``).
    fused_to_ilium : bool
        The segment meets the iliac bones at the sacroiliac joints (S1).
    transitional : str
        ``""``, ``lumbar_rib`` (L1 with ribs) or ``sacralised_L5``.
    """

    label: str
    region: str
    body_centroid_lps_mm: tuple[float, float, float]
    superior_axis_lps: tuple[float, float, float]
    body_width_mm: float
    body_depth_mm: float
    body_height_mm: float
    trabecular_true_hu: float
    trabecular_mean_hu: float | None
    trabecular_sd_hu: float | None
    trabecular_voxel_count: int
    rib_sides: tuple[str, ...]
    fused_to_ilium: bool
    transitional: str


@dataclass(frozen=True, kw_only=True)
class DiscTruth:
    """An intervertebral disc (``fused``: a bony remnant between sacral segments)."""

    upper: str
    lower: str
    centre_lps_mm: tuple[float, float, float]
    height_mm: float
    fused: bool


@dataclass(frozen=True, kw_only=True)
class RibTruth:
    """A rib: the vertebra it articulates with, side, head centre and length."""

    vertebra: str
    side: str
    head_lps_mm: tuple[float, float, float]
    length_mm: float
    lumbar: bool


@dataclass(frozen=True, kw_only=True)
class SacroiliacJointTruth:
    """A sacroiliac joint: side and a point on its joint plane."""

    side: str
    centre_lps_mm: tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class SpineLesionTruth:
    """A lesion of the spine study.

    Attributes
    ----------
    lesion_id : str
    kind : str
        ``sclerotic_metastasis``, ``bone_island`` or ``lytic_metastasis``.
    bone : str
        Host bone (``T10`` … ``S5``, ``ilium_left``, ``ilium_right``).
    expected_nature : str
        ``malignant`` (metastases) or ``benign`` (bone islands).
    centre_lps_mm : (3,) tuple of float
        Centroid of the lesion (analytic scene sampled finely).
    volume_ml, equivalent_radius_mm : float
        Volume (shape clipped to bone) and the radius of the sphere of that volume.
    attenuation_true_hu : float
        CT number inside the lesion before blurring and noise.
    core_mean_hu, core_sd_hu : float or None
        Mean and SD of the written CT image over the lesion core (None when the lesion is
        outside the CT scan range): voxels whose centres
        lie at least ``core_erosion_in_plane_mm`` in-plane and ``core_erosion_slice_mm``
        along the slice axis inside the lesion (at least the deepest voxel).
    core_voxel_count : int
    core_erosion_in_plane_mm, core_erosion_slice_mm : float
    mr_appearance : str
        ``signal_void`` (sclerotic: dark on in-phase, opposed-phase, water, fat and DWI)
        or ``lytic`` (low fat signal, bright water and DWI signal).
    fat_fraction, t1w_signal_scale, t2w_signal_scale, adc_mm2_per_s : float
        MR properties (Dixon proton scale; DWI b = 0 scale; ADC).
    """

    lesion_id: str
    kind: str
    bone: str
    expected_nature: str
    centre_lps_mm: tuple[float, float, float]
    volume_ml: float
    equivalent_radius_mm: float
    attenuation_true_hu: float
    core_mean_hu: float | None
    core_sd_hu: float | None
    core_voxel_count: int
    core_erosion_in_plane_mm: float
    core_erosion_slice_mm: float
    mr_appearance: str
    fat_fraction: float
    t1w_signal_scale: float
    t2w_signal_scale: float
    adc_mm2_per_s: float


@dataclass(frozen=True, kw_only=True)
class LookAlikeTruth:
    """A benign finding that mimics a sclerotic lesion (not a lesion: no call expected).

    Attributes
    ----------
    look_alike_id : str
    kind : str
        ``endplate_sclerosis``, ``osteophyte`` or ``facet_sclerosis``.
    bone : str
    detail : str
        Where exactly (e.g. ``inferior endplate``, ``right facet joint L4-L5``).
    centre_lps_mm, volume_ml, equivalent_radius_mm, attenuation_true_hu, core_mean_hu,
    core_sd_hu, core_voxel_count, mr_appearance
        As in `SpineLesionTruth`.
    """

    look_alike_id: str
    kind: str
    bone: str
    detail: str
    centre_lps_mm: tuple[float, float, float]
    volume_ml: float
    equivalent_radius_mm: float
    attenuation_true_hu: float
    core_mean_hu: float | None
    core_sd_hu: float | None
    core_voxel_count: int
    mr_appearance: str


@dataclass(frozen=True, kw_only=True)
class SpineTruth:
    """The spine study's anatomy, lesions, look-alikes and CT reconstruction."""

    options: SpineOptionsTruth
    ct: CtReconstructionTruth
    vertebrae: tuple[VertebraTruth, ...]
    discs: tuple[DiscTruth, ...]
    ribs: tuple[RibTruth, ...]
    sacroiliac_joints: tuple[SacroiliacJointTruth, ...]
    lesions: tuple[SpineLesionTruth, ...]
    look_alikes: tuple[LookAlikeTruth, ...]

    def vertebra(self, label: str) -> VertebraTruth:
        """Return the vertebra with this label.

        Raises
        ------
        InputError
            If there is none.
        """
        for v in self.vertebrae:
            if v.label == label:
                return v
        raise InputError(
            f"Phantom spine truth: no vertebra {label!r}; expected one of "
            f"{[v.label for v in self.vertebrae]}. Potential fix: use a label from truth.json."
        )


@dataclass(frozen=True, kw_only=True)
class StudyTruth:
    """Everything known about a phantom study; serialised as ``truth.json``.

    ``anatomy`` and ``spine`` exist from schema 2.0 on (a 1.0 file loads with
    ``"lumbar"`` and None).
    """

    schema_version: str
    generator: str
    vendor: str
    seed: int
    enhanced: bool
    compressed: bool
    noise_free: bool
    study_instance_uid: str
    frame_of_reference_uid: str
    acquisition: AcquisitionTruth
    noise: NoiseTruth
    tissues: tuple[TissueTruth, ...]
    lesions: tuple[LesionTruth, ...]
    series: tuple[SeriesTruth, ...]
    anatomy: str = "lumbar"
    spine: SpineTruth | None = None

    def lesion(self, lesion_id: str) -> LesionTruth:
        """Return the lesion with this id.

        Raises
        ------
        InputError
            If there is none.
        """
        for les in self.lesions:
            if les.lesion_id == lesion_id:
                return les
        raise InputError(
            f"Phantom truth of study {self.study_instance_uid}: no lesion {lesion_id!r}; "
            f"expected one of {[les.lesion_id for les in self.lesions]}. Potential fix: use "
            "an id from truth.json."
        )

    def tissue(self, name: str) -> TissueTruth:
        """Return the background tissue with this name.

        Raises
        ------
        InputError
            If there is none.
        """
        for t in self.tissues:
            if t.name == name:
                return t
        raise InputError(
            f"Phantom truth of study {self.study_instance_uid}: no tissue {name!r}; expected "
            f"one of {[t.name for t in self.tissues]}. Potential fix: use a name from truth.json."
        )

    def series_for_role(self, role: str) -> SeriesTruth:
        """Return the one series with this role.

        Raises
        ------
        InputError
            If there is none.
        """
        for s in self.series:
            if s.role == role:
                return s
        raise InputError(
            f"Phantom truth of study {self.study_instance_uid}: no series with role {role!r}; "
            f"found {[s.role for s in self.series]}. Potential fix: use one of those roles."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); a 1.0 truth has no 2.0-only keys."""
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        if self.schema_version == LUMBAR_TRUTH_SCHEMA_VERSION:
            for key in _KEYS_SINCE_2_0:
                del data[key]
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_truth(truth: StudyTruth, path: Path) -> Path:
    """Write ``truth.json`` (sorted keys, 2-space indent, trailing newline)."""
    path.write_text(json.dumps(truth.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def write_rois_csv(truth: StudyTruth, path: Path) -> Path:
    """Write the annotations CSV the measuring stages read (`ROIS_CSV_COLUMNS`)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(ROIS_CSV_COLUMNS)
        for les in truth.lesions:
            c = les.center_lps_mm
            writer.writerow([
                les.lesion_id, repr(c[0]), repr(c[1]), repr(c[2]), repr(les.radius_mm),
                truth.study_instance_uid, "true" if les.treated else "false",
            ])
    return path


# ------------------------------------------------------------------------ strict loading
def _convert(value: Any, hint: Any, where: str, source: Path) -> Any:
    """Convert parsed JSON to the annotated type, refusing mismatches."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where, source)  # type: ignore[arg-type]
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            _type_error(where, source, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            _type_error(where, source, f"a list of {len(args)}", value)
        return tuple(_convert(v, a, f"{where}[{i}]", source) for i, (v, a) in
                     enumerate(zip(value, args, strict=True)))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _convert(value, next(a for a in args if a is not type(None)), where, source)
    if hint is bool:
        if not isinstance(value, bool):
            _type_error(where, source, "true/false", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _type_error(where, source, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _type_error(where, source, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _type_error(where, source, "a string", value)
        return value
    raise TypeError(f"unsupported annotation {hint!r}")  # pragma: no cover - programming error


def _type_error(where: str, source: Path, expected: str, found: Any) -> typing.NoReturn:
    raise InputError(
        f"Phantom truth {source}: key {where!r} must be {expected}, found {found!r}. "
        "Potential fix: regenerate the file with `bonelesion phantom`."
    )


def _from_dict(cls: type, data: Any, where: str, source: Path) -> Any:
    if not isinstance(data, dict):
        _type_error(where or "(root)", source, "an object", type(data).__name__)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise InputError(
            f"Phantom truth {source}: object {where or '(root)'!r} has missing keys {missing} "
            f"and unknown keys {unknown}; expected exactly {names}. Potential fix: regenerate "
            "the file with `bonelesion phantom`, or fix the key names."
        )
    prefix = f"{where}." if where else ""
    return cls(**{n: _convert(data[n], hints[n], prefix + n, source) for n in names})


def load_truth(path: str | Path) -> StudyTruth:
    """Read and validate ``truth.json``.

    Parameters
    ----------
    path : str or Path
        The file, or the study folder that holds ``truth.json``.

    Returns
    -------
    StudyTruth

    Raises
    ------
    InputError
        If the file is absent, not JSON, of another schema version, or has a missing,
        unknown or mistyped key.
    """
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILENAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"Phantom truth {path}: file not found. Potential fix: pass a study folder written "
            "by `bonelesion phantom` or its truth.json."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"Phantom truth {path}: not valid JSON ({exc}). Potential fix: regenerate it with "
            "`bonelesion phantom`."
        ) from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version not in SUPPORTED_TRUTH_SCHEMA_VERSIONS:
        raise InputError(
            f"Phantom truth {path}: schema_version expected one of "
            f"{list(SUPPORTED_TRUTH_SCHEMA_VERSIONS)}, found {version!r}. Potential fix: "
            "regenerate it with this version of `bonelesion phantom`."
        )
    if version == LUMBAR_TRUTH_SCHEMA_VERSION:
        present = [k for k in _KEYS_SINCE_2_0 if k in data]
        if present:
            raise InputError(
                f"Phantom truth {path}: schema 1.0 has no key(s) {present} (they exist from "
                "2.0 on). Potential fix: set schema_version to 2.0 or remove the keys."
            )
        data = {**data, "anatomy": "lumbar", "spine": None}
    truth: StudyTruth = _from_dict(StudyTruth, data, "", path)
    return truth


# ------------------------------------------------------------------------- JSON schema
def _schema_of(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        names = [f.name for f in dataclasses.fields(hint)]
        return {
            "type": "object",
            "title": hint.__name__,  # type: ignore[union-attr]
            "additionalProperties": False,
            "required": names,
            "properties": {n: _schema_of(hints[n]) for n in names},
        }
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0])}
        return {"type": "array", "prefixItems": [_schema_of(a) for a in args],
                "minItems": len(args), "maxItems": len(args)}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        return {"anyOf": [_schema_of(members[0]), {"type": "null"}]}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
            str: {"type": "string"}}[hint]


def _study_schema(version: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bonelesion.invalid/schemas/phantom-truth-{version}.json",
        **_schema_of(StudyTruth),
    }
    schema["properties"]["schema_version"] = {"const": version}
    if version == LUMBAR_TRUTH_SCHEMA_VERSION:
        for key in _KEYS_SINCE_2_0:
            del schema["properties"][key]
            schema["required"].remove(key)
    return schema


#: JSON Schema (draft 2020-12) of each truth.json version, derived from the dataclasses.
TRUTH_JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    v: _study_schema(v) for v in SUPPORTED_TRUTH_SCHEMA_VERSIONS}
#: JSON Schema of the current version.
TRUTH_JSON_SCHEMA: dict[str, Any] = TRUTH_JSON_SCHEMAS[TRUTH_SCHEMA_VERSION]
