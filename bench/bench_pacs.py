"""One ``watch --once --push`` pass over two phantom studies, per transport, against Orthanc.

Usage::

    python bench/bench_pacs.py [--repeat N] [--workdir DIR]

Writes two digital-phantom studies (Siemens and GE style, 240 instances each), then for each
transport — DICOMweb (QIDO-RS/WADO-RS/STOW-RS), DIMSE with C-MOVE to our listener, DIMSE
with C-GET — starts a fresh Orthanc (the Debian packages, as the tests do), uploads the two
studies, and times:

* the first pass: list, retrieve 480 instances, measure both studies, push 2 SEG + 2 SR;
* the second pass: idle (retrieves, measures and pushes nothing).

The reference is ``bonelesion run`` over the same two studies already on local disk: the
first pass's extra time over it is what the PACS round trip costs. Timings are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # the Orthanc launcher the tests use

from support.orthanc_server import PASSWORD, USER, OrthancServer, free_port, modality  # noqa: E402

from bonelesion.batch import Progress, run_export  # noqa: E402
from bonelesion.pacs import NetworkPolicy, WatchOptions, parse_source, watch  # noqa: E402
from bonelesion.phantom import write_study  # noqa: E402

AET = "BLBENCH"


def write_studies(root: Path) -> tuple[list[Path], Path]:
    folders = []
    rois = ["lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm,study_instance_uid,treated"]
    for vendor, seed in (("siemens", 3101), ("ge", 3102)):
        folder = root / "studies" / vendor
        write_study(folder, vendor=vendor, seed=seed)
        rois += (folder / "rois.csv").read_text().splitlines()[1:]
        folders.append(folder)
    (root / "rois.csv").write_text("\n".join(rois) + "\n")
    return folders, root / "rois.csv"


def one_transport(name: str, folders: list[Path], rois: Path, work: Path) -> tuple[float, float]:
    scp_port = free_port()
    server = OrthancServer(work / f"orthanc-{name}", modalities={"bench": modality(AET, scp_port)})
    server.start()
    try:
        for folder in folders:
            server.upload(sorted(folder.rglob("*.dcm")))
        source = {"dicomweb": server.dicomweb_url}.get(name, server.dimse_source)
        peer = parse_source(source, ae_title=AET, port=scp_port if name == "dimse-move" else None,
                            environ={"BONELESION_DICOMWEB_USER": USER,
                                     "BONELESION_DICOMWEB_PASSWORD": PASSWORD})
        options = WatchOptions(pipeline="combined", out_dir=work / f"out-{name}", rois=rois,
                               push=True)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            summary = watch(peer, options, policy=NetworkPolicy(), once=True)
            times.append(time.perf_counter() - t0)
            assert summary.exit_code == 0, summary.problems
        assert server.count_instances() == 484, "2 SEG + 2 SR expected in Orthanc"
        return times[0], times[1]
    finally:
        server.stop()


def reference(folders: list[Path], rois: Path, work: Path) -> float:
    export = work / "export"
    export.mkdir()
    for folder in folders:
        shutil.copytree(folder, export / folder.name)
    t0 = time.perf_counter()
    summary = run_export("combined", export, work / "out-ref", rois=rois,
                         progress=Progress(0, stream=io.StringIO()))
    assert summary.studies_ok == 2
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per transport (median)")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp dir)")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    try:
        folders, rois = write_studies(base)
        refs, results = [], {}
        for i in range(args.repeat):
            work = base / f"run{i}"
            work.mkdir(parents=True)
            with contextlib.redirect_stderr(io.StringIO()):
                refs.append(reference(folders, rois, work))
                for name in ("dicomweb", "dimse-move", "dimse-get"):
                    results.setdefault(name, []).append(one_transport(name, folders, rois, work))
        ref = statistics.median(refs)
        print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat} runs; 2 studies, "
              "480 instances")
        print(f"{'reference: bonelesion run (local disk)':44s} {ref:6.2f} s")
        for name, runs in results.items():
            first = statistics.median(r[0] for r in runs)
            idle = statistics.median(r[1] for r in runs)
            print(f"{'watch --once --push, ' + name:44s} {first:6.2f} s = {first / ref:4.2f}× the "
                  f"reference; idle second pass {idle:5.2f} s")
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
