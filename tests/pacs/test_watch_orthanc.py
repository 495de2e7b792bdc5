"""The PACS loop against a real Orthanc: DICOMweb and DIMSE, idempotence, SEG/SR sent back.

Truth comes from outside the code under test: the phantom's truth.json (lesions and their
attenuation), the phantom files themselves (SOP Instance UIDs, pixel data), and Orthanc's
own index (which instances and series it holds after a push).

The module's passes run in order over one Orthanc (module-scoped fixtures):
DIMSE ``watch --once`` (C-MOVE) twice into one folder, then DICOMweb ``watch --once --push``
twice into another; then a study gains an instance and is done again; then ``pull`` with a
refused C-MOVE (C-GET fallback) and ``push`` over C-STORE.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from support.orthanc_server import PASSWORD, USER, OrthancServer, free_port, modality

from bonelesion.cli.main import main
from bonelesion.pacs.inbox import Inbox
from bonelesion.pacs.state import PacsState, Phase

pytestmark = pytest.mark.slow

#: Phantom CT noise is 10 HU SD over ≥ 100 core voxels: SE ≤ 1 HU; 3 HU = 3 SE.
ATOL_CT_MEAN_HU = 3.0
#: SR numeric values are rounded to 6 decimals when written.
ATOL_SR_VALUE = 1e-6
WATCH_AET, NOMOVE_AET, NORETRIEVE_AET = "BLWATCH", "BLNOMOVE", "BLNORETR"


@dataclass
class Run:
    """One CLI invocation."""

    code: int
    out: str
    err: str
    log: str


def run_cli(args: list[str], log: Path) -> Run:
    """Run ``bonelesion -vv --log-file LOG ARGS`` in process; keep its stdout, stderr and log."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-vv", "--log-file", str(log), *args])
    return Run(code, out.getvalue(), err.getvalue(), log.read_text())


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, phantoms) -> Iterator[OrthancServer]:  # type: ignore[no-untyped-def]
    scp_port = free_port()
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"), modalities={
        "watch": modality(WATCH_AET, scp_port),
        "nomove": modality(NOMOVE_AET, free_port(), AllowMove=False),
        "noretrieve": modality(NORETRIEVE_AET, free_port(), AllowMove=False, AllowGet=False),
    })
    server.scp_port = scp_port  # type: ignore[attr-defined]
    server.start()
    try:
        for study in phantoms.studies:
            server.upload(study.dicom_files())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def credentials() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BONELESION_DICOMWEB_USER", USER)
        mp.setenv("BONELESION_DICOMWEB_PASSWORD", PASSWORD)
        yield


@pytest.fixture(scope="module")
def dimse_runs(orthanc: OrthancServer, phantoms, tmp_path_factory: pytest.TempPathFactory  # type: ignore[no-untyped-def]
               ) -> tuple[Path, Run, Run]:
    """Two DIMSE passes (C-MOVE to our listener) into one folder, no push."""
    out = tmp_path_factory.mktemp("dimse-out")
    args = ["watch", orthanc.dimse_source, "combined", "--out", str(out), "--rois",
            str(phantoms.rois), "--once", "--ae-title", WATCH_AET, "--port",
            str(orthanc.scp_port)]  # type: ignore[attr-defined]
    first = run_cli(args, out.parent / "dimse-1.log")
    second = run_cli(args, out.parent / "dimse-2.log")
    return out, first, second


@pytest.fixture(scope="module")
def web_runs(dimse_runs, orthanc: OrthancServer, phantoms, credentials,  # type: ignore[no-untyped-def]
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run, int, int]:
    """Two DICOMweb passes with --push into another folder (after the DIMSE passes)."""
    out = tmp_path_factory.mktemp("web-out")
    args = ["watch", orthanc.dicomweb_url, "combined", "--out", str(out), "--rois",
            str(phantoms.rois), "--once", "--push"]
    first = run_cli(args, out.parent / "web-1.log")
    after_first = orthanc.count_instances()
    second = run_cli(args, out.parent / "web-2.log")
    return out, first, second, after_first, orthanc.count_instances()


def lesion_rows(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "lesions.csv", newline="") as fh:
        return {(r["study_instance_uid"], r["lesion_id"]): r for r in csv.DictReader(fh)}


