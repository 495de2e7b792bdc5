"""Benchmark: load a 512×512×300 CT series with bonelesion, SimpleITK and a plain pydicom loop.

Each loader runs in a fresh subprocess (so import costs, caches and peak memory do not leak
between them); every loader is run ``--repeats`` times and the best wall time is reported,
with the peak resident-memory increase over the post-import baseline (ru_maxrss − VmRSS).
``bonelesion`` is the default reader (fast header reader, pixels read straight from the
file); ``bonelesion_generic`` is the same reader with ``fast_path=False`` (pydicom
``dcmread`` + ``pixel_array``). The 1-minute load average is printed before and after,
since the figures mean little on a busy machine. The checksums of all loaders must agree.

MR and enhanced cases (real scanner files of the shared test data, when present; skip
with ``--no-mr``): one volume each, loaded by bonelesion (fast and generic) and SimpleITK
in turns in one process per case (after a warm-up run each) — a classic 16-bit Philips MR echo (35 files), the
Siemens XA30 enhanced trace-weighted DWI (one 39-frame file) and ADC map, the Philips
enhanced DTI (one 32-frame file, its first stack for bonelesion; SimpleITK reads the
whole file, so its time is an upper bound of the work). Target: bonelesion ≤ 0.6×
SimpleITK.

Usage::

    python bench/bench_load.py [--slices 300] [--repeats 3] [--keep DIR] [--data DIR] [--no-mr]

The series is written with ``bonelesion.phantom.write_ct_series`` when available, else with
a small pydicom writer below (uncompressed, 16-bit, RescaleIntercept −1024).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    image = reader.Execute()  # one enhanced file: all its frames, as one 3-D image
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


def _mr_cases(data: Path, scratch: Path) -> list[tuple[str, Path]]:
    """(label, folder holding one volume) of each MR case found in the shared data."""
    import pydicom

    cases: list[tuple[str, Path]] = []
    dixon = data / "dixon_philips15T_chaos_set1" / "dicom" / "801_T1DUAL"
    if dixon.is_dir():  # both echoes share the series: copy echo 1 apart
        echo1 = scratch / "dixon_echo1"
        echo1.mkdir(exist_ok=True)
        for path in sorted(dixon.iterdir()):
            if int(pydicom.dcmread(path, stop_before_pixels=True).EchoNumbers) == 1:
                shutil.copy(path, echo1 / path.name)
        cases.append(("mr_classic_16bit_35_files", echo1))
    xa30 = data / "dwi_siemens_xa30_enhanced_pa" / "dicom"
    for series, label in (("12_DWI_dir80_PA", "mr_enhanced_xa30_tracew"),
                          ("11_DWI_dir80_PA", "mr_enhanced_xa30_adc")):
        if (xa30 / series).is_dir():
            cases.append((label, xa30 / series))
    philips = data / "multivendor_cases_dicom2nifti" / "dicom" / "philips_enhanced" / "dti" / "001"
    if philips.is_dir():
        cases.append(("mr_enhanced_philips_dti", philips))
    return cases


#: One process per MR case: every loader warmed up once, then run in turns (medians).
MR_CHILD = """
import json, os, statistics, sys, time
sys.path.insert(0, {src!r})
import numpy as np
import SimpleITK as sitk
from bonelesion.dicom.series import load_series

def bonelesion(folder):
    return load_series(folder)[0].volume.array  # the file's first stack

def bonelesion_generic(folder):
    return load_series(folder, fast_path=False)[0].volume.array

def simpleitk(folder):
    files = os.listdir(folder)
    if len(files) == 1:  # one enhanced file: all its frames, as one 3-D image
        return sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, files[0])))
    reader = sitk.ImageSeriesReader()
    (uid,) = reader.GetGDCMSeriesIDs(folder)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder, uid))
    return sitk.GetArrayFromImage(reader.Execute())

loaders = dict(bonelesion=bonelesion, bonelesion_generic=bonelesion_generic,
               simpleitk=simpleitk)
folder = {folder!r}
times = {{name: [] for name in loaders}}
shapes = {{}}
for name, run in loaders.items():  # warm-up: lazy imports, caches
    arr = run(folder)
    shapes[name] = [list(arr.shape), str(arr.dtype)]
for _ in range({repeats}):
    for name, run in loaders.items():
        t0 = time.perf_counter()
        run(folder)
        times[name].append(time.perf_counter() - t0)
print(json.dumps({{name: [statistics.median(t), min(t), shapes[name]]
                  for name, t in times.items()}}))
"""


def _bench_mr(data: Path, repeats: int) -> None:
    """Time the MR cases (loaders in turns in one process); print the ratio to SimpleITK."""
    with tempfile.TemporaryDirectory(prefix="bonelesion_bench_mr_") as tmp:
        cases = _mr_cases(data, Path(tmp))
        if not cases:
            print(f"\nMR cases: shared data not found under {data}; skipped")
            return
        print(f"\nMR and enhanced cases (real scanner data, {data}): the three loaders in "
              "turns in one process per case, after one warm-up run each; load average "
              f"(1 min) {os.getloadavg()[0]:.2f}")
        ratios = []
        for label, folder in cases:
            code = MR_CHILD.format(src=str(ROOT / "src"), folder=str(folder),
                                   repeats=repeats)
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{label} failed:\n{proc.stderr}")
            results = json.loads(proc.stdout.strip().splitlines()[-1])
            ref = results["simpleitk"][0]
            ratios.append(results["bonelesion"][0] / ref)
            for loader, (median_s, min_s, (shape, dtype)) in results.items():
                print(f"  {label:28} {loader:18} median {median_s * 1e3:7.1f} ms (min "
                      f"{min_s * 1e3:6.1f}) {median_s / ref:5.2f}x SimpleITK  {shape} {dtype}")
        print(f"MR cases: bonelesion / SimpleITK (medians) worst {max(ratios):.2f}x, best "
              f"{min(ratios):.2f}x (target <= 0.6x); load average (1 min) "
              f"{os.getloadavg()[0]:.2f}")


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
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "BONELESION_SHARED_DATA", ROOT.parent / "shared" / "data")),
        help="shared test data (MR cases)")
    parser.add_argument("--no-mr", action="store_true", help="skip the MR cases")
    parser.add_argument("--mr-only", action="store_true", help="run the MR cases only")
    parser.add_argument("--mr-repeats", type=int, default=15,
                        help="timed runs of each loader per MR case (a load takes ~20 ms: "
                             "medians of a few runs swing by 10%% on a shared machine)")
    args = parser.parse_args()
    if args.mr_only:
        _bench_mr(args.data, args.mr_repeats)
        return
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
    if not args.no_mr:
        _bench_mr(args.data, args.mr_repeats)


if __name__ == "__main__":
    main()
