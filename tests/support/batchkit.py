"""Engine-test kit: a small export of plain files and a real per-study function over them.

The batch engine (store, resume, isolation, executors) is independent of what a study
computes. These tests drive it with `checksum_study`, which reads every planned input file
and returns one "lesion" row per stack with the SHA-256 and byte count of its files: a real
computation whose truth (hashlib over the same bytes) does not come from the engine.
A file whose first bytes are ``FAIL`` makes the study fail at stage ``measure``; a file
starting with ``SLEEP <s>`` slows the study (to kill a run mid-way).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from bonelesion.errors import InputError
from bonelesion.pipeline.inventory import BadFile, Inventory, InventoryStudy
from bonelesion.pipeline.per_study import StudyFailure, StudyOutcome, StudyTask
from bonelesion.pipeline.plan import StackCandidate


def make_export(root: Path, n_studies: int, *, slices: int = 3, sleep_s: float = 0.0,
                failing: tuple[int, ...] = (), patient_ids: dict[int, str] | None = None) -> Inventory:
    """Write ``n_studies`` studies of one CT stack each under ``root``; return the inventory."""
    studies = []
    for i in range(n_studies):
        uid = f"1.2.826.0.1.3680043.10.543.{i + 1}"
        series = f"{uid}.1"
        folder = root / f"study{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k in range(slices):
            path = folder / f"slice{k:03d}.bin"
            if i in failing and k == 0:
                path.write_bytes(b"FAIL this study\n")
            elif k == 0 and sleep_s:
                path.write_bytes(f"SLEEP {sleep_s}\n".encode())
            else:
                path.write_bytes(hashlib.sha256(f"{uid}/{k}".encode()).digest() * (k + 1))
            files.append(str(path))
        cand = StackCandidate(
            study_instance_uid=uid, series_instance_uid=series, stack_key="1", modality="CT",
            role="ct", files=tuple(files),
            sop_instance_uids=tuple(f"{series}.{k}" for k in range(slices)),
            slice_thickness_mm=1.0, series_number=1, series_description="bone",
        )
        studies.append(InventoryStudy(study_instance_uid=uid,
                                   patient_id=(patient_ids or {}).get(i, f"PAT{i:03d}"),
                                   candidates=(cand,)))
    return Inventory(root=str(root), studies=tuple(studies),
                     bad_files=(BadFile(path=str(root / "junk.dcm"), reason="truncated: ends early",
                                        status="truncated"),))


def expected_rows(inventory: Inventory) -> dict[str, dict[str, object]]:
    """Truth for `checksum_study`, computed here with hashlib."""
    out = {}
    for s in inventory.studies:
        for c in s.candidates:
            h = hashlib.sha256()
            n = 0
            for f in c.files:
                data = Path(f).read_bytes()
                h.update(data)
                n += len(data)
            out[s.study_instance_uid] = {"sha256": h.hexdigest(), "bytes": n}
    return out


def checksum_study(task: StudyTask) -> StudyOutcome:
    """Per-study function of the engine tests (see module docstring)."""
    rows = []
    for choice in task.plan.choices:
        for cand in choice.chosen:
            h = hashlib.sha256()
            n = 0
            for f in cand.files:
                data = Path(f).read_bytes()
                if data.startswith(b"FAIL"):
                    return StudyOutcome(
                        study_instance_uid=task.study_instance_uid, status="failed",
                        failure=StudyFailure(stage="measure",
                                             series_instance_uid=cand.series_instance_uid,
                                             error_type="InputError",
                                             message=f"{Path(f).name}: marked to fail"))
                if data.startswith(b"SLEEP"):
                    time.sleep(float(data.split()[1]))
                h.update(data)
                n += len(data)
            rows.append({"lesion_id": f"{choice.role}-1", "sha256": h.hexdigest(), "bytes": n,
                         "series_instance_uid": cand.series_instance_uid})
    out = Path(task.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checksum.txt").write_text("\n".join(r["sha256"] for r in rows))
    return StudyOutcome(study_instance_uid=task.study_instance_uid, status="ok",
                        lesion_rows=tuple(rows), files=("checksum.txt",),
                        record={"worker_pid": os.getpid()})


def raising_study(task: StudyTask) -> StudyOutcome:
    """A per-study function that raises for the second study (executor isolation)."""
    if task.study_instance_uid.endswith(".2"):
        raise InputError(f"Study {task.study_instance_uid}: raised on purpose")
    return checksum_study(task)


def dying_study(task: StudyTask) -> StudyOutcome:
    """A per-study function whose worker process dies (as on a segfault) for the second study.

    It dies after a second, when the other (millisecond) studies have finished, so only it
    is caught in the pool breakdowns and failed as their likely cause.
    """
    if task.study_instance_uid.endswith(".2"):
        time.sleep(1.0)
        os._exit(70)
    return checksum_study(task)
