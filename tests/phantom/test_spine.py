"""The thoracolumbar-pelvic spine phantom: anatomy, lesions and vendor styles against truth.

Truth: the written DICOM files as read by SimpleITK/GDCM and pydicom (never bonelesion's
own loader), compared with truth.json and with the numbers of the brief (issue 15) and of
CLINICAL_REFERENCE.md (metastases 500–850 HU, bone islands 1000–1500 HU, trabecular bone
150–250 HU, osteoporotic 60–110 HU, cortical shell 700–1200 HU, fat −100, CSF ~10).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from phantom._readers import StudyGetter, read_series, sphere_values
from phantom._render import render_mid_slices
from phantom.test_truth import check_against_schema

from bonelesion.cli import main
from bonelesion.errors import InputError
from bonelesion.phantom import (
    SAMPLE_CT,
    TRUTH_JSON_SCHEMAS,
    CtProtocol,
    MrProtocol,
    StudyTruth,
    load_truth,
    write_spine_study,
)

pytestmark = pytest.mark.slow  # each spine study takes a few seconds to write

#: Sphere radius for sampling the image at a truth point (inside the body, ≥ 20 voxels).
SAMPLE_RADIUS_MM = 4.0
#: Image median at a marrow point: trabecular true HU ± the trabecular texture (SD 20 HU
#: before blurring, correlated over ~2 mm: a median of ~30 voxels varies by ~10 HU).
TRABECULAR_ATOL_HU = 20.0
#: Disc materials are 75–90 HU; the sample sphere may touch an endplate's blur.
DISC_RANGE_HU = (55.0, 130.0)
#: Noise-free lesion core: blur and slice profile do not reach it (erosion ≥ PSF, ½ slice).
CORE_ATOL_HU = 8.0
#: Noisy cores: correlated noise; at most 4 voxels per independent sample.
NOISE_VOXELS_PER_SAMPLE = 4.0
#: Trabecular bone also carries texture correlated over ~2 mm: ≤ 30 voxels per sample.
TEXTURE_VOXELS_PER_SAMPLE = 30.0
N_STANDARD_ERRORS = 5.0
#: Written noise SD vs nominal 13 HU (measured over thousands of marrow voxels).
NOISE_SD_RANGE_HU = (11.0, 15.0)
#: Cortical shell as it appears after blurring (brief).
CORTEX_PEAK_RANGE_HU = (700.0, 1250.0)
#: A signal void: at most this fraction of the marrow signal of the same MR image.
SIGNAL_VOID_FRACTION = 0.45


def _ct(root: Path, truth: StudyTruth) -> sitk.Image:
    return read_series(root / truth.series_for_role("ct").path)[None]


def _spine(truth: StudyTruth):  # noqa: ANN202 - SpineTruth, narrowed from Optional
    assert truth.spine is not None
    return truth.spine


def _near_a_finding(truth: StudyTruth, point: tuple[float, float, float] | np.ndarray,
                    margin_mm: float) -> bool:
    spine = _spine(truth)
    items = [(les.centre_lps_mm, les.equivalent_radius_mm) for les in spine.lesions] + [
        (la.centre_lps_mm, la.equivalent_radius_mm) for la in spine.look_alikes]
    return any(math.dist(c, tuple(point)) < r * 1.6 + margin_mm for c, r in items)


def _marrow_point(truth: StudyTruth, label: str) -> np.ndarray | None:
    """A point of the body's marrow away from lesions: the centroid or a shifted one."""
    v = _spine(truth).vertebra(label)
    c = np.asarray(v.body_centroid_lps_mm)
    w, d = v.body_width_mm, v.body_depth_mm
    for off in ((0, 0, 0), (0.22 * w, 0, 0), (-0.22 * w, 0, 0), (0, -0.2 * d, 0),
                (0, 0.15 * d, 0)):
        p = c + np.asarray(off, float)
        if not _near_a_finding(truth, p, SAMPLE_RADIUS_MM + 2.0):
            return p
    return None


def _nearest_voxel(img: sitk.Image, point: tuple[float, float, float] | np.ndarray) -> float:
    idx = img.TransformPhysicalPointToIndex(tuple(float(v) for v in point))
    return float(img[idx])


