"""Benchmark: load a 512×512×300 CT series with bonelesion, SimpleITK and a plain pydicom loop.

Each loader runs in a fresh subprocess (so import costs, caches and peak memory do not leak
between them); every loader is run ``--repeats`` times and the best wall time is reported,
with the peak resident-memory increase over the post-import baseline (ru_maxrss − VmRSS).
``bonelesion`` is the default reader (fast header reader, pixels read straight from the
file); ``bonelesion_generic`` is the same reader with ``fast_path=False`` (pydicom
``dcmread`` + ``pixel_array``). The 1-minute load average is printed before and after,
since the figures mean little on a busy machine. The checksums of all loaders must agree.

Usage::

    python bench/bench_load.py [--slices 300] [--repeats 3] [--keep DIR]

The series is written with ``bonelesion.phantom.write_ct_series`` when available, else with
a small pydicom writer below (uncompressed, 16-bit, RescaleIntercept −1024).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

LOADERS = {
    "bonelesion": """
from bonelesion.dicom.series import load_volume
def run(folder):
    return load_volume(folder).array
""",
    "bonelesion_generic": """
from bonelesion.dicom.series import load_series
def run(folder):
    (stack,) = load_series(folder, fast_path=False)  # dcmread + pixel_array throughout
    return stack.volume.array
""",
    "simpleitk": """
import SimpleITK as sitk
def run(folder):
    reader = sitk.ImageSeriesReader()
    (uid,) = reader.GetGDCMSeriesIDs(folder)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder, uid))
    global image  # keep the image alive: the array below is a view of its buffer
    image = reader.Execute()
    return sitk.GetArrayViewFromImage(image)
""",
    "pydicom_loop": """
import os, numpy as np, pydicom
from pydicom.pixels import apply_modality_lut
def run(folder):
    dss = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    iop = np.array(dss[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    return np.stack([apply_modality_lut(d.pixel_array, d) for d in dss]).astype(np.float32)
""",
}

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
{loader}
baseline = rss_kib()
t0 = time.perf_counter()
arr = run({folder!r})
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"wall_s": wall, "peak_increase_mib": (peak - baseline) / 1024,
                   "shape": list(arr.shape), "dtype": str(arr.dtype),
                   "checksum": float(abs(arr.astype("float64")).sum())}}))
"""


def _write_series(folder: Path, n_slices: int) -> None:
    try:
        from bonelesion.phantom import write_ct_series  # type: ignore[attr-defined]

        write_ct_series(folder, shape=(n_slices, 512, 512), vendor="siemens", seed=0)
        print(f"series written by bonelesion.phantom.write_ct_series ({n_slices} slices)")
        return
    except (ImportError, AttributeError, NotImplementedError):
        pass
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    series_uid, for_uid, study_uid = generate_uid(), generate_uid(), generate_uid()
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 256) ** 2 + (xx - 256) ** 2 < 200**2)
    for k in range(n_slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.Manufacturer = "CT", "BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ["-250", "-250", f"{-300 + 1.0 * k:.3f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["0.9765625", "0.9765625"]
        ds.SliceThickness = "1"
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        img = np.where(body, 1064, 24) + rng.normal(0, 20, (512, 512))
        ds.PixelData = np.clip(img, 0, 4095).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{(k * 7919) % 100000:05d}.dcm", enforce_file_format=True)
    print(f"series written by the bench's pydicom writer ({n_slices} slices)")


def _run(loader: str, folder: Path) -> dict[str, float]:
    code = CHILD.format(src=str(ROOT / "src"), loader=LOADERS[loader], folder=str(folder))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{loader} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """Write (or reuse) the series, run each loader in a fresh process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write/reuse the series here")
    args = parser.parse_args()
    tmp = None
    if args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bonelesion_bench_")
        folder = Path(tmp.name)
    if not any(folder.iterdir()):
        t0 = time.perf_counter()
        _write_series(folder, args.slices)
        print(f"  ({time.perf_counter() - t0:.1f} s)")
    float32_mib = args.slices * 512 * 512 * 4 / 1024**2
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, float]] = {}
    for loader in LOADERS:
        runs = [_run(loader, folder) for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["wall_s"])
        best["peak_increase_mib"] = max(r["peak_increase_mib"] for r in runs)
        results[loader] = best
    ref = results["simpleitk"]["wall_s"]
    checksums = {round(r["checksum"]) for r in results.values()}
    if len(checksums) != 1:
        print(f"WARNING: loaders disagree (checksums {sorted(checksums)})")
    print(f"\n{'loader':18} {'wall s':>8} {'× SimpleITK':>12} {'peak +MiB':>10} "
          f"{'× float32 vol':>14}  shape / dtype")
    for loader, r in results.items():
        print(f"{loader:18} {r['wall_s']:8.3f} {r['wall_s'] / ref:12.2f} "
              f"{r['peak_increase_mib']:10.0f} {r['peak_increase_mib'] / float32_mib:14.2f}  "
              f"{r['shape']} {r['dtype']}")
    print(f"\nload average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
          f"({os.cpu_count()} CPUs)")
    print(f"float32 volume size: {float32_mib:.0f} MiB; targets (issue): wall ≤ 0.6× SimpleITK, "
          "peak ≤ 1.5× float32 volume")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