def test_dimse_pass_measures_every_phantom_lesion_against_truth(dimse_runs, phantoms) -> None:  # type: ignore[no-untyped-def]
    out, first, _ = dimse_runs
    assert first.code == 0, first.log[-3000:]
    rows = lesion_rows(out)
    truth = {(s.uid, les.lesion_id): les for s in phantoms.studies for les in s.truth.lesions}
    assert set(rows) == set(truth)
    for key, row in rows.items():
        assert float(row["ct_attenuation_mean_hu"]) == pytest.approx(
            truth[key].attenuation_mean_hu, abs=ATOL_CT_MEAN_HU)


def test_retrieved_instances_are_the_phantom_files(dimse_runs, orthanc: OrthancServer,  # type: ignore[no-untyped-def]
                                                   phantoms) -> None:
    out, _, _ = dimse_runs
    inbox = Inbox(out / "inbox", out / ".pacs" / "staging")
    for study in phantoms.studies:
        originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
                     for p in study.dicom_files()}
        in_orthanc = {i["MainDicomTags"]["SOPInstanceUID"]
                      for i in orthanc.study_instances(study.uid)}
        assert inbox.instances(study.uid) == set(originals) == in_orthanc
        for sop in sorted(originals)[::40]:  # pixel data arrived bit for bit
            got = pydicom.dcmread(inbox.study_dir(study.uid) / f"{sop}.dcm")
            assert got.PixelData == pydicom.dcmread(originals[sop]).PixelData
    assert not list((out / ".pacs" / "staging").glob("*")), "staging left behind"


def test_second_dimse_pass_is_idle(dimse_runs) -> None:  # type: ignore[no-untyped-def]
    out, _, second = dimse_runs
    assert second.code == 0
    assert "2 studies listed, 0 retrieved (0 instances), 0 measured, 0 pushed (0 instances), " \
        "2 unchanged" in second.out
    assert "measured," not in second.log and "instances in" not in second.log


def test_dicomweb_and_dimse_give_identical_lesion_rows(dimse_runs, web_runs) -> None:  # type: ignore[no-untyped-def]
    web_out, first, _, _, _ = web_runs
    assert first.code == 0, first.log[-3000:]
    dimse = lesion_rows(dimse_runs[0])
    web = lesion_rows(web_out)
    assert set(web) == set(dimse) and len(web) == 12
    for key in web:
        assert web[key] == dimse[key], key


def test_seg_and_sr_in_orthanc_carry_the_lesions_csv_numbers(web_runs, orthanc: OrthancServer,  # type: ignore[no-untyped-def]
                                                             phantoms) -> None:
    web_out, _, _, _, _ = web_runs
    rows = lesion_rows(web_out)
    with PacsState(web_out / "pacs.sqlite") as state:
        recorded = state.ours()
    pushed_in_orthanc: set[str] = set()
    for study in phantoms.studies:
        series = orthanc.series_of(study.uid)
        by_modality: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        for s in series:
            by_modality.setdefault(s["MainDicomTags"]["Modality"], []).append(s)
        assert len(by_modality["SEG"]) == 1 and len(by_modality["SR"]) == 1
        seg_ds = _download(orthanc, by_modality["SEG"][0])
        (sr_id,) = by_modality["SR"][0]["Instances"]
        sr = hd.sr.srread(io.BytesIO(orthanc.instance_file(sr_id)))
        pushed_in_orthanc |= {str(seg_ds.SOPInstanceUID), str(sr.SOPInstanceUID)}
        seg = hd.seg.Segmentation.from_dataset(seg_ds)
        lesion_ids = sorted(les.lesion_id for les in study.truth.lesions)
        labels = sorted(seg.get_segment_description(n).segment_label
                        for n in seg.segment_numbers)
        assert labels == [f"lesion {i}" for i in lesion_ids]
        report = hd.sr.MeasurementReport.from_sequence([sr])
        groups = {g.tracking_identifier: g for g in report.get_volumetric_roi_measurement_groups()}
        assert sorted(groups) == [f"lesion {i}" for i in lesion_ids]
        for lesion_id in lesion_ids:
            g = groups[f"lesion {lesion_id}"]
            assert g.referenced_segment.referenced_sop_instance_uid == seg_ds.SOPInstanceUID
            values = {(x.name.meaning, x.derivation.meaning if x.derivation else None): x.value
                      for x in g.get_measurements()}
            row = rows[(study.uid, lesion_id)]
            assert values[("Attenuation Coefficient", "Mean")] == pytest.approx(
                float(row["ct_attenuation_mean_hu"]), abs=ATOL_SR_VALUE)
            assert values[("Attenuation Coefficient", "Maximum")] == pytest.approx(
                float(row["ct_attenuation_max_hu"]), abs=ATOL_SR_VALUE)
            assert values[("Apparent Diffusion Coefficient", "Mean")] == pytest.approx(
                float(row["adc_mean_mm2_per_s"]) * 1e6, abs=ATOL_SR_VALUE)
    assert pushed_in_orthanc == set(recorded)


