"""Cropped measurement equals whole-volume measurement, number for number.

`measure_study` measures each lesion on crops of the volumes around it; ``crop=False`` keeps
the whole-volume computation. Truth: that whole-volume computation. Every field of every
result (statistics, counts, warnings, provenance, reasons a feature is missing) must be
equal exactly, NaN matching NaN; the warnings emitted must be the same. Studies: a synthetic
multi-lesion study on oblique grids (CT, Dixon, DWI fitted and scanner ADC) with lesions at
and beyond the volumes' edges, and the digital phantom studies (real DICOM, read back).
Also: erosion of a mask on a crop equals the whole-volume erosion, both when the crop's
margin exceeds the erosion radius and when the crop is clipped at the volume's edge.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.phantom_kit import PhantomExport
from support.synthetic import FOR_UID, STUDY_UID, make_volume

from bonelesion.model.volume import IndexBox, Volume
from bonelesion.pipeline.loading import StudyVolumes
from bonelesion.pipeline.measurement import lesion_margin_voxels, measure_study
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.base import erode_mask
from bonelesion.stages.config import (
    ChemicalShiftConfig,
    CtAttenuationConfig,
    DwiAdcConfig,
    PipelineConfig,
    StagesConfig,
)
from bonelesion.units import IntensityUnit


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


def _plain(value: Any) -> Any:
    """Dataclasses to dicts, NaN to a marker: results compare with ==, exactly."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _measure_both(volumes: StudyVolumes, lesions: list[Lesion], config: PipelineConfig
                  ) -> tuple[list[Any], list[Any]]:
    """Both paths' plain results and emitted warnings; asserts they are equal."""
    out = []
    for crop in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = measure_study(volumes, lesions, config, crop=crop)
        out.append((_plain(results), [(w.category, str(w.message)) for w in caught]))
    (cropped, cropped_warnings), (whole, whole_warnings) = out
    assert len(cropped) == len(lesions)
    for a, b in zip(cropped, whole, strict=True):
        assert a == b, f"lesion {b['lesion_id']}: cropped and whole-volume results differ"
    assert cropped_warnings == whole_warnings
    return cropped, whole


def _origin(centre: np.ndarray, shape: tuple[int, ...], spacing: tuple[float, ...],
            direction: np.ndarray) -> tuple[float, ...]:
    """Origin of a grid whose centre is ``centre``."""
    half = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    return tuple(float(v) for v in centre - direction @ half)


