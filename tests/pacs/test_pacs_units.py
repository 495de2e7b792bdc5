"""The PACS loop's parts that need no server: SOURCE parsing and credentials, retries, the
inbox's all-or-nothing commit, the state file, settling, and finding what to push."""

from __future__ import annotations

import doctest
import importlib
import json
import logging
import os
import sqlite3
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bonelesion.batch.names import safe_component
from bonelesion.errors import ConfigError, InputError
from bonelesion.pacs import find_push_objects
from bonelesion.pacs.client import TransientError, call_with_retries
from bonelesion.pacs.dicomweb import _session
from bonelesion.pacs.errors import PacsError, PacsUnavailableError, RetrievalError
from bonelesion.pacs.inbox import Inbox, instance_file_name
from bonelesion.pacs.sources import (
    AuthKind,
    DicomWebPeer,
    DimsePeer,
    NetworkPolicy,
    parse_source,
)
from bonelesion.pacs.state import PacsState, Phase, signature
from bonelesion.pacs.watch import SettleTracker

SECRET = "s3cr3t-value-that-must-not-leak"


@pytest.mark.parametrize("name", ["sources", "state", "watch"])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"bonelesion.pacs.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ---- SOURCE and credentials ----


def test_dicomweb_source_with_basic_credentials_from_the_environment() -> None:
    peer = parse_source("HTTP://pacs.example:8042/dicom-web/", environ={
        "BONELESION_DICOMWEB_USER": "alice", "BONELESION_DICOMWEB_PASSWORD": SECRET})
    assert isinstance(peer, DicomWebPeer)
    assert peer.url == "http://pacs.example:8042/dicom-web" and peer.display == peer.url
    assert peer.credentials is not None and peer.credentials.kind is AuthKind.BASIC
    assert SECRET not in repr(peer) and SECRET not in str(peer.credentials)
    r = requests.Request("GET", peer.url)
    prepared = _session(peer.credentials).prepare_request(r)
    assert prepared.headers["Authorization"].startswith("Basic ")


def test_bearer_token_goes_into_each_request_not_the_session_headers() -> None:
    peer = parse_source("https://pacs.example/dicom-web",
                        environ={"BONELESION_DICOMWEB_TOKEN": SECRET})
    assert isinstance(peer, DicomWebPeer) and peer.credentials is not None
    session = _session(peer.credentials)
    assert "Authorization" not in session.headers  # dicomweb-client logs request headers
    prepared = session.prepare_request(requests.Request("GET", peer.url))
    assert prepared.headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(session.auth)


def test_credentials_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cred.json"
    path.write_text(json.dumps({"user": "bob", "password": SECRET}))
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="bonelesion.pacs"):
        peer = parse_source("http://h/dicom-web", credentials_file=path, environ={})
    assert isinstance(peer, DicomWebPeer) and peer.credentials is not None
    assert peer.credentials.user == "bob" and peer.credentials.secret == SECRET
    assert "can be read by other users" in caplog.text and SECRET not in caplog.text
    os.chmod(path, 0o600)
    caplog.clear()
    parse_source("http://h/dicom-web", environ={"BONELESION_DICOMWEB_CREDENTIALS": str(path)})
    assert "can be read by other users" not in caplog.text


