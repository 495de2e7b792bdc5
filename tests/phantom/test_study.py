"""The written study, read back with SimpleITK/GDCM and pydicom, matches truth.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from phantom._readers import core_radius_mm, read_series, sphere_values

from bonelesion.phantom import StudyTruth, load_truth

#: Noise-free lesion cores hold one integer stored value: the float64 mean is exact.
EXACT_ATOL_HU = 1e-9
#: SIR from integer IP/OP with IP ≥ ~500 in every lesion core (quantisation ≤ 0.5/500).
SIR_ATOL = 0.01
#: ADC from integer DWI values (S0 ≥ ~600 in lesion cores): brief's 1 % target.
ADC_RTOL = 0.01
#: Geometry stored as DS strings (≤ 16 characters).
GEOMETRY_ATOL_MM = 1e-4
#: Noise SD estimated from ≥ 1000 voxels: relative standard error ≤ 2.2 %; 10 % is > 4 SE.
NOISE_SD_RTOL = 0.10


def _series(root: Path, truth: StudyTruth, role: str) -> dict[float | None, sitk.Image]:
    return read_series(root / truth.series_for_role(role).path)


def _check_truth_values(root: Path, truth: StudyTruth) -> None:
    ct = _series(root, truth, "ct")[None]
    ip = _series(root, truth, "dixon_in_phase")[None]
    op = _series(root, truth, "dixon_opposed_phase")[None]
    water = _series(root, truth, "dixon_water")[None]
    fat = _series(root, truth, "dixon_fat")[None]
    dwi = _series(root, truth, "dwi")
    adc_map = _series(root, truth, "adc")
    adc_img = next(iter(adc_map.values()))
    b_values = np.array(sorted(dwi))
    np.testing.assert_allclose(b_values, truth.acquisition.dwi_b_values_s_per_mm2)
    for les in truth.lesions:
        hu = sphere_values(ct, les.center_lps_mm, core_radius_mm(ct, les.radius_mm))
        assert hu.size > 0
        np.testing.assert_allclose(hu.mean(), les.attenuation_mean_hu, atol=EXACT_ATOL_HU,
                                   err_msg=les.lesion_id)
        np.testing.assert_allclose(hu.std(), 0.0, atol=EXACT_ATOL_HU)  # homogeneous core
        r = core_radius_mm(ip, les.radius_mm)
        si_ip = sphere_values(ip, les.center_lps_mm, r).mean()
        si_op = sphere_values(op, les.center_lps_mm, r).mean()
        np.testing.assert_allclose(si_op / si_ip, les.chemical_shift_ratio, atol=SIR_ATOL,
                                   err_msg=les.lesion_id)
        w = sphere_values(water, les.center_lps_mm, r).mean()
        f = sphere_values(fat, les.center_lps_mm, r).mean()
        np.testing.assert_allclose(f / (w + f), les.fat_fraction, atol=SIR_ATOL)
        # ADC: log-linear least-squares fit of the core mean signal over b (numpy).
        rd = core_radius_mm(dwi[0.0], les.radius_mm)
        signal = np.array([sphere_values(dwi[b], les.center_lps_mm, rd).mean()
                           for b in b_values])
        slope = np.polyfit(b_values, np.log(signal), 1)[0]
        np.testing.assert_allclose(-slope, les.adc_mm2_per_s, rtol=ADC_RTOL,
                                   err_msg=les.lesion_id)
        scanner = sphere_values(adc_img, les.center_lps_mm, rd).mean() * 1e-6
        np.testing.assert_allclose(scanner, les.adc_mm2_per_s, rtol=ADC_RTOL)


def test_noise_free_lesion_truth(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    _check_truth_values(root, truth)


@pytest.mark.slow
def test_every_variant_reads_and_matches_truth(
    study_variant: tuple[str, Path, StudyTruth],
) -> None:
    """Each vendor, enhanced and compressed variant: GDCM reads every series, truth holds."""
    _, root, truth = study_variant
    for s in truth.series:
        stacks = read_series(root / s.path)
        expected_b = set(s.b_values_s_per_mm2) if s.role == "dwi" else None
        if expected_b is not None:
            assert set(stacks) == expected_b
        for img in stacks.values():
            assert img.GetSize() == tuple(reversed(s.shape))
            np.testing.assert_allclose(img.GetSpacing(), tuple(reversed(s.spacing_mm)),
                                       atol=GEOMETRY_ATOL_MM)
            np.testing.assert_allclose(img.GetOrigin(), s.origin_lps_mm, atol=GEOMETRY_ATOL_MM)
            # SimpleITK direction: row-major, column k = axis k in (x, y, z) = (col, row, slice)
            d_sitk = np.asarray(img.GetDirection()).reshape(3, 3)
            d_truth = np.asarray(s.direction_lps)[:, ::-1]
            np.testing.assert_allclose(d_sitk, d_truth, atol=GEOMETRY_ATOL_MM)
    _check_truth_values(root, truth)


def test_tissue_values(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    dwi = _series(root, truth, "dwi")
    b = np.array(sorted(dwi))
    # Spinal canal (fluid) centre line and L2 marrow between the lesions, posterior part.
    for name, point, radius in (("fluid", (0.0, 32.0, 18.0), 4.0),
                                ("marrow", (0.0, 12.0, 0.0), 2.0)):
        t = truth.tissue(name)
        sig = np.array([sphere_values(dwi[bv], point, radius).mean() for bv in b])
        np.testing.assert_allclose(-np.polyfit(b, np.log(sig), 1)[0], t.adc_mm2_per_s,
                                   rtol=ADC_RTOL, err_msg=name)
    ip = _series(root, truth, "dixon_in_phase")[None]
    op = _series(root, truth, "dixon_opposed_phase")[None]
    marrow = truth.tissue("marrow")
    ratio = (sphere_values(op, (0.0, 12.0, 0.0), 2.0).mean()
             / sphere_values(ip, (0.0, 12.0, 0.0), 2.0).mean())
    np.testing.assert_allclose(ratio, marrow.chemical_shift_ratio, atol=SIR_ATOL)
    ct = _series(root, truth, "ct")[None]
    np.testing.assert_allclose(sphere_values(ct, (0.0, 12.0, 0.0), 2.0).mean(),
                               marrow.attenuation_hu, atol=EXACT_ATOL_HU)
    np.testing.assert_allclose(sphere_values(ct, (0.0, -40.0, 0.0), 5.0).mean(),
                               truth.tissue("soft_tissue").attenuation_hu, atol=EXACT_ATOL_HU)


def test_noisy_study_noise_sd_and_means(study_noisy: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noisy
    assert truth.noise.ct_sd_hu > 0 and not truth.noise_free
    ct = _series(root, truth, "ct")[None]
    # Soft tissue right of the vertebrae, ≥ 5 mm from fat, bone and canal, at three levels.
    soft = np.concatenate([sphere_values(ct, (-40.0, -10.0, s_mm), 10.0)
                           for s_mm in (-30.0, 0.0, 30.0)])
    assert soft.size > 1000
    np.testing.assert_allclose(soft.std(), truth.noise.ct_sd_hu, rtol=NOISE_SD_RTOL)
    for les in truth.lesions:
        hu = sphere_values(ct, les.center_lps_mm, core_radius_mm(ct, les.radius_mm))
        # mean of n voxels with SD σ: 5 standard errors
        np.testing.assert_allclose(hu.mean(), les.attenuation_mean_hu,
                                   atol=5 * truth.noise.ct_sd_hu / np.sqrt(hu.size))


def test_one_study_one_frame_of_reference(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    uids = set()
    for f in sorted((root / "DICOM").rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert ds.StudyInstanceUID == truth.study_instance_uid
        assert ds.FrameOfReferenceUID == truth.frame_of_reference_uid
        assert ds.SOPInstanceUID not in uids
        uids.add(ds.SOPInstanceUID)
    assert len({s.series_instance_uid for s in truth.series}) == len(truth.series)
    assert load_truth(root) == truth


def test_echo_times_follow_field_strength(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    acq = truth.acquisition
    # 3.4 ppm × 42.577 MHz/T × 1.5 T = 217.1 Hz → OP 2.303 ms, IP 4.606 ms (analytic).
    assert acq.magnetic_field_strength_t == pytest.approx(1.5)
    assert acq.echo_time_opposed_phase_ms == pytest.approx(1000 / (2 * 3.4 * 42.577478 * 1.5))
    assert acq.echo_time_in_phase_ms == pytest.approx(2 * acq.echo_time_opposed_phase_ms)
    for role, te in (("dixon_in_phase", acq.echo_time_in_phase_ms),
                     ("dixon_opposed_phase", acq.echo_time_opposed_phase_ms)):
        f = next((root / truth.series_for_role(role).path).glob("*.dcm"))
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert float(ds.EchoTime) == pytest.approx(te, abs=1e-6)
        assert float(ds.MagneticFieldStrength) == pytest.approx(1.5)