def _download(orthanc: OrthancServer, series: dict) -> Dataset:  # type: ignore[type-arg]
    (instance_id,) = series["Instances"]
    return pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance_id)))


def _to_path(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_second_dicomweb_pass_retrieves_measures_and_pushes_nothing(web_runs) -> None:  # type: ignore[no-untyped-def]
    web_out, first, second, after_first, after_second = web_runs
    assert "2 retrieved (480 instances), 2 measured, 2 pushed (4 instances)" in first.out
    assert second.code == 0
    assert "0 retrieved (0 instances), 0 measured, 0 pushed (0 instances), 2 unchanged" in second.out
    assert after_second == after_first
    con = sqlite3.connect(web_out / "results.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM studies WHERE status='ok'").fetchone()[0] == 2
    finally:
        con.close()


def test_credentials_never_logged_and_required(web_runs, orthanc: OrthancServer, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch, phantoms) -> None:
    _, first, second, _, _ = web_runs
    patient = pydicom.dcmread(phantoms.studies[0].dicom_files()[0], stop_before_pixels=True)
    for run in (first, second):
        assert PASSWORD not in run.log + run.out + run.err
        # no patient identifiers either
        for ident in (str(patient.PatientID), str(patient.PatientName)):
            assert ident not in run.log and ident not in run.err
    monkeypatch.delenv("BONELESION_DICOMWEB_USER")
    monkeypatch.delenv("BONELESION_DICOMWEB_PASSWORD")
    run = run_cli(["watch", orthanc.dicomweb_url, "combined", "--out", str(tmp_path / "o"),
                   "--once"], tmp_path / "noauth.log")
    assert run.code == 1 and "HTTP 401" in run.log and "BONELESION_DICOMWEB_USER" in run.log


def _secondary_capture(study_file: Path) -> Dataset:
    """A small Secondary Capture image (a 'key image' a viewer might add) in a new series."""
    source = pydicom.dcmread(study_file, stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SeriesNumber, ds.InstanceNumber = 901, 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(64, dtype=np.uint8).tobytes()
    return ds


def test_study_that_gains_an_instance_is_done_again(web_runs, orthanc: OrthancServer, phantoms,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    web_out, _, _, _, _ = web_runs
    study, other = phantoms.studies
    old_series = {s["MainDicomTags"]["SeriesInstanceUID"] for s in orthanc.series_of(study.uid)
                  if s["MainDicomTags"]["Modality"] in ("SEG", "SR")}
    key = _to_path(_secondary_capture(study.dicom_files()[0]), tmp_path / "key.dcm")
    orthanc.upload([key])
    run = run_cli(["watch", orthanc.dicomweb_url, "combined", "--out", str(web_out), "--rois",
                   str(phantoms.rois), "--once", "--push"], tmp_path / "gain.log")
    assert run.code == 0, run.log[-3000:]
    assert "1 retrieved (241 instances), 1 measured, 1 pushed (2 instances), 1 unchanged" in run.out
    assert "(7 series already here)" in run.log  # only the new series travelled
    for uid in old_series:  # the earlier results are named in the log
        assert uid in run.log
    now = {s["MainDicomTags"]["SeriesInstanceUID"]: s["MainDicomTags"]["Modality"]
           for s in orthanc.series_of(study.uid)}
    assert sorted(m for m in now.values() if m in ("SEG", "SR")) == ["SEG", "SEG", "SR", "SR"]
    assert old_series < set(now)
    assert sorted(m for s in orthanc.series_of(other.uid)
                  for m in [s["MainDicomTags"]["Modality"]] if m in ("SEG", "SR")) == ["SEG", "SR"]
    with PacsState(web_out / "pacs.sqlite") as state:
        assert all(s.phase is Phase.PUSHED for s in state.studies())
        assert len(state.ours(study.uid)) == 4
    assert len(lesion_rows(web_out)) == 12


def test_refused_c_move_falls_back_to_c_get(orthanc: OrthancServer, phantoms, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           web_runs) -> None:
    study = phantoms.studies[1]
    dest = tmp_path / "pulled"
    run = run_cli(["pull", orthanc.dimse_source, str(dest), "--study", study.uid, "--ae-title",
                   NOMOVE_AET, "--port", str(free_port())], tmp_path / "pull.log")
    assert run.code == 0, run.log[-3000:]
    assert "refused C-MOVE" in run.log and "C-GET instead" in run.log
    in_orthanc = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.study_instances(study.uid)}
    assert Inbox(dest, tmp_path / "x").instances(study.uid) == in_orthanc
    again = run_cli(["pull", orthanc.dimse_source, str(dest), "--study", study.uid,
                     "--ae-title", NOMOVE_AET], tmp_path / "pull2.log")
    assert again.code == 0 and "0 retrieved" in again.out and "1 already complete" in again.out


def test_refused_c_move_and_c_get_are_reported(orthanc: OrthancServer, phantoms,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    study = phantoms.studies[0]
    dest = tmp_path / "pulled"
    run = run_cli(["pull", orthanc.dimse_source, str(dest), "--study", study.uid, "--ae-title",
                   NORETRIEVE_AET, "--port", str(free_port()), "--retries", "1"],
                  tmp_path / "pull.log")
    assert run.code == 4
    assert f"study {study.uid}" in run.log and "refused C-GET" in run.log
    assert "C-MOVE" in run.log and "Potential fix" in run.log
    assert not dest.exists() or not any(dest.iterdir())  # nothing partial in DEST
    assert not any((tmp_path / ".pulled.partial").glob("*"))


def test_push_over_c_store_sends_once(dimse_runs, orthanc: OrthancServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, _, _ = dimse_runs
    before = orthanc.count_instances()
    run = run_cli(["push", orthanc.dimse_source, str(out), "--ae-title", WATCH_AET],
                  tmp_path / "push.log")
    assert run.code == 0, run.log[-3000:]
    assert "4 SEG/SR objects: 4 sent (2 studies), 0 sent before" in run.out
    assert orthanc.count_instances() == before + 4
    with PacsState(out / "pacs.sqlite") as state:
        ours = state.ours()
    for sop in ours:
        r = orthanc.session.post(f"{orthanc.url}/tools/lookup", data=sop, timeout=10)
        assert [x["Type"] for x in r.json()] == ["Instance"]
    again = run_cli(["push", orthanc.dimse_source, str(out), "--ae-title", WATCH_AET],
                    tmp_path / "push2.log")
    assert again.code == 0 and "0 sent (0 studies), 4 sent before" in again.out
    assert orthanc.count_instances() == before + 4


def test_pull_over_dicomweb_with_a_credentials_file(orthanc: OrthancServer, phantoms,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BONELESION_DICOMWEB_USER", raising=False)
    monkeypatch.delenv("BONELESION_DICOMWEB_PASSWORD", raising=False)
    cred = tmp_path / "cred.json"
    cred.write_text(json.dumps({"user": USER, "password": PASSWORD}))
    cred.chmod(0o600)
    study = phantoms.studies[0]
    dest = tmp_path / "pulled"
    run = run_cli(["pull", orthanc.dicomweb_url, str(dest), "--study", study.uid,
                   "--credentials", str(cred)], tmp_path / "pull.log")
    assert run.code == 0, run.log[-3000:]
    in_orthanc = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.study_instances(study.uid)}
    assert Inbox(dest, tmp_path / "x").instances(study.uid) == in_orthanc
    assert PASSWORD not in run.log
