"""Fixtures of the DICOM reader tests.

``bonelesion.dicom.vendors`` is implemented on another branch. Until it is merged, its
functions raise NotImplementedError; the autouse fixture below then installs a *private,
minimal* stand-in (test-only, never in src/) so that the reader can be exercised on real
data. As soon as the real module is present, the stand-in is not used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from pydicom import Dataset

from bonelesion.dicom import vendors


def _real_vendors_available() -> bool:
    try:
        vendors.echo_time_ms(Dataset())
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - any other behaviour means it is implemented
        return True
    return True


def _f(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _vendor(ds: Dataset) -> vendors.Vendor:
    m = str(ds.get("Manufacturer", "") or "").lower()
    for token, v in (("siemens", vendors.Vendor.SIEMENS), ("ge ", vendors.Vendor.GE),
                     ("philips", vendors.Vendor.PHILIPS), ("canon", vendors.Vendor.CANON),
                     ("toshiba", vendors.Vendor.CANON), ("hitachi", vendors.Vendor.HITACHI)):
        if token in m + " ":
            return v
    if m.startswith("ge"):
        return vendors.Vendor.GE
    return vendors.Vendor.OTHER


def _b(ds: Dataset) -> float | None:
    if "DiffusionBValue" in ds:
        return _f(ds.DiffusionBValue)
    elem = ds.get((0x0019, 0x100C))
    if elem is not None and _vendor(ds) == vendors.Vendor.SIEMENS:
        v = elem.value
        if isinstance(v, bytes):
            v = v.decode("latin-1").strip("\0 ")
        return _f(v)
    elem = ds.get((0x0043, 0x1039))
    if elem is not None:
        v = elem.value
        if isinstance(v, bytes):
            v = v.decode("latin-1").split("\\")
        first = _f(list(v)[0] if not isinstance(v, (str, int, float)) else v)
        return None if first is None else first % 1e9
    elem = ds.get((0x2001, 0x1003))
    if elem is not None and _vendor(ds) == vendors.Vendor.PHILIPS:
        v = elem.value
        if isinstance(v, bytes):
            v = float(np.frombuffer(v[:4], "<f4")[0])
        b = _f(v)
        return b if b else None  # Philips writes 0 in non-diffusion images too
    if "MOSAIC" in [str(t).upper() for t in (ds.get("ImageType", None) or [])]:
        return None
    return None


def _direction(ds: Dataset) -> tuple[float, float, float] | None:
    b = _b(ds)
    if not b:
        return None
    vec = None
    seq = ds.get("DiffusionGradientDirectionSequence", None)
    if "DiffusionGradientOrientation" in ds:
        vec = [float(v) for v in ds.DiffusionGradientOrientation]
    elif seq and "DiffusionGradientOrientation" in seq[0]:
        vec = [float(v) for v in seq[0].DiffusionGradientOrientation]
    elif (0x0019, 0x100E) in ds and _vendor(ds) == vendors.Vendor.SIEMENS:
        v = ds[0x0019, 0x100E].value
        if isinstance(v, bytes):
            v = list(np.frombuffer(v[:24], "<f8"))
        vec = [float(x) for x in v]
    elif (0x0019, 0x10BB) in ds:
        vec = [_f(ds[0x0019, t].value) or 0.0 for t in (0x10BB, 0x10BC, 0x10BD)]
    elif (0x2005, 0x10B0) in ds:
        vec = []
        for t in (0x10B0, 0x10B1, 0x10B2):
            v = ds[0x2005, t].value
            if isinstance(v, bytes):
                v = float(np.frombuffer(v[:4], "<f4")[0])
            vec.append(float(v))
    elif "b=" in str(ds.get("ImageComments", "")):  # Canon: "b=1500(0.000,-0.445,0.895)"
        import re

        m = re.search(r"\(([-0-9.]+),([-0-9.]+),([-0-9.]+)\)", str(ds.ImageComments))
        if m:
            vec = [float(v) for v in m.groups()]
    if vec is None or len(vec) != 3 or not math.isfinite(sum(vec)) or np.linalg.norm(vec) < 1e-3:
        return None
    n = np.asarray(vec) / np.linalg.norm(vec)
    return (float(n[0]), float(n[1]), float(n[2]))


def _kind(ds: Dataset) -> vendors.DiffusionKind:
    it = [str(t).upper() for t in (ds.get("ImageType", None) or [])]
    if "ADC" in it:
        return vendors.DiffusionKind.ADC
    if "FA" in it or "EADC" in it:
        return vendors.DiffusionKind.OTHER_DERIVED
    if "TRACEW" in it:
        return vendors.DiffusionKind.TRACE
    b = _b(ds)
    if b is None:
        return vendors.DiffusionKind.NONE
    if b == 0:
        return vendors.DiffusionKind.B0
    return vendors.DiffusionKind.DIRECTIONAL if _direction(ds) else vendors.DiffusionKind.TRACE


def _te(ds: Dataset) -> float | None:
    return _f(ds.get("EchoTime", None) or ds.get("EffectiveEchoTime", None))


def _field(ds: Dataset) -> float | None:
    v = _f(ds.get("MagneticFieldStrength", None))
    if v is None:
        return None
    return v / 1e4 if v > 100 else v


def _role(ds: Dataset) -> vendors.Role:
    if str(ds.get("Modality", "")).upper() == "CT":
        return vendors.Role.CT
    kind = _kind(ds)
    if kind == vendors.DiffusionKind.ADC:
        return vendors.Role.ADC
    if kind in (vendors.DiffusionKind.B0, vendors.DiffusionKind.DIRECTIONAL,
                vendors.DiffusionKind.TRACE):
        return vendors.Role.DWI
    te, b0 = _te(ds), _field(ds)
    if te is not None and b0 and te < 8:
        period_ms = 1e3 / (3.4e-6 * 42.577478e6 * b0)
        frac = (te / period_ms) % 1.0
        if abs(frac - 0.5) < 0.15:
            return vendors.Role.DIXON_OPPOSED_PHASE
        if frac < 0.15 or frac > 0.85:
            return vendors.Role.DIXON_IN_PHASE
    return vendors.Role.OTHER


def _adc_scale(ds: Dataset, values: np.ndarray) -> float:
    pos = values[values > 0]
    med = float(np.median(pos)) if pos.size else 0.0
    if med > 50:
        return 1e-6
    if med > 0.05:
        return 1e-3
    return 1.0


@pytest.fixture(autouse=True, scope="session")
def vendor_rules() -> Iterator[None]:
    """Install the stand-in vendor rules while the real module is not merged."""
    with pytest.MonkeyPatch.context() as mp:
        if not _real_vendors_available():
            for name, fn in (("vendor_of", _vendor), ("b_value_s_per_mm2", _b),
                             ("diffusion_direction_lps", _direction), ("diffusion_kind", _kind),
                             ("echo_time_ms", _te), ("magnetic_field_strength_t", _field),
                             ("stack_role", _role), ("adc_scale_to_mm2_per_s", _adc_scale)):
                mp.setattr(vendors, name, fn)
        yield


# ---------------------------------------------------------------------------- helpers
def reference_on_grid(volume, nifti_path, volume_index=None, *, atol_mm=1e-3):  # type: ignore[no-untyped-def]
    """Values of a reference NIfTI at our voxel centres, after checking the geometry.

    Maps our (slice, row, column) voxel centres through our RAS affine into the reference
    image's voxel space; asserts they land on reference voxel centres (to ``atol_mm``) and
    returns the reference values there (scaled by scl_slope/scl_inter) in our array order.
    """
    import nibabel as nib

    img = nib.load(str(nifti_path))
    ref_affine = img.affine
    m = np.linalg.inv(ref_affine) @ volume.affine_ras
    idx = np.indices(volume.shape).reshape(3, -1).astype(np.float64)
    cont = m[:3, :3] @ idx + m[:3, 3:4]
    nearest = np.round(cont)
    world_ours = (volume.affine_ras[:3, :3] @ idx + volume.affine_ras[:3, 3:4])
    world_ref = ref_affine[:3, :3] @ nearest + ref_affine[:3, 3:4]
    err_mm = float(np.max(np.linalg.norm(world_ours - world_ref, axis=0)))
    assert err_mm <= atol_mm, f"voxel centres differ from the reference by {err_mm} mm"
    data = np.asanyarray(img.dataobj).astype(np.float64)
    slope = img.dataobj.slope if np.isfinite(img.dataobj.slope) else 1.0
    inter = img.dataobj.inter if np.isfinite(img.dataobj.inter) else 0.0
    data = data * slope + inter
    if data.ndim == 4:
        data = data[..., 0 if volume_index is None else volume_index]
    n = nearest.astype(int)
    assert np.all((n >= 0) & (n < np.array(data.shape)[:, None])), "grid outside reference"
    return data[n[0], n[1], n[2]].reshape(volume.shape)


@pytest.fixture
def ref_on_grid():  # type: ignore[no-untyped-def]
    """The `reference_on_grid` helper."""
    return reference_on_grid


def write_ct_slices(folder, n=4, *, spacing_mm=2.0, positions=None, iop=(1, 0, 0, 0, 1, 0),  # type: ignore[no-untyped-def]
                    rows=8, cols=6, pixel_spacing=(0.5, 0.7), series_uid=None, for_uids=None,
                    per_slice=None, rng=None, intercept=-1024, slope=1):
    """Write a tiny classic CT series with known geometry and values; return (files, stored)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    for_uid = generate_uid()
    rng = rng or np.random.default_rng(0)
    row = np.array(iop[:3], float)
    col = np.array(iop[3:], float)
    normal = np.cross(row, col)
    if positions is None:
        positions = [tuple(np.array([-10.0, -20.0, 30.0]) + k * spacing_mm * normal) for k in range(n)]
    files, stored = [], []
    for k, pos in enumerate(positions):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.Manufacturer = "TEST"
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = "1.2.3"
        ds.FrameOfReferenceUID = for_uids[k] if for_uids else for_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.PixelSpacing = [str(v) for v in pixel_spacing]
        ds.SliceThickness = "9.9"  # deliberately wrong: never used for spacing
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = str(intercept)
        ds.RescaleSlope = str(slope)
        if per_slice:
            per_slice(k, ds)
        values = rng.integers(0, 3000, size=(int(ds.Rows), int(ds.Columns)), dtype=np.uint16)
        ds.PixelData = values.tobytes()
        path = folder / f"slice{(k * 7919) % 1000:03d}"  # scrambled names, no extension
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        stored.append(values)
    return files, stored


@pytest.fixture
def ct_writer():  # type: ignore[no-untyped-def]
    """The `write_ct_slices` helper."""
    return write_ct_slices
