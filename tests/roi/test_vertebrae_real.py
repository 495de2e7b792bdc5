"""Vertebra labelling on real CT: bodies and trabecular HU against reference masks.

* ``spine_ct_mr_tptbox_nifti``: a noisy, osteoporotic 1.5 mm CT crop of L2 (partial), L3 and
  L4 with vertebra and sub-region masks (VerSe numbering), NIfTI only: written as axial DICOM
  here and read back through the loader.
* ``ct_siemens_biograph_j2k_spine``: 20 JPEG 2000 slices over 40 mm holding the T12 body and
  the edge of T11, with a TotalSegmentator reference segmentation.

The references are the datasets' masks, never our output: the reference trabecular HU is the
mean CT number of the reference body mask eroded by the same documented rule as ours
(``trabecular_erosion_mm`` plus half a voxel, Pickhardt 2013's ROI away from the cortex).
Neither field of view holds a counting anchor (no sacrum; in the 40 mm of the Siemens CT the rib
shafts leave the view before reaching their heads), so the levels must come back unknown with
a low confidence and the reason, never a confident guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from support.testdata import shared_path

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.config import DetectionConfig
from bonelesion.roi.vertebrae import AnchorCountingLabeller, SpineLabelling, Vertebra
from bonelesion.units import IntensityUnit

pytestmark = pytest.mark.shared_data

#: Body centroid against the reference body mask's: the crops cut bodies, and our mask
#: comes from a faint, noisy cortex (TPTBox noise SD ~80 HU).
CENTROID_ATOL_MM = 10.0
#: Trabecular HU: the same erosion rule on two masks of one body; TPTBox's noise (SD ~80 HU)
#: over a few thousand voxels gives ~2 HU, mask edges the rest.
TRABECULAR_ATOL_HU = 12.0


def _reference_trabecular(ct: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]) -> float:
    rule = DetectionConfig().vertebrae.trabecular_erosion_mm + 0.5 * max(spacing)
    core = ndimage.distance_transform_edt(body, sampling=spacing) >= rule
    return float(ct[core].mean())


def _nearest(lab: SpineLabelling, point: np.ndarray) -> Vertebra:
    return min(lab.vertebrae, key=lambda v: float(np.linalg.norm(
        np.subtract(v.centroid_lps_mm, point))))


@pytest.fixture(scope="module")
def tptbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The TPTBox CT written as axial DICOM and read back; vertebra and sub-region masks."""
    import nibabel as nib
    from support.synthetic import ct_datasets

    from bonelesion.dicom.series import load_series

    base = shared_path("spine_ct_mr_tptbox_nifti")
    img = nib.load(base / "nifti" / "sample_ct" / "sub-ct_label-22_ct.nii.gz")
    ct_ras = np.asarray(img.dataobj).astype(np.float64)
    vert = np.asarray(nib.load(base / "reference" / "sample_ct" /
                               "sub-ct_seg-vert_label-22_msk.nii.gz").dataobj)
    sub = np.asarray(nib.load(base / "reference" / "sample_ct" /
                              "sub-ct_seg-subreg_label-22_msk.nii.gz").dataobj)
    native = Volume.from_ras_affine(np.clip(ct_ras, -1024, None), img.affine,
                                    intensity_unit=IntensityUnit.HU)
    # axial slices: the NIfTI axis running inferior-superior becomes the slice axis
    k = int(np.argmax(np.abs(native.direction_lps[2])))
    order = (k, *[a for a in range(3) if a != k])
    axial = Volume(array=np.transpose(np.asarray(native.array), order),
                   spacing_mm=tuple(native.spacing_mm[a] for a in order),  # type: ignore[arg-type]
                   origin_lps_mm=native.origin_lps_mm,
                   direction_lps=native.direction_lps[:, list(order)],
                   intensity_unit=IntensityUnit.HU,
                   series=SeriesInfo(series_instance_uid="1.2.826.0.1.3680043.8.498.77",
                                     modality="CT"))
    folder = tmp_path_factory.mktemp("tptbox_dicom")
    for n, ds in enumerate(ct_datasets(axial)):
        ds.save_as(folder / f"ct{n:03d}.dcm", enforce_file_format=True)  # type: ignore[attr-defined]
    ct = load_series(sorted(str(p) for p in folder.glob("*.dcm")))[0].volume
    assert ct.shape == axial.shape
    vert_axial = np.transpose(vert, order)
    sub_axial = np.transpose(sub, order)
    return ct, vert_axial, sub_axial


