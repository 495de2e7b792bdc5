"""Analytic test volumes with known truth (STYLE.md §8).

* `ct_cube`: a CT volume in HU with a cube (or sphere) of known attenuation plus seeded noise;
* `dwi_series`: DWI signal S = S0 · exp(−b · ADC) for each b-value, on one grid;
* `dixon_series`: in-phase, opposed-phase, water and fat images from a known fat fraction
  (two-point model: IP ∝ W + F, OP ∝ |W − F|).

Every builder takes a ``direction_lps`` and ``spacing_mm`` so tests can run on oblique and
anisotropic grids; the truth is analytic, never computed by the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

__all__ = ["make_volume", "sphere_mask_truth", "ct_cube", "dwi_series", "dixon_series"]

FOR_UID = "1.2.826.0.1.3680043.8.498.1"
STUDY_UID = "1.2.826.0.1.3680043.8.498.2"


def make_volume(
    array: NDArray[np.generic],
    *,
    spacing_mm: Sequence[float] = (2.0, 1.0, 1.0),
    origin_lps_mm: Sequence[float] = (-20.0, -30.0, 10.0),
    direction_lps: NDArray[np.float64] | None = None,
    intensity_unit: IntensityUnit = IntensityUnit.ARBITRARY,
    **series: object,
) -> Volume:
    """Volume with test defaults: FoR `FOR_UID`, study `STUDY_UID`, other SeriesInfo fields."""
    fields: dict[str, object] = {
        "frame_of_reference_uid": FOR_UID,
        "study_instance_uid": STUDY_UID,
        "series_instance_uid": "1.2.826.0.1.3680043.8.498.100",
    }
    fields.update(series)
    return Volume(
        array=np.asarray(array),
        spacing_mm=tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
        origin_lps_mm=tuple(float(o) for o in origin_lps_mm),  # type: ignore[arg-type]
        direction_lps=np.eye(3) if direction_lps is None else direction_lps,
        intensity_unit=intensity_unit,
        series=SeriesInfo(**fields),  # type: ignore[arg-type]
    )


def sphere_mask_truth(
    grid: Volume, centre_lps_mm: Sequence[float], radius_mm: float
) -> NDArray[np.bool_]:
    """Voxels whose centre lies within ``radius_mm`` of the centre (brute force over all voxels)."""
    centres = grid.voxel_centres_lps()
    return np.linalg.norm(centres - np.asarray(centre_lps_mm), axis=-1) <= radius_mm


def ct_cube(
    *,
    shape: tuple[int, int, int] = (20, 40, 40),
    background_hu: float = 40.0,
    lesion_hu: float = 700.0,
    lesion_slices: slice = slice(5, 15),
    lesion_rows: slice = slice(10, 30),
    lesion_columns: slice = slice(10, 30),
    noise_sd_hu: float = 0.0,
    seed: int = 0,
    spacing_mm: Sequence[float] = (2.0, 0.7, 0.7),
    direction_lps: NDArray[np.float64] | None = None,
    dtype: type = np.float32,
) -> tuple[Volume, Volume]:
    """CT volume (HU) with a cuboid lesion of ``lesion_hu`` and its boolean mask.

    Returns
    -------
    ct : Volume, HU
    mask : Volume of bool, True inside the cuboid
    """
    rng = np.random.default_rng(seed)
    array = np.full(shape, background_hu, dtype=np.float64)
    mask = np.zeros(shape, dtype=bool)
    mask[lesion_slices, lesion_rows, lesion_columns] = True
    array[mask] = lesion_hu
    if noise_sd_hu:
        array += rng.normal(0.0, noise_sd_hu, size=shape)
    ct = make_volume(
        array.astype(dtype),
        spacing_mm=spacing_mm,
        direction_lps=direction_lps,
        intensity_unit=IntensityUnit.HU,
        modality="CT",
        role="ct",
        series_instance_uid="1.2.826.0.1.3680043.8.498.10",
    )
    return ct, ct.with_array(mask, intensity_unit=IntensityUnit.MASK)


def dwi_series(
    adc_mm2_per_s: NDArray[np.float64] | float,
    b_values_s_per_mm2: Sequence[float],
    *,
    shape: tuple[int, int, int] = (8, 32, 32),
    s0: float = 1000.0,
    noise_sd: float = 0.0,
    seed: int = 0,
    spacing_mm: Sequence[float] = (4.0, 2.0, 2.0),
    direction_lps: NDArray[np.float64] | None = None,
    series_instance_uid: str = "1.2.826.0.1.3680043.8.498.20",
) -> list[Volume]:
    """One DWI Volume per b-value with S = S0·exp(−b·ADC) (+ Gaussian noise if asked)."""
    rng = np.random.default_rng(seed)
    adc = np.broadcast_to(np.asarray(adc_mm2_per_s, dtype=np.float64), shape)
    out = []
    for b in b_values_s_per_mm2:
        signal = s0 * np.exp(-float(b) * adc)
        if noise_sd:
            signal = signal + rng.normal(0.0, noise_sd, size=shape)
        out.append(
            make_volume(
                signal.astype(np.float32),
                spacing_mm=spacing_mm,
                direction_lps=direction_lps,
                modality="MR",
                role="dwi",
                b_value_s_per_mm2=float(b),
                series_instance_uid=series_instance_uid,
                magnetic_field_strength_t=1.5,
            )
        )
    return out


def dixon_series(
    fat_fraction: NDArray[np.float64] | float,
    *,
    shape: tuple[int, int, int] = (8, 32, 32),
    total_signal: float = 1000.0,
    noise_sd: float = 0.0,
    seed: int = 0,
    field_strength_t: float = 1.5,
    echo_times_ms: tuple[float, float] = (4.6, 2.3),
    spacing_mm: Sequence[float] = (5.0, 1.5, 1.5),
    direction_lps: NDArray[np.float64] | None = None,
) -> dict[str, Volume]:
    """Two-point Dixon images of a known fat fraction FF: W = (1−FF)·T, F = FF·T.

    Returns a dict with keys ``in_phase`` (W + F), ``opposed_phase`` (|W − F|), ``water``,
    ``fat``, all on one grid; echo times (in, opposed) as given.
    """
    rng = np.random.default_rng(seed)
    ff = np.broadcast_to(np.asarray(fat_fraction, dtype=np.float64), shape)
    water = (1.0 - ff) * total_signal
    fat = ff * total_signal
    images = {
        "in_phase": (water + fat, "dixon_in_phase", echo_times_ms[0]),
        "opposed_phase": (np.abs(water - fat), "dixon_opposed_phase", echo_times_ms[1]),
        "water": (water, "dixon_water", echo_times_ms[0]),
        "fat": (fat, "dixon_fat", echo_times_ms[0]),
    }
    out = {}
    for i, (name, (array, role, te)) in enumerate(images.items()):
        if noise_sd:
            array = array + rng.normal(0.0, noise_sd, size=shape)
        out[name] = make_volume(
            array.astype(np.float32),
            spacing_mm=spacing_mm,
            direction_lps=direction_lps,
            modality="MR",
            role=role,
            echo_time_ms=te,
            magnetic_field_strength_t=field_strength_t,
            series_instance_uid=f"1.2.826.0.1.3680043.8.498.3{i}",
        )
    return out


def ct_datasets(volume: Volume, *, series_number: int = 2) -> list[object]:
    """Single-frame CT Image Storage data sets of an axis-aligned or oblique `Volume` (HU).

    Stored values = HU + 1024 (RescaleIntercept −1024); geometry from the volume: axis 2 along
    ImageOrientationPatient[:3], axis 1 along [3:], slices along axis 0. For SEG/RTSTRUCT tests.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series_uid = volume.series.series_instance_uid or generate_uid()
    out = []
    for s in range(volume.shape[0]):
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = volume.series.study_instance_uid or STUDY_UID
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = volume.series.frame_of_reference_uid or FOR_UID
        ds.PatientID = "SYNTH"
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyDate = "20260101"
        ds.StudyTime = "000000"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.Modality = "CT"
        ds.Manufacturer = "bonelesion-tests"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = s + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        d = volume.direction_lps
        ds.ImageOrientationPatient = [float(x) for x in (*d[:, 2], *d[:, 1])]
        ds.ImagePositionPatient = [float(x) for x in volume.index_to_lps([[s, 0, 0]])[0]]
        ds.PixelSpacing = [volume.spacing_mm[1], volume.spacing_mm[2]]
        ds.SliceThickness = volume.spacing_mm[0]
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = (
            (np.asarray(volume.array[s], dtype=np.float64) + 1024)
            .round()
            .astype(np.uint16)
            .tobytes()
        )
        out.append(ds)
    return out