# ------------------------------------------------------------------ anatomy and truth
def test_truth_covers_the_brief(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens")
    spine = _spine(truth)
    assert truth.schema_version == "2.0" and truth.anatomy == "thoracolumbar_pelvis"
    assert [v.label for v in spine.vertebrae] == [
        "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    ribbed = {v.label for v in spine.vertebrae if v.rib_sides}
    assert ribbed == {"T10", "T11", "T12"}
    assert {(r.vertebra, r.side) for r in spine.ribs} >= {
        (lv, side) for lv in ("T10", "T11", "T12") for side in ("left", "right")}
    assert [v.label for v in spine.vertebrae if v.fused_to_ilium] == ["S1"]
    assert {s.side for s in spine.sacroiliac_joints} == {"left", "right"}
    # body centroids descend along S, 25–45 mm apart; bodies get wider down to L5
    s = [v.body_centroid_lps_mm[2] for v in spine.vertebrae]
    assert all(25.0 < a - b < 45.0 for a, b in zip(s[:-1], s[1:], strict=True))
    widths = [v.body_width_mm for v in spine.vertebrae[:-1]]
    assert widths == sorted(widths)
    mets = [les for les in spine.lesions if les.kind == "sclerotic_metastasis"]
    islands = [les for les in spine.lesions if les.kind == "bone_island"]
    assert len(mets) >= 4 and len(islands) >= 4
    assert all(500 <= m.attenuation_true_hu <= 850 and 0.3 <= m.volume_ml <= 6.0 for m in mets)
    assert all(1000 <= b.attenuation_true_hu <= 1500 and 0.05 <= b.volume_ml <= 1.0
               for b in islands)
    largest = max(spine.lesions, key=lambda les: les.volume_ml)
    assert largest.bone.startswith(("S", "ilium"))
    assert all(les.mr_appearance == "signal_void" for les in mets + islands)
    assert {la.kind for la in spine.look_alikes} == {
        "endplate_sclerosis", "osteophyte", "facet_sclerosis"}
    assert all(abs(np.linalg.norm(v.superior_axis_lps) - 1.0) < 1e-4  # 4 decimals
               for v in spine.vertebrae)
    # rois.csv: one sphere per lesion, as the measuring stages read it
    rows = (root / "rois.csv").read_text().splitlines()
    assert len(rows) == 1 + len(spine.lesions)


def test_truth_json_schema_and_round_trip(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens")
    data = json.loads((root / "truth.json").read_text())
    check_against_schema(TRUTH_JSON_SCHEMAS["2.0"], data)
    loaded = load_truth(root)
    assert loaded == truth
    assert loaded.spine is not None and loaded.spine.vertebra("L3").label == "L3"
    with pytest.raises(InputError, match="no vertebra 'C2'"):
        loaded.spine.vertebra("C2")


def test_vertebrae_and_discs_where_truth_says(get_spine_study: StudyGetter) -> None:
    """Through SimpleITK: body centroids hold trabecular bone, disc centres disc tissue."""
    root, truth = get_spine_study("spine-siemens-noise-free")
    ct = _ct(root, truth)
    spine = _spine(truth)
    checked = 0
    for v in spine.vertebrae:
        point = _marrow_point(truth, v.label)
        if point is None:
            continue
        hu = sphere_values(ct, point, SAMPLE_RADIUS_MM)
        assert abs(float(np.median(hu)) - v.trabecular_true_hu) <= TRABECULAR_ATOL_HU, v.label
        checked += 1
    assert checked >= 7
    for d in spine.discs:
        if d.fused:
            continue
        hu = sphere_values(ct, d.centre_lps_mm, 2.0)
        assert DISC_RANGE_HU[0] <= float(np.median(hu)) <= DISC_RANGE_HU[1], (d.upper, d.lower)
    # trabecular bone in the normal range, measured on the written image
    assert all(150.0 <= v.trabecular_mean_hu <= 250.0 for v in spine.vertebrae
               if v.trabecular_mean_hu is not None)


def test_cortical_shell_and_soft_tissue_values(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens-noise-free")
    ct = _ct(root, truth)
    spine = _spine(truth)
    arr = sitk.GetArrayFromImage(ct)
    for label in ("L2", "L4", "T12"):
        v = spine.vertebra(label)
        c = np.asarray(v.body_centroid_lps_mm)
        # a ray through the lateral wall at the centroid level (+L, away from the canal)
        ray = [c + np.array([t, 0.0, 0.0]) for t in np.arange(0.3, 0.7, 0.01) * v.body_width_mm]
        peak = max(float(arr[tuple(reversed(ct.TransformPhysicalPointToIndex(tuple(p))))])
                   for p in ray)
        assert CORTEX_PEAK_RANGE_HU[0] <= peak <= CORTEX_PEAK_RANGE_HU[1], label
    tissues = {t.name: t.attenuation_hu for t in truth.tissues}
    assert tissues["fat"] == -100.0 and 40.0 <= tissues["muscle"] <= 60.0
    assert tissues["csf"] == pytest.approx(10.0) and tissues["cord"] == pytest.approx(35.0)
    assert tissues["air"] == -1000.0
    # CSF in the canal behind the L1 body (the thecal sac)
    l1 = spine.vertebra("L1")
    canal = np.asarray(l1.body_centroid_lps_mm) + np.array([0.0, l1.body_depth_mm / 2 + 9.0,
                                                            0.0])
    assert float(np.median(sphere_values(ct, canal, 1.5))) < 60.0


def test_lesion_cores_noise_free(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens-noise-free")
    ct = _ct(root, truth)
    spine = _spine(truth)
    for les in spine.lesions + spine.look_alikes:
        assert les.core_voxel_count >= 1
        if les.core_voxel_count >= 10:
            assert les.core_mean_hu == pytest.approx(les.attenuation_true_hu, abs=CORE_ATOL_HU)
    for les in spine.lesions:
        if les.volume_ml >= 0.3:
            hu = sphere_values(ct, les.centre_lps_mm, 1.5)
            assert float(np.mean(hu)) == pytest.approx(les.attenuation_true_hu,
                                                       abs=CORE_ATOL_HU + 12.0), les.lesion_id


def test_lesion_cores_and_noise_noisy(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens")
    spine = _spine(truth)
    sd = truth.noise.ct_sd_hu
    assert sd == 13.0
    for les in spine.lesions:
        n = les.core_voxel_count
        if n >= 20:
            se = sd * math.sqrt(NOISE_VOXELS_PER_SAMPLE / n)
            assert abs(les.core_mean_hu - les.attenuation_true_hu) <= N_STANDARD_ERRORS * se + 2.0
    big = [v for v in spine.vertebrae if v.trabecular_voxel_count >= 2000]
    assert len(big) >= 6
    for v in big:
        # trabecular SD: noise and texture together, more than the noise alone
        assert NOISE_SD_RANGE_HU[1] < v.trabecular_sd_hu < 3 * NOISE_SD_RANGE_HU[1], v.label
        se = v.trabecular_sd_hu * math.sqrt(TEXTURE_VOXELS_PER_SAMPLE / v.trabecular_voxel_count)
        assert abs(v.trabecular_mean_hu - v.trabecular_true_hu) <= N_STANDARD_ERRORS * se + 2.0
    # the noise itself: SD in the air of a field-of-view corner (no texture there)
    arr = sitk.GetArrayFromImage(_ct(root, truth)).astype(np.float64)
    corner = arr[:, :24, :24]
    assert float(corner.mean()) == pytest.approx(-1000.0, abs=3.0)
    assert NOISE_SD_RANGE_HU[0] <= float(corner.std()) <= NOISE_SD_RANGE_HU[1]


def test_sclerotic_lesions_are_signal_voids_on_mr(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-siemens-noise-free")
    spine = _spine(truth)
    marrow_point = next(p for p in (_marrow_point(truth, lv) for lv in ("T10", "L1", "L5"))
                        if p is not None)
    roles = ("dixon_in_phase", "dixon_opposed_phase", "dixon_water", "dixon_fat")
    images = {r: read_series(root / truth.series_for_role(r).path)[None] for r in roles}
    images["dwi_b0"] = read_series(root / truth.series_for_role("dwi").path)[0.0]
    big = [les for les in spine.lesions if les.mr_appearance == "signal_void"
           and les.volume_ml >= 1.0]
    assert len(big) >= 3
    for name, img in images.items():
        # opposed phase: marrow itself nearly cancels (FF 0.45); compare with in-phase marrow
        ref = images["dixon_in_phase"] if name == "dixon_opposed_phase" else img
        marrow = _nearest_voxel(ref, marrow_point)
        for les in big:
            lesion = _nearest_voxel(img, les.centre_lps_mm)
            assert lesion <= SIGNAL_VOID_FRACTION * marrow, (name, les.lesion_id, lesion, marrow)


# ------------------------------------------------------------------ vendor styles
def test_ge_padding_signed_implicit_vr(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-ge")
    files = sorted((root / truth.series_for_role("ct").path).glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert (ds.PixelRepresentation, ds.BitsStored, ds.PixelPaddingValue) == (1, 16, -2000)
    assert float(ds.SliceThickness) == 1.25
    px = ds.pixel_array
    assert px[0, 0] == -2000 and px[-1, -1] == -2000 and px[0, px.shape[1] // 2] != -2000
    ct = _ct(root, truth)
    assert ct.GetSpacing()[2] == pytest.approx(1.25)
    label, point = next((lv, p) for lv in ("L2", "L3", "L4")
                        if (p := _marrow_point(truth, lv)) is not None)
    hu = sphere_values(ct, point, SAMPLE_RADIUS_MM)
    expected = _spine(truth).vertebra(label).trabecular_true_hu
    assert abs(float(np.median(hu)) - expected) <= TRABECULAR_ATOL_HU


def test_philips_overlapping_slices(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-philips")
    files = sorted((root / truth.series_for_role("ct").path).glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert float(ds.SliceThickness) == 2.0 and float(ds.SpacingBetweenSlices) == 1.5
    z = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
               for f in files[:5])
    assert np.diff(z) == pytest.approx([1.5] * 4)
    spine = _spine(truth)
    assert spine.ct.slice_thickness_mm == 2.0 and spine.ct.slice_spacing_mm == 1.5
    assert spine.ct.slice_profile_fwhm_mm > spine.ct.slice_spacing_mm


@pytest.mark.parametrize("name, position, iop", [
    ("spine-ffs-512", "FFS", [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    ("spine-hfp-variants", "HFP", [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]),
])
def test_patient_positions(get_spine_study: StudyGetter, name: str, position: str,
                           iop: list[float]) -> None:
    root, truth = get_spine_study(name)
    files = sorted((root / truth.series_for_role("ct").path).glob("*.dcm"))
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.PatientPosition == position
    assert [float(v) for v in ds.ImageOrientationPatient] == iop
    ct = _ct(root, truth)
    spine = _spine(truth)
    assert ds.Rows == spine.ct.rows
    checked = 0
    for v in spine.vertebrae:
        point = _marrow_point(truth, v.label)
        c = spine.ct.field_of_view_centre_lps_mm[2]
        half_range = (spine.ct.slices - 1) * spine.ct.slice_spacing_mm / 2 - SAMPLE_RADIUS_MM
        if point is not None and abs(point[2] - c) < half_range:  # inside the scan range
            hu = sphere_values(ct, point, SAMPLE_RADIUS_MM)
            assert abs(float(np.median(hu)) - v.trabecular_true_hu) <= 20.0, (name, v.label)
            checked += 1
    assert checked >= 2


def test_variants_lumbar_rib_sacralised_osteoporotic_lytic(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-hfp-variants")
    spine = _spine(truth)
    ct = _ct(root, truth)
    l1, l5 = spine.vertebra("L1"), spine.vertebra("L5")
    assert l1.rib_sides == ("left", "right") and l1.transitional == "lumbar_rib"
    lumbar_ribs = [r for r in spine.ribs if r.lumbar]
    assert len(lumbar_ribs) == 2
    for rib in lumbar_ribs:
        assert float(np.max(sphere_values(ct, rib.head_lps_mm, 2.0))) > 300.0
    assert l5.transitional == "sacralised_L5"
    l5s1 = next(d for d in spine.discs if (d.upper, d.lower) == ("L5", "S1"))
    assert l5s1.height_mm < 6.0
    measured = [v.trabecular_mean_hu for v in spine.vertebrae if v.trabecular_mean_hu]
    assert all(60.0 <= hu <= 110.0 for hu in measured)
    lytic = [les for les in spine.lesions if les.kind == "lytic_metastasis"]
    assert len(lytic) == 2 and all(les.mr_appearance == "lytic" for les in lytic)
    for les in lytic:
        assert les.core_mean_hu < 60.0
    assert spine.options.contrast and spine.options.osteoporotic


def test_enhanced_compressed_reads_back(get_spine_study: StudyGetter) -> None:
    root, truth = get_spine_study("spine-enhanced-compressed")
    ct_files = list((root / truth.series_for_role("ct").path).glob("*.dcm"))
    assert len(ct_files) == 1
    ds = pydicom.dcmread(ct_files[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    assert "PixelPaddingValue" in ds
    ct = _ct(root, truth)
    label, centre = next((lv, p) for lv in ("L2", "L3", "L4")
                         if (p := _marrow_point(truth, lv)) is not None)
    hu = sphere_values(ct, centre, SAMPLE_RADIUS_MM)
    expected = _spine(truth).vertebra(label).trabecular_true_hu
    assert abs(float(np.median(hu)) - expected) <= TRABECULAR_ATOL_HU


# ------------------------------------------------------------------ determinism, errors
def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    small_mr = MrProtocol(dixon_slices=4, dixon_slice_mm=10.0, dixon_pixel_mm=5.0,
                          dwi_slices=3, dwi_slice_mm=12.0, dwi_pixel_mm=6.0)
    ct = CtProtocol(matrix=128, field_of_view_mm=400.0, slice_thickness_mm=3.0,
                    s_range_mm=(-400.0, -330.0))
    a = write_spine_study(tmp_path / "a", seed=11, ct=ct, mr=small_mr)
    b = write_spine_study(tmp_path / "b", seed=11, ct=ct, mr=small_mr)
    c = write_spine_study(tmp_path / "c", seed=12, ct=ct, mr=small_mr)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert a == b
    assert a.study_instance_uid != c.study_instance_uid
    first = sorted((tmp_path / "a" / a.series_for_role("ct").path).glob("*.dcm"))[10]
    other = tmp_path / "c" / c.series_for_role("ct").path / first.name
    assert not np.array_equal(pydicom.dcmread(first).pixel_array,
                              pydicom.dcmread(other).pixel_array)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="patient position 'XYZ'"):
        write_spine_study(tmp_path / "a", ct=CtProtocol(patient_position="XYZ"))
    with pytest.raises(InputError, match="matrix 32 outside"):
        write_spine_study(tmp_path / "a", ct=CtProtocol(matrix=32))
    with pytest.raises(InputError, match="vendor 'canon'"):
        write_spine_study(tmp_path / "a", vendor="canon")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        write_spine_study(tmp_path / "full", ct=SAMPLE_CT)


def test_cli_spine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main(["-q", "phantom", str(out), "--anatomy", "spine", "--small", "--no-mr",
                 "--vendor", "ge", "--seed", "2", "--lumbar-rib",
                 "--s-range-mm", "-300", "-250"]) == 0
    truth = load_truth(out)
    assert truth.spine is not None and truth.spine.vertebra("L1").rib_sides
    assert [s.role for s in truth.series] == ["ct"]
    assert "1 series" in capsys.readouterr().out
    assert main(["-q", "phantom", str(tmp_path / "l"), "--lumbar-rib"]) == 2
    assert "only apply to --anatomy spine" in capsys.readouterr().err


# ------------------------------------------------------------------ pictures
@pytest.mark.parametrize("name", ["spine-siemens", "spine-ffs-512", "spine-hfp-variants"])
def test_render_mid_slices_for_a_person(get_spine_study: StudyGetter, name: str) -> None:
    """Sagittal and coronal mid-slices in test-artifacts/ (look at them after a change)."""
    root, truth = get_spine_study(name)
    spine = _spine(truth)
    coronal_p = float(np.mean([v.body_centroid_lps_mm[1] for v in spine.vertebrae]))
    paths = render_mid_slices(_ct(root, truth), name.replace("-", "_"), coronal_p_mm=coronal_p)
    for path in paths:
        with path.open("rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # the three pictures show the same anatomy: the sagittal picture is as tall as the scan
    from PIL import Image

    with Image.open(paths[0]) as im:
        height_mm = im.height * spine.ct.pixel_spacing_mm
    scan_mm = (spine.ct.slices - 1) * spine.ct.slice_spacing_mm
    assert height_mm == pytest.approx(scan_mm, rel=0.03)


def test_scene_label_map_matches_truth(get_spine_study: StudyGetter) -> None:
    """The analytic label map (for later labelling work) puts each body at its centroid."""
    from bonelesion.phantom.shapes import Raster
    from bonelesion.phantom.spine import build_scene, render_labels

    _, truth = get_spine_study("spine-siemens")
    spine = _spine(truth)
    scene = build_scene(seed=truth.seed)
    for v in spine.vertebrae:
        x, y, z = (np.array([c], np.float32) for c in v.body_centroid_lps_mm)
        label = int(render_labels(scene, Raster(coords=(z, y, x), lps_axis=(2, 1, 0)))[0, 0, 0])
        assert scene.labels[label].bone == v.label, (v.label, scene.labels[label].name)
