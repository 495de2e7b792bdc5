"""Benchmark of `bonelesion index`: files per second on small single-frame CT files.

Generates N (default 3,000) 64 × 64 single-frame CT Image Storage files with pydicom into
nested folders of a temporary directory (20 series × 150 slices, no file extensions for
half of them), then indexes them with 1 and 2 workers, ``--repeat`` times each (fresh
catalogue each time; the 1-minute load average is printed before every run, since other
processes share the CPUs), and re-indexes once more (every file unchanged, so skipped).

Reference, in the same run: a plain one-process loop over the same files of
``pydicom.dcmread(path, stop_before_pixels=True, specific_tags=REFERENCE_TAGS)`` that also
reads those values (what any indexer needs), storing nothing. The index does more per file
(value checks, stack keys, series roles, SQLite rows): the ratio per core is printed.

Run:  python bench/bench_index.py [--files 3000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bonelesion.dicom.index import index_export  # noqa: E402

#: What the reference loop reads from each header: the identity, series and geometry
#: attributes the catalogue records.
REFERENCE_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "Modality", "Manufacturer", "PatientID", "SeriesNumber",
    "InstanceNumber", "SeriesDescription", "ImageType", "ImageOrientationPatient",
    "ImagePositionPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns",
    "BitsAllocated", "RescaleSlope", "RescaleIntercept", "NumberOfFrames", "EchoTime",
    "EchoNumbers", "ConvolutionKernel", "SpecificCharacterSet",
)


def reference_loop(folder: Path) -> tuple[int, float, float]:
    """(files, wall s, CPU s) of a plain ``dcmread(specific_tags=…)`` loop over ``folder``."""
    import pydicom

    paths = [Path(root) / name for root, _, names in os.walk(folder) for name in names]
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(REFERENCE_TAGS))
        for keyword in REFERENCE_TAGS:
            ds.get(keyword)
    return len(paths), time.perf_counter() - t0, _cpu_s() - cpu0

SLICES_PER_SERIES = 150
MATRIX = 64


def _make_slice(study_uid: str, series_uid: str, for_uid: str, series_number: int,
                index: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.Modality = "CT"
    ds.Manufacturer = "BENCH"
    ds.PatientID = "BENCH-PATIENT"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = index + 1
    ds.SeriesDescription = "bench CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ConvolutionKernel = "STANDARD"
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-22.4, -22.4, float(index)]
    ds.Rows = ds.Columns = MATRIX
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = (np.full((MATRIX, MATRIX), 1024 + index, dtype=np.uint16)).tobytes()
    return ds


def generate(folder: Path, n_files: int) -> None:
    """Write ``n_files`` small CT files into nested study/series folders."""
    study_uid = generate_uid()
    for_uid = generate_uid()
    written = 0
    series_number = 0
    while written < n_files:
        series_number += 1
        series_uid = generate_uid()
        sub = folder / f"study1/series{series_number:03d}/part{series_number % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(min(SLICES_PER_SERIES, n_files - written)):
            name = f"IM{i:05d}" + (".dcm" if series_number % 2 else "")
            _make_slice(study_uid, series_uid, for_uid, series_number, i).save_as(
                sub / name, enforce_file_format=True)
            written += 1


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    """Generate the files, index them, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration (fresh catalogue each time)")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp) / "export"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        generate(folder, args.files)
        print(f"generated {args.files} files of {MATRIX}x{MATRIX} CT in "
              f"{time.perf_counter() - t0:.1f} s into {folder}")
        print(f"cpus available: {len(os.sched_getaffinity(0))}")
        ref_rates = []
        for run in range(args.repeat):
            load_1min = os.getloadavg()[0]
            n_ref, wall_s, cpu_s = reference_loop(folder)
            ref_rates.append(n_ref / cpu_s)
            print(f"reference dcmread(specific_tags) loop, 1 process, run {run + 1}: {n_ref} "
                  f"files in {wall_s:.2f} s = {n_ref / wall_s:.0f} files/s wall = "
                  f"{n_ref / cpu_s:.0f} files per CPU-second; load average (1 min) before "
                  f"{load_1min:.2f}")
        ref_per_cpu = statistics.median(ref_rates)
        print(f"reference: median {ref_per_cpu:.0f} files per CPU-second")
        db = Path(tmp) / "index.sqlite"
        for workers in (1, 2):
            per_cpu = []
            rates = []
            for run in range(args.repeat):
                db = Path(tmp) / f"index-{workers}-{run}.sqlite"
                load_1min = os.getloadavg()[0]
                cpu0 = _cpu_s()
                summary = index_export(folder, db, workers=workers)
                cpu_s = _cpu_s() - cpu0
                assert summary.status_counts == {"ok": args.files}, summary.status_counts
                rates.append(summary.files_read_per_s)
                per_cpu.append(summary.files_read / cpu_s)
                print(f"index, {workers} worker(s), run {run + 1}: {summary.files_read} files "
                      f"in {summary.duration_s:.2f} s = {summary.files_read_per_s:.0f} files/s "
                      f"wall; CPU {1e3 * cpu_s / summary.files_read:.3f} ms/file (all "
                      f"processes) = {summary.files_read / cpu_s:.0f} files per CPU-second; "
                      f"load average (1 min) before {load_1min:.2f}")
            print(f"index, {workers} worker(s): median {statistics.median(rates):.0f} files/s, "
                  f"best {max(rates):.0f} files/s over {args.repeat} runs; median "
                  f"{statistics.median(per_cpu):.0f} files per CPU-second = "
                  f"{statistics.median(per_cpu) / ref_per_cpu:.2f}x the reference loop per "
                  "core")
        summary = index_export(folder, db, workers=2)
        rate = summary.files_unchanged / summary.duration_s
        print(f"re-index (all unchanged, skipped): {summary.files_unchanged} files in "
              f"{summary.duration_s:.3f} s = {rate:.0f} files/s; load average (1 min) "
              f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
