"""The compiled-template cache of report.html: same bytes as a fresh compile, safe failures.

Truth: the report.html that a fresh Jinja2 compile of the shipped templates renders (the
path without any cache), byte for byte; Jinja2's own `Environment.compile` counts whether a
template was compiled or read back.
"""

from __future__ import annotations

import copy
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from support.classify_factory import lesion
from support.report_series import lesion_masks, write_ct_series

from bonelesion.report import html_report
from bonelesion.report.template_cache import template_cache_dir


@pytest.fixture(autouse=True)
def fresh_environment() -> Iterator[None]:
    """Each test starts and leaves with no template environment made yet in this process."""
    html_report._environment.cache_clear()
    yield
    html_report._environment.cache_clear()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    from bonelesion.classify import ClassifierConfig
    from bonelesion.config import config_to_dict
    from bonelesion.report.document import study_document
    from bonelesion.report.result import study_result

    ct = write_ct_series(tmp_path_factory.mktemp("ct"))
    uid = ct.series.study_instance_uid
    lesions = [lesion(ct=(700.0, 820.0), lesion_id="L1", study=uid,
                      annotations={"treated": False}),
               lesion(ct=(1200.0, 1310.0), lesion_id="L2", study=uid,
                      missing={"adc": "no DWI series"})]
    result = study_result(lesions, volumes={"ct": ct}, masks=lesion_masks(ct),
                          warnings=["one slice dropped"])
    document = study_document(
        result, patient="PHANTOM01", pipeline={"name": "test", "description": "", "hash": ""},
        plan={"study_instance_uid": uid, "roles": [], "stages": [], "skipped_stages": {},
              "refusal": ""},
        config={"stages": {}, "classifier": config_to_dict(ClassifierConfig())}, model=None,
        rois={"kind": "none", "path": None, "sha256": None}, command=["bonelesion", "measure"],
        warnings=list(result.warnings))
    return result, document


def report_html(folder: Path, study: tuple[Any, dict[str, Any]]) -> bytes:
    """report.html of the study through the one writer (key images and outline included)."""
    from bonelesion.report.outputs import OutputOptions, write_study_outputs

    result, document = study
    html_report._environment.cache_clear()
    write_study_outputs(folder, result, copy.deepcopy(document),
                        options=OutputOptions(qc=True, dicom=False, html=True))
    return (folder / "report.html").read_bytes()


def count_compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled: list[str] = []
    original = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None,
                 *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(name))
        return original(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return compiled


def test_report_from_cached_templates_is_byte_identical_to_a_fresh_compile(
        study: tuple[Any, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = count_compiles(monkeypatch)
    # no usable cache (its home is a file): compiled as before the cache existed
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-dir"))
    fresh = report_html(tmp_path / "fresh", study)
    assert sorted(compiled) == ["_base.html.j2", "study.html.j2"]
    # an empty cache: compiled, then kept
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    compiled.clear()
    first = report_html(tmp_path / "first", study)
    assert sorted(compiled) == ["_base.html.j2", "study.html.j2"]
    kept = list((tmp_path / "cache" / "bonelesion" / "templates").glob("*/*.cache"))
    assert len(kept) == 2
    # a new process's environment: read back, not compiled
    compiled.clear()
    cached = report_html(tmp_path / "cached", study)
    assert compiled == []
    assert b"L1" in fresh and b"data:image/png;base64," in fresh
    assert first == fresh
    assert cached == fresh


def test_damaged_or_stale_cache_files_are_compiled_again(
        study: tuple[Any, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fresh = report_html(tmp_path / "fresh", study)
    kept = sorted((tmp_path / "cache" / "bonelesion" / "templates").glob("*/*.cache"))
    whole = kept[0].read_bytes()
    kept[0].write_bytes(whole[:40])  # cut short
    kept[1].write_bytes(whole)  # stale: compiled from another source (checksum differs)
    compiled = count_compiles(monkeypatch)
    assert report_html(tmp_path / "again", study) == fresh
    assert sorted(compiled) == ["_base.html.j2", "study.html.j2"]
    # and written back whole: the next process reads them
    compiled.clear()
    assert report_html(tmp_path / "third", study) == fresh
    assert compiled == []


def test_cache_directory_is_private_and_keyed_by_jinja2_and_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    options = {"autoescape": True, "undefined": jinja2.StrictUndefined}
    path = template_cache_dir(options)
    assert path is not None and path.parent == tmp_path / "bonelesion" / "templates"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert template_cache_dir(options) == path
    assert template_cache_dir({**options, "autoescape": False}) != path
    assert template_cache_dir({**options, "undefined": jinja2.Undefined}) != path
    monkeypatch.setattr(jinja2, "__version__", "0.0.0")
    assert template_cache_dir(options) != path


def test_a_cache_directory_others_can_write_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    options = {"autoescape": True}
    path = template_cache_dir(options)
    assert path is not None
    path.chmod(0o777)
    assert template_cache_dir(options) is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: only absolute
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert template_cache_dir(options) == (
        tmp_path / "home" / ".cache" / "bonelesion" / "templates" / path.name)
