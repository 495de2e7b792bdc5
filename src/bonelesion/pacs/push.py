"""What goes back to the PACS, and sending it: a study's DICOM SEG and TID 1500 SR.

`find_push_objects` is the one place that knows where a run writes them
(``OUT/studies/<patient>/<study>/dicom/…``, see `bonelesion.batch.runner` and
`bonelesion.report.outputs`); each file found is checked by its header (modality SEG or SR,
the study's UID), so a change of layout below ``dicom/`` needs no change here.

`push_files` sends files through a `PacsClient` and records every SOP Instance UID in the
state file *before* sending it, then marks it stored: our own objects never look like new
instances of a study (`bonelesion.pacs.state`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import pydicom

from bonelesion.batch.names import safe_component
from bonelesion.pacs.client import PacsClient, StoredInstance
from bonelesion.pacs.state import PacsState

__all__ = ["find_push_objects", "push_files", "study_of", "PUSHED_MODALITIES"]

logger = logging.getLogger(__name__)

#: Modalities of the objects a run sends back.
PUSHED_MODALITIES = frozenset({"SEG", "SR"})


def _header(path: Path) -> pydicom.Dataset | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
                "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality"])
    except Exception as exc:  # noqa: BLE001 - an unreadable output is reported, not pushed
        logger.warning("output %s cannot be read (%s); not pushed", path.name, exc)
        return None


def study_of(path: Path) -> str:
    """StudyInstanceUID of an output file ("" when unreadable)."""
    ds = _header(path)
    return "" if ds is None else str(ds.get("StudyInstanceUID", ""))


def find_push_objects(out_dir: str | Path, study_instance_uid: str | None = None
                      ) -> tuple[Path, ...]:
    """Find the DICOM SEG and SR files of one study (or of all) of the run in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        A run's output folder (``watch --out``, ``run --out``).
    study_instance_uid : str, optional
        Only this study's objects.

    Returns
    -------
    tuple of Path
        Sorted by path; empty when the run wrote none.
    """
    studies = Path(out_dir) / "studies"
    folder = "*" if study_instance_uid is None else safe_component(
        study_instance_uid, fallback="study")
    found = []
    for path in sorted(studies.glob(f"*/{folder}/dicom/**/*.dcm")):
        ds = _header(path)
        if ds is None or str(ds.get("Modality", "")) not in PUSHED_MODALITIES:
            continue
        if study_instance_uid is not None and str(ds.get("StudyInstanceUID", "")) != (
                study_instance_uid):
            continue
        found.append(path)
    return tuple(found)


def push_files(client: PacsClient, state: PacsState, paths: Sequence[Path]
               ) -> tuple[list[StoredInstance], int]:
    """Send ``paths`` unless the destination already acknowledged them.

    Returns
    -------
    stored : list of StoredInstance
        What the PACS acknowledged now.
    skipped : int
        Files it had acknowledged before (not sent again).

    Raises
    ------
    PushError, PacsUnavailableError
        From the client; what was acknowledged before the failure stays recorded.
    """
    destination = client.display
    done = state.stored_at(destination)
    items: list[tuple[str, str, str, str]] = []
    todo: list[Path] = []
    skipped = 0
    for path in paths:
        ds = _header(path)
        if ds is None:
            continue
        sop = str(ds.SOPInstanceUID)
        if sop in done:
            skipped += 1
            continue
        items.append((sop, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                      str(ds.get("Modality", ""))))
        todo.append(path)
    if not todo:
        return [], skipped
    state.record_pending(items, destination=destination)
    stored = client.store(todo)
    state.record_stored([s.sop_instance_uid for s in stored], destination=destination)
    return stored, skipped
