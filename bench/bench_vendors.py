"""Per-image cost of the vendor functions on real headers (plain script, not a test).

Usage: python bench/bench_vendors.py [shared-data-dir]
Reads every header once (timed separately), then times b-value, kind, direction, role and
vendor on each flat header. Enhanced files are flattened with a minimal local helper.
"""

from __future__ import annotations

import gzip
import sys
import time
import warnings
from pathlib import Path

import pydicom
from pydicom import Dataset

from bonelesion.dicom import vendors


def _flatten(ds: Dataset) -> list[Dataset]:
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [ds]
    shared = ds.SharedFunctionalGroupsSequence[0]
    frames = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        flat = Dataset()
        for elem in ds:
            if elem.keyword not in (
                "PerFrameFunctionalGroupsSequence",
                "SharedFunctionalGroupsSequence",
            ):
                flat.add(elem)
        for group in (shared, item):
            for seq in group:
                if seq.VR == "SQ" and len(seq.value) == 1:
                    for elem in seq.value[0]:
                        flat.add(elem)
        if "FrameType" in flat:
            flat.ImageType = flat.FrameType
        frames.append(flat)
    return frames


def main() -> None:
    """Time the vendor functions per data set."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    cases = {
        "siemens_xa30_enhanced_dwi": root / "dwi_siemens_xa30_enhanced_pa/dicom/10_DWI_dir80_PA",
        "ge_signa_dwi": root / "dwi_ge_signa_pioneer/dicom/04_Ax_DWI_TENSOR_R2MB2",
        "canon_dwi": root / "dwi_canon_galan_v60_classic/dicom/9000_DTI_PA-ortho",
        "philips_chaos_dixon": root / "dixon_philips15T_chaos_set1/dicom/801_T1DUAL",
    }
    warnings.simplefilter("ignore")
    for name, folder in cases.items():
        if not folder.exists():
            print(f"{name}: missing ({folder})")
            continue
        t0 = time.perf_counter()
        headers: list[Dataset] = []
        for path in sorted(folder.iterdir()):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as fh:
                headers.extend(_flatten(pydicom.dcmread(fh, stop_before_pixels=True)))
        t1 = time.perf_counter()
        for ds in headers:
            vendors.b_value_s_per_mm2(ds)
            vendors.diffusion_kind(ds)
            vendors.diffusion_direction_lps(ds)
            vendors.stack_role(ds)
            vendors.vendor_of(ds)
        t2 = time.perf_counter()
        per_image_ms = (t2 - t1) / len(headers) * 1000.0
        print(f"{name}: {len(headers)} headers, read {t1 - t0:.2f} s, {per_image_ms:.2f} ms/image")


if __name__ == "__main__":
    main()