def _synthetic_study() -> tuple[StudyVolumes, list[Lesion]]:
    rng = np.random.default_rng(2024)
    ct_dir, mr_dir = _rotation(0.2, -0.3, 0.1), _rotation(-0.7, 0.5, 1.2)
    # CT: soft tissue with bone blocks of different HU and noise, anisotropic voxels
    ct_array = rng.normal(40.0, 25.0, (36, 70, 66)).astype(np.float32)
    ct_array[5:20, 10:40, 12:50] += 650.0
    ct_array[22:34, 30:66, 20:60] += 1100.0
    ct = make_volume(ct_array, spacing_mm=(2.0, 0.7, 0.75), origin_lps_mm=(-25.0, -24.0, -20.0),
                     direction_lps=ct_dir, intensity_unit=IntensityUnit.HU, modality="CT",
                     role="ct", series_instance_uid="1.2.826.0.1.3680043.8.498.10")
    centre = ct.index_to_lps([[(n - 1) / 2 for n in ct.shape]])[0]
    shape = (20, 44, 46)
    mr_kw: dict[str, Any] = dict(spacing_mm=(2.5, 1.4, 1.3), direction_lps=mr_dir,
                                 origin_lps_mm=_origin(centre, shape, (2.5, 1.4, 1.3), mr_dir),
                                 modality="MR", magnetic_field_strength_t=1.5)
    ff = np.clip(rng.normal(0.4, 0.2, shape), 0.0, 1.0)
    water, fat = 800.0 * (1 - ff), 800.0 * ff
    noise = [rng.normal(0.0, 15.0, shape) for _ in range(4)]
    dixon = {
        "dixon_in_phase": (water + fat + noise[0], 4.6, "1.2.826.0.1.3680043.8.498.30"),
        "dixon_opposed_phase": (np.abs(water - fat) + noise[1], 2.3,
                                "1.2.826.0.1.3680043.8.498.31"),
        "dixon_water": (water + noise[2], None, "1.2.826.0.1.3680043.8.498.32"),
        "dixon_fat": (fat + noise[3], None, "1.2.826.0.1.3680043.8.498.33"),
    }
    roles: dict[str, tuple[Volume, ...]] = {"ct": (ct,)}
    for role, (array, te, uid) in dixon.items():
        roles[role] = (make_volume(array.astype(np.float32), role=role, echo_time_ms=te,
                                   series_instance_uid=uid, **mr_kw),)
    # DWI on a third grid: ADC varies, S0 falls to the noise floor in a corner
    adc = np.clip(rng.normal(1.0e-3, 0.3e-3, (16, 36, 34)), 2e-4, 3e-3)
    s0 = np.full(adc.shape, 900.0)
    s0[:4, :8, :8] = 5.0
    dwi_dir = _rotation(0.9, 0.1, -0.4)
    dwi_origin = _origin(centre, adc.shape, (3.0, 1.8, 1.9), dwi_dir)
    dwi = tuple(
        make_volume((s0 * np.exp(-b * adc) + rng.normal(0.0, 4.0, adc.shape)).astype(np.float32),
                    spacing_mm=(3.0, 1.8, 1.9), origin_lps_mm=dwi_origin,
                    direction_lps=dwi_dir, modality="MR", role="dwi",
                    b_value_s_per_mm2=b, series_instance_uid="1.2.826.0.1.3680043.8.498.40")
        for b in (0.0, 50.0, 400.0, 800.0))
    roles["dwi"] = dwi
    volumes = StudyVolumes(study_instance_uid=STUDY_UID, by_role=roles)

    def at(idx: list[float]) -> tuple[float, ...]:
        return tuple(float(v) for v in ct.index_to_lps([idx])[0])

    lesions = [
        Lesion(lesion_id=f"S{k}", sphere=Sphere(at(list(rng.uniform(0, ct.shape))),
                                                float(rng.uniform(2.0, 12.0))))
        for k in range(10)
    ]
    lesions += [
        Lesion(lesion_id="edge", sphere=Sphere(at([0.0, 0.5, 33.0]), 7.0)),  # clipped crop
        Lesion(lesion_id="corner", sphere=Sphere(at([35.4, 69.2, 65.3]), 9.0)),
        Lesion(lesion_id="tiny", sphere=Sphere(at([12.0, 20.0, 30.0]), 0.6)),  # erosion empties
        Lesion(lesion_id="beyond", sphere=Sphere(at([18.0, 35.0, -30.0]), 6.0)),  # outside CT
        Lesion(lesion_id="far", sphere=Sphere((900.0, 900.0, 900.0), 5.0)),  # outside all
        Lesion(lesion_id="other_for", sphere=Sphere(at([18.0, 35.0, 30.0]), 6.0),
               frame_of_reference_uid="1.2.3.4"),
    ]
    # at the DWI noise floor: wholly (ADC refused) and partly (voxels excluded)
    for lid, idx, radius in (("dark", [1.0, 3.0, 3.0], 4.0), ("dim", [3.5, 7.5, 7.5], 7.0)):
        centre_lps = tuple(float(v) for v in dwi[0].index_to_lps([idx])[0])
        lesions.append(Lesion(lesion_id=lid, sphere=Sphere(centre_lps, radius)))
    # a label-mask lesion on its own grid, and contours drawn on CT slices (not parallel to
    # the MR grids: refused there, with the same reason either way)
    label_grid = make_volume(np.zeros((14, 30, 30)), spacing_mm=(1.0, 1.0, 1.0),
                             origin_lps_mm=at([14.0, 25.0, 25.0]), direction_lps=np.eye(3))
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in label_grid.shape), indexing="ij"), -1)
    blob = (np.linalg.norm(idx - [7, 12, 14], axis=-1) <= 6) | (
        np.linalg.norm(idx - [6, 19, 18], axis=-1) <= 4)
    lesions.append(Lesion(lesion_id="label", mask=label_grid.with_array(blob),
                          frame_of_reference_uid=FOR_UID))
    square = np.array([[30.0, 20.0], [45.0, 21.0], [44.0, 38.0], [29.0, 37.0]])
    contours = tuple(ct.index_to_lps(np.column_stack([np.full(4, float(s)), square]))
                     for s in (8, 10, 12))
    lesions.append(Lesion(lesion_id="contours", contours=contours))
    return volumes, lesions


@pytest.mark.parametrize("erosion", [None, 2.5, 0.0], ids=["1voxel", "2.5mm", "none"])
def test_synthetic_study_cropped_equals_whole(erosion: float | None) -> None:
    volumes, lesions = _synthetic_study()
    stages = StagesConfig(
        ct_attenuation=CtAttenuationConfig(erosion_margin_mm=erosion),
        mr_chemical_shift=ChemicalShiftConfig(erosion_margin_mm=erosion),
        dwi_adc=DwiAdcConfig(erosion_margin_mm=erosion))
    cropped, _ = _measure_both(volumes, lesions, PipelineConfig(stages=stages))
    by_id = {r["lesion_id"]: r for r in cropped}
    # the comparison covers every stage, its warnings and its refusals
    measured = [r for r in cropped if r["ct"] and r["chemical_shift"] and r["adc"]]
    assert len(measured) >= 8
    assert "are masked" in by_id["dark"]["missing"]["adc"]
    assert any("masked (noise floor)" in w for w in by_id["dim"]["adc"]["warnings"])
    assert by_id["far"]["missing"].keys() == {"ct", "chemical_shift", "adc"}
    assert "has no voxel on series" in by_id["beyond"]["missing"]["ct"]
    assert "frame of reference" in by_id["other_for"]["missing"]["ct"]
    assert "not parallel" in by_id["contours"]["missing"]["chemical_shift"]
    assert by_id["contours"]["ct"] and by_id["label"]["ct"] and by_id["edge"]["ct"]
    if erosion is None:
        assert any("left no voxel" in w for w in by_id["tiny"]["ct"]["warnings"])


