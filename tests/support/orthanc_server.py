"""A real Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``) started by the tests.

`OrthancServer` writes a JSON configuration with free ports, temporary storage and the
DICOMweb plugin, starts ``Orthanc``, waits until its REST API answers, and stops it
(terminate, then kill) in `OrthancServer.stop`. `orthanc_or_skip` skips the calling test
with the reason when the binary or the plugin is missing (``make install`` installs them
when ``apt-get`` is usable).

Network exposure: the HTTP server refuses every client but loopback (``RemoteAccessAllowed``
false) and asks for a password. Orthanc 1.10 (Debian bookworm) has no option to bind its
DICOM port to one interface, so the DICOM side is closed by configuration instead: only the
AE titles in ``DicomModalities`` may query, retrieve or store (every ``DicomAlwaysAllow*``
false but C-ECHO), and only from 127.0.0.1 (``DicomCheckModalityHost``). The data are
synthetic phantoms.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

ORTHANC_AET = "ORTHANC"
USER, PASSWORD = "bonelesion-test", "pw-9f3c1e7a-not-a-real-secret"
_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
_START_TIMEOUT_S = 30.0


def orthanc_binary() -> str | None:
    """Path of the Orthanc server binary, or None."""
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).is_file()), None)


def dicomweb_plugin() -> Path | None:
    """Path of the DICOMweb plugin of the Debian package, or None."""
    for folder in _PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")):
            return path
    return None


def orthanc_or_skip() -> tuple[str, Path]:
    """The binary and plugin; skips the caller (with the reason) when either is missing."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None:
        pytest.skip("Orthanc not installed (Debian package orthanc; `make install` installs it "
                    "when apt-get is usable)")
    if plugin is None:
        pytest.skip("Orthanc DICOMweb plugin not installed (Debian package orthanc-dicomweb)")
    return binary, plugin


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def modality(aet: str, port: int, **allow: bool) -> dict[str, Any]:
    """A ``DicomModalities`` entry on 127.0.0.1 (``allow``: AllowMove=False …)."""
    return {"AET": aet, "Host": "127.0.0.1", "Port": port, **allow}


class OrthancServer:
    """One Orthanc process with its own storage, ports and configuration.

    Parameters
    ----------
    root : Path
        Folder for the configuration, the database and the log.
    modalities : mapping
        ``DicomModalities`` (name → entry, see `modality`).
    """

    def __init__(self, root: Path, *, modalities: Mapping[str, Mapping[str, Any]]) -> None:
        self.binary, self.plugin = orthanc_or_skip()
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = dict(modalities)
        self.log_path = root / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.session.auth = (USER, PASSWORD)

    @property
    def url(self) -> str:
        """REST API base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb base URL."""
        return f"{self.url}/dicom-web"

    @property
    def dimse_source(self) -> str:
        """``dimse://ORTHANC@127.0.0.1:<port>``."""
        return f"dimse://{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"

    def config(self) -> dict[str, Any]:
        """The configuration written for this server."""
        db = str(self.root / "db")
        return {
            "Name": "bonelesion-test",
            "StorageDirectory": db,
            "IndexDirectory": db,
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "StableAge": 1,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": self.modalities,
            "DicomScuTimeout": 5,
            "DicomScpTimeout": 10,
            "HttpTimeout": 10,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "DicomThreadsCount": 2,
            "OverwriteInstances": False,
            "DeidentifyLogs": True,
        }

    def start(self) -> OrthancServer:
        """Start Orthanc and wait until its REST API answers."""
        config_path = self.root / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        try:
            # DCMTK (Orthanc's DICOM stack) keeps Nagle's algorithm on unless told: each
            # C-STORE of a C-MOVE/C-GET would then wait ~40 ms for a delayed ACK.
            env = {**os.environ, "TCP_NODELAY": "1"}
            self.process = subprocess.Popen([self.binary, str(config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env)
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode} at start:\n"
                                   + self.log_tail())
            try:
                if self.session.get(f"{self.url}/system", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not answer within 30 s:\n" + self.log_tail())

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL after 10 s); wait until it is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Kill Orthanc at once (SIGKILL), as a crash or a power cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of Orthanc's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ---- the REST API: Orthanc's own index is the truth the tests compare with ----

    def upload(self, files: Iterable[Path]) -> int:
        """POST each DICOM file to /instances; return how many Orthanc stored."""
        n = 0
        for path in files:
            r = self.session.post(f"{self.url}/instances", data=path.read_bytes(), timeout=30)
            r.raise_for_status()
            n += 1
        return n

    def get(self, path: str) -> Any:
        """GET a REST resource (JSON)."""
        r = self.session.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def study_id(self, study_instance_uid: str) -> str:
        """Orthanc's identifier of a study."""
        r = self.session.post(f"{self.url}/tools/lookup", data=study_instance_uid, timeout=30)
        r.raise_for_status()
        ids = [x["ID"] for x in r.json() if x["Type"] == "Study"]
        assert len(ids) == 1, f"study {study_instance_uid} not in Orthanc"
        return str(ids[0])

    def study_instances(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every instance of a study with its tags (Orthanc's index)."""
        sid = self.study_id(study_instance_uid)
        return list(self.get(f"/studies/{sid}/instances?expand"))

    def series_of(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every series of a study (MainDicomTags, Instances)."""
        sid = self.study_id(study_instance_uid)
        return list(self.get(f"/studies/{sid}/series"))

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file of one instance."""
        r = self.session.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30)
        r.raise_for_status()
        return r.content

    def count_instances(self) -> int:
        """Instances stored in Orthanc."""
        return int(self.get("/statistics")["CountInstances"])