def test_tptbox_bodies_and_trabecular_hu(tptbox: tuple[Volume, np.ndarray, np.ndarray]) -> None:
    ct, vert, sub = tptbox
    lab = AnchorCountingLabeller().label(ct)
    assert len(lab.vertebrae) >= 2
    array = np.asarray(ct.array, dtype=np.float64)
    # L3 (VerSe 22) is whole in the crop: its body must be found and measured
    body = (vert == 22) & np.isin(sub, (49, 50))
    centroid = ct.index_to_lps(np.argwhere(body).mean(axis=0)[None])[0]
    found = _nearest(lab, centroid)
    assert np.linalg.norm(np.subtract(found.centroid_lps_mm, centroid)) <= CENTROID_ATOL_MM
    reference = _reference_trabecular(array, body, ct.spacing_mm)
    assert reference < 110.0  # osteoporotic marrow in this crop
    assert found.trabecular_mean_hu == pytest.approx(reference, abs=TRABECULAR_ATOL_HU)
    # no rib, no sacrum in view: levels unknown, said with the reason
    for v in lab.vertebrae:
        assert v.label == "" and v.confidence <= 0.1
        assert "no counting anchor" in " ".join(v.reasons)
    assert any("noisy or low-contrast" in n for n in lab.notes)


@pytest.fixture(scope="module")
def j2k() -> tuple[Volume, Volume]:
    import nibabel as nib

    from bonelesion.dicom.series import load_series

    base = shared_path("ct_siemens_biograph_j2k_spine")
    files = sorted(str(p) for p in (base / "dicom" / "example_ct_dicom").iterdir())
    ct = load_series(files)[0].volume
    ref = nib.load(base / "reference" / "example_seg_dicom.nii.gz")
    labels = Volume.from_ras_affine(np.asarray(ref.dataobj), ref.affine,
                                    intensity_unit=IntensityUnit.MASK)
    return ct, labels.resample_like(ct, order=0, check_frame_of_reference=False)


def test_j2k_t12_body_and_trabecular_hu(j2k: tuple[Volume, Volume]) -> None:
    ct, labels = j2k
    lab = AnchorCountingLabeller().label(ct)
    ref = np.asarray(labels.array)
    array = np.asarray(ct.array, dtype=np.float64)
    # the reference T12 (TotalSegmentator 32) is the whole vertebra: its body is the part in
    # front of the spinal cord (79)
    t12 = ref == 32
    cord_row = np.argwhere(ref == 79)[:, 1].mean()
    body = t12.copy()
    body[:, int(cord_row) - 5:, :] = False
    centroid = ct.index_to_lps(np.argwhere(body).mean(axis=0)[None])[0]
    found = _nearest(lab, centroid)
    assert np.linalg.norm(np.subtract(found.centroid_lps_mm, centroid)) <= CENTROID_ATOL_MM
    reference = _reference_trabecular(array, body, ct.spacing_mm)
    assert found.trabecular_mean_hu == pytest.approx(reference, abs=TRABECULAR_ATOL_HU)
    # T12 and the edge of T11: a disc between them was found, the levels are not guessed
    assert len(lab.vertebrae) == 2
    assert all(v.confidence <= 0.35 for v in lab.vertebrae)
    assert all(v.label in ("", "T11", "T12") for v in lab.vertebrae)


def test_head_ct_gives_no_vertebra_and_a_note() -> None:
    from bonelesion.dicom.series import load_series

    folder = shared_path("ct_ge_hispeed_head", "dicom")
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    stacks = [s for s in load_series(files, tilt="resample") if s.info.role == "ct"]
    assert stacks
    lab = AnchorCountingLabeller().label(stacks[0].volume)
    assert lab.vertebrae == ()
    assert any("no spinal column" in n for n in lab.notes)


def test_bone_block_phantom_gives_no_vertebra() -> None:
    from bonelesion.dicom.series import load_series

    folder = shared_path("ct_bone_phantom_ge_ctpace", "dicom")
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    volume = load_series(files)[0].volume
    lab = AnchorCountingLabeller().label(volume)
    assert lab.vertebrae == ()
    assert lab.notes