@pytest.mark.parametrize("content, match", [
    ("{not json " + SECRET, "not JSON"),
    (json.dumps({"user": "bob"}), "needs a non-empty 'token' alone"),
    (json.dumps({"token": SECRET, "password": SECRET}), "needs a non-empty 'token' alone"),
    (json.dumps({"pass": SECRET}), "expected an object"),
])
def test_bad_credentials_files_are_refused_without_echoing_the_secret(
        tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "cred.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        parse_source("http://h/dicom-web", credentials_file=path, environ={})
    assert SECRET not in str(info.value)


def test_ambiguous_or_half_credentials_in_the_environment_are_refused() -> None:
    with pytest.raises(ConfigError, match="both"):
        parse_source("http://h/dw", environ={"BONELESION_DICOMWEB_TOKEN": "t",
                                             "BONELESION_DICOMWEB_USER": "u"})
    with pytest.raises(ConfigError, match="go together"):
        parse_source("http://h/dw", environ={"BONELESION_DICOMWEB_USER": "u"})


@pytest.mark.parametrize("source, match", [
    (f"http://alice:{SECRET}@pacs/dicom-web", "user name or password in the URL"),
    (f"http://pacs/dicom-web?access_token={SECRET}", "no query or fragment"),
    ("ftp://pacs/x", "not a DICOMweb URL nor a DIMSE peer"),
    ("dimse://ORTHANC@pacs", "not a DICOMweb URL nor a DIMSE peer"),
    ("dimse://A_TITLE_LONGER_THAN_16@pacs:104", "not a DICOM AE title"),
    ("dimse://BAD\\AET@pacs:104", "not a DICOM AE title"),
    ("dimse://ORTHANC@pacs:70000", "not a TCP port"),
])
def test_bad_sources_are_refused(source: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_source(source, environ={})
    assert SECRET not in str(info.value)


def test_dimse_source_and_listener_address() -> None:
    local = parse_source("dimse://ORTHANC@127.0.0.1:4242", ae_title="ME", port=11112)
    assert isinstance(local, DimsePeer)
    assert (local.ae_title, local.host, local.port, local.calling_ae_title,
            local.listen_port, local.listen_address) == ("ORTHANC", "127.0.0.1", 4242, "ME",
                                                         11112, "127.0.0.1")
    remote = parse_source("dimse://PACS@10.1.2.3:104")
    assert isinstance(remote, DimsePeer)
    assert remote.listen_address == "" and remote.listen_port is None
    assert remote.display == "dimse://PACS@10.1.2.3:104"
    with pytest.raises(ConfigError, match="--ae-title"):
        parse_source("dimse://PACS@h:104", ae_title="")


def test_network_policy_is_validated() -> None:
    with pytest.raises(ConfigError, match="time-outs"):
        NetworkPolicy(timeout_s=0)
    with pytest.raises(ConfigError, match="attempts"):
        NetworkPolicy(attempts=0)


# ---- bounded retries ----


def test_retries_are_bounded_and_end_in_a_clear_error() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def down() -> None:
        calls.append(1)
        raise TransientError("connection refused")

    policy = NetworkPolicy(attempts=3, backoff_s=0.5)
    with pytest.raises(PacsUnavailableError, match=r"list studies: no answer from the PACS "
                       r"http://h after 3 tries \(last: connection refused\)"):
        call_with_retries(down, what="list studies", peer="http://h", policy=policy,
                          sleep=waits.append)
    assert len(calls) == 3 and waits == [0.5, 1.0]


def test_a_refusal_is_not_retried() -> None:
    calls: list[int] = []

    def refuse() -> None:
        calls.append(1)
        raise PacsError("refused")

    with pytest.raises(PacsError, match="refused"):
        call_with_retries(refuse, what="x", peer="p", policy=NetworkPolicy(), sleep=lambda s: None)
    assert len(calls) == 1


def test_a_passing_hiccup_is_retried() -> None:
    answers = iter([TransientError("HTTP 503"), "ok"])

    def flaky() -> str:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert call_with_retries(flaky, what="x", peer="p", policy=NetworkPolicy(),
                             sleep=lambda s: None) == "ok"


# ---- the inbox ----


def _instance(study_uid: str, sop_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    return ds


def test_a_study_appears_in_the_inbox_only_when_committed(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox", tmp_path / "staging")
    study = generate_uid()
    staging = inbox.staging(study)
    first = [_instance(study) for _ in range(3)]
    for ds in first:
        staging.add_dataset(ds)
    assert inbox.instances(study) == frozenset()  # partial: invisible
    assert not inbox.study_dir(study).exists()
    inbox.commit(staging)
    assert inbox.instances(study) == {str(d.SOPInstanceUID) for d in first}
    assert pydicom.dcmread(inbox.study_dir(study) / instance_file_name(
        str(first[0].SOPInstanceUID))).StudyInstanceUID == study

    again = inbox.staging(study, ignore={str(first[2].SOPInstanceUID)})
    again.link_from(inbox.study_dir(study), [str(first[0].SOPInstanceUID)])
    new = _instance(study)
    again.add_bytes(str(new.SOPInstanceUID), study, _encoded(new))
    again.add_dataset(first[2])  # ours: dropped
    assert again.dropped == 1
    assert inbox.instances(study) == {str(d.SOPInstanceUID) for d in first}  # old copy intact
    inbox.commit(again)
    assert inbox.instances(study) == {str(first[0].SOPInstanceUID), str(new.SOPInstanceUID)}
    assert not list(inbox.staging_root.glob("*"))


def _encoded(ds: Dataset) -> bytes:
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_staging_refuses_an_instance_of_another_study_and_leftovers_are_cleaned(
        tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox", tmp_path / "staging")
    staging = inbox.staging("1.2.3")
    with pytest.raises(RetrievalError, match="another study"):
        staging.add_dataset(_instance("1.2.4"))
    inbox.staging("1.2.5")  # a killed process leaves these
    assert inbox.clean_staging() == 2 and not list(inbox.staging_root.iterdir())


def test_odd_sop_uids_still_get_a_safe_file_name() -> None:
    assert instance_file_name("1.2.840.1") == "1.2.840.1.dcm"
    odd = instance_file_name("../../etc/passwd")
    assert "/" not in odd and odd.endswith(".dcm") and not odd.startswith(".")


# ---- the state file ----


def test_state_records_ours_before_sending_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "pacs.sqlite"
    with PacsState(path) as state:
        state.set_retrieved("1.2", source="http://h", signature=signature(["a", "b"]),
                            instances=2, remote_instances=2)
        state.record_pending([("9.1", "1.2", "9", "SEG"), ("9.2", "1.2", "9", "SR")],
                             destination="http://h")
        assert state.ours("1.2") == {"9.1", "9.2"} and state.stored_at("http://h") == set()
        state.record_stored(["9.1"], destination="http://h")
        state.set_measured("1.2", status="ok")
    with PacsState(path) as state:
        s = state.study("1.2")
        assert s is not None and s.phase is Phase.MEASURED and s.status == "ok"
        assert state.stored_at("http://h") == {"9.1"} and state.ours() == {"9.1", "9.2"}
        assert [p.series_instance_uid for p in state.pushed_series("1.2")] == ["9"]


def test_state_of_another_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pacs.sqlite"
    PacsState(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="schema version 99, expected 1"):
        PacsState(path)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="cannot be opened as SQLite"):
        PacsState(tmp_path / "junk.sqlite")


def test_settling_restarts_when_the_count_changes() -> None:
    now = [0.0]
    t = SettleTracker(30, clock=lambda: now[0])
    assert not t.settled("s", 5)
    now[0] = 20.0
    assert not t.settled("s", 6)  # grew at t=20
    now[0] = 49.0
    assert not t.settled("s", 6)
    now[0] = 50.0
    assert t.settled("s", 6)
    assert SettleTracker(0).settled("x", 1)


# ---- what a run sends back ----


def test_find_push_objects_takes_seg_and_sr_of_the_study_only(tmp_path: Path) -> None:
    study, other = generate_uid(), generate_uid()
    wanted = []
    for uid, modality in ((study, "SEG"), (study, "SR"), (study, "OT"), (other, "SEG")):
        folder = tmp_path / "studies" / "PAT" / safe_component(uid, fallback="study") / "dicom" / "x"
        folder.mkdir(parents=True, exist_ok=True)
        ds = _instance(uid)
        ds.Modality = modality
        path = folder / f"{modality}_{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        if uid == study and modality in ("SEG", "SR"):
            wanted.append(path)
    assert list(find_push_objects(tmp_path, study)) == sorted(wanted)
    assert len(find_push_objects(tmp_path)) == 3
    assert find_push_objects(tmp_path / "nothing-here") == ()