def test_scanner_adc_cropped_equals_whole() -> None:
    volumes, lesions = _synthetic_study()
    fitted = measure_study(volumes, lesions[:1], PipelineConfig())[0]
    assert fitted.adc is not None
    from bonelesion.stages.dwi_adc import fit_adc

    adc = fit_adc(volumes.by_role["dwi"], config=DwiAdcConfig()).volume
    roles = {r: v for r, v in volumes.by_role.items() if r != "dwi"}
    roles["adc"] = (adc.with_array(np.asarray(adc.array),
                                   series=adc.series.replace(series_instance_uid="9.8.7")),)
    scanner = StudyVolumes(study_instance_uid=STUDY_UID, by_role=roles)
    cropped, _ = _measure_both(scanner, lesions, PipelineConfig())
    assert sum(r["adc"] is not None for r in cropped) >= 8


def test_phantom_studies_cropped_equal_whole(phantom_export: PhantomExport) -> None:
    from bonelesion.dicom.series import load_series
    from bonelesion.roi.sources import load_lesions

    lesions = load_lesions(phantom_export.rois)
    assert phantom_export.folders
    for uid, folder in phantom_export.folders.items():
        roles: dict[str, list[Volume]] = {}
        for stack in load_series(Path(folder)):
            if stack.volume is not None:
                roles.setdefault(stack.info.role, []).append(stack.volume)
        study = [le for le in lesions if le.applies_to_study(uid)]
        assert len(study) >= 4 and {"ct", "dixon_in_phase", "dwi", "adc"} <= roles.keys()
        for drop in ("adc", "dwi"):  # fitted ADC, then the scanner's map
            volumes = StudyVolumes(study_instance_uid=uid, by_role={
                r: tuple(v) for r, v in roles.items() if r != drop})
            cropped, _ = _measure_both(volumes, study, PipelineConfig())
            assert all(r["ct"] and r["chemical_shift"] and r["adc"] for r in cropped)


# ----------------------------------------------------------------------------- erosion
def _erosion_case() -> tuple[np.ndarray, tuple[float, float, float]]:
    rng = np.random.default_rng(8)
    mask = np.zeros((30, 40, 44), dtype=bool)
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in mask.shape), indexing="ij"), -1)
    spacing = (2.0, 0.7, 0.8)
    for centre in ([15, 20, 22], [0, 3, 40], [29, 39, 1]):  # inside, and at two edges
        radius = rng.uniform(5.0, 9.0)
        mask |= np.linalg.norm((idx - centre) * np.asarray(spacing), axis=-1) <= radius
    return mask, spacing


@pytest.mark.parametrize("margin_mm", [None, 1.5, 3.0])
def test_erosion_on_a_crop_equals_whole_volume_erosion(margin_mm: float | None) -> None:
    mask, spacing = _erosion_case()
    whole, radii = erode_mask(mask, spacing, margin_voxels=1, margin_mm=margin_mm)
    assert whole.any() and whole.sum() < mask.sum()
    vol = Volume(array=mask, spacing_mm=spacing, origin_lps_mm=(0, 0, 0),
                 direction_lps=np.eye(3))
    margins = lesion_margin_voxels(vol, erosion_margin_voxels=1, erosion_margin_mm=margin_mm)
    assert all(m > r for m, r in zip(margins, radii))
    labels = [(slice(0, 30), slice(0, 40), slice(0, 30)),  # the inner ball …
              (slice(0, 8), slice(0, 15), slice(30, 44)),  # … and the two at the edges
              (slice(22, 30), slice(25, 40), slice(0, 12))]
    for part in labels:
        piece = np.zeros_like(mask)
        piece[part] = mask[part]
        rows = [np.flatnonzero(piece.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
        own = IndexBox(tuple(int(r[0]) for r in rows), tuple(int(r[-1]) + 1 for r in rows))
        piece_whole, _ = erode_mask(piece, spacing, margin_voxels=1, margin_mm=margin_mm)
        # the crop's margin exceeds the erosion radius, or it is clipped at the volume's edge
        box = own.grown(margins).clipped(mask.shape)
        assert box != own.grown(margins)  or part == labels[0]
        core, _ = erode_mask(piece[box.slices], spacing, margin_voxels=1, margin_mm=margin_mm)
        expected = piece_whole[box.slices]
        np.testing.assert_array_equal(core, expected)
        outside = piece_whole.copy()
        outside[box.slices] = False
        assert not outside.any()
