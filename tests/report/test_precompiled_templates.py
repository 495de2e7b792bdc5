"""The report templates compiled ahead of time: same report.html bytes, never used when stale.

Truth: the report.html that Jinja2 renders after compiling the shipped templates in the
process (the path without precompiled templates), byte for byte; Jinja2's own
`Environment.compile` tells whether a template was compiled in the process or imported.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from support.classify_factory import lesion
from support.report_series import lesion_masks, write_ct_series

from bonelesion.report import html_report
from bonelesion.report.precompile import TEMPLATES, compile_templates, precompiled_loader


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
               lesion(ct=(1200.0, 1310.0), lesion_id='<b>"L2"</b>', study=uid,
                      missing={"adc": "no DWI series"})]
    masks = lesion_masks(ct)
    masks['<b>"L2"</b>'] = masks.pop("L2")
    result = study_result(lesions, volumes={"ct": ct}, masks=masks,
                          warnings=["one slice dropped"])
    document = study_document(
        result, patient="PHANTOM01", pipeline={"name": "test", "description": "", "hash": ""},
        plan={"study_instance_uid": uid, "roles": [], "stages": [], "skipped_stages": {},
              "refusal": ""},
        config={"stages": {}, "classifier": config_to_dict(ClassifierConfig())}, model=None,
        rois={"kind": "none", "path": None, "sha256": None}, command=["bonelesion", "measure"],
        warnings=list(result.warnings))
    return result, document


@pytest.fixture()
def compiled_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the templates Jinja2 compiles in this process; no environment made before."""
    calls: list[str] = []
    original = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None,
                 *args: Any, **kwargs: Any) -> Any:
        calls.append(str(name))
        return original(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    html_report._environment.cache_clear()
    yield calls
    monkeypatch.undo()  # the test's own replacements of `_environment` too
    html_report._environment.cache_clear()


def pages(folder: Path, study: tuple[Any, dict[str, Any]], compiled: Path | None,
          monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, str]:
    """report.html through the one writer (key images, outline), and index.html."""
    from bonelesion.report.outputs import OutputOptions, write_study_outputs

    env = html_report._new_environment(compiled=compiled)
    monkeypatch.setattr(html_report, "_environment", lambda: env)
    result, document = study
    written = copy.deepcopy(document)
    write_study_outputs(folder, result, written,
                        options=OutputOptions(qc=True, dicom=False, html=True))
    batch = {"studies": [{"status": "ok", "patient": "PHANTOM01", "output_dir": "s",
                          "study_instance_uid": result.study_instance_uid, "result": written}],
             "run": {"generated_utc": "2026-01-01T00:00:00Z"}, "warnings": ["<i>w</i>"],
             "pipeline": {"name": "test"}}
    return (folder / "report.html").read_bytes(), html_report.render_index_html(batch)


def test_precompiled_templates_render_the_same_bytes_as_a_compile(
        study: tuple[Any, dict[str, Any]], tmp_path: Path, compiled_calls: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = pages(tmp_path / "fresh", study, None, monkeypatch)
    assert sorted(compiled_calls) == ["_base.html.j2", "index.html.j2", "study.html.j2"]
    compile_templates(tmp_path / "compiled")
    compiled_calls.clear()
    ahead = pages(tmp_path / "ahead", study, tmp_path / "compiled", monkeypatch)
    assert compiled_calls == []  # imported, not compiled
    assert b"L1" in fresh[0] and b"data:image/png;base64," in fresh[0]
    assert b"&lt;b&gt;&#34;L2&#34;&lt;/b&gt;" in fresh[0]  # escaped the same way
    assert ahead == fresh


def test_stale_or_incomplete_compiled_templates_are_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    compiled = tmp_path / "compiled"
    compile_templates(compiled, templates=templates)
    assert isinstance(precompiled_loader(compiled, templates=templates), jinja2.ModuleLoader)
    # a template edited after the compile (a checkout)
    study = templates / "study.html.j2"
    study.write_text(study.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert precompiled_loader(compiled, templates=templates) is None
    compile_templates(compiled, templates=templates)
    assert precompiled_loader(compiled, templates=templates) is not None
    # another Jinja2 than the one that compiled them
    with monkeypatch.context() as m:
        m.setattr(jinja2, "__version__", "3.0.0")
        assert precompiled_loader(compiled, templates=templates) is None
    # a compiled module missing; no manifest; a damaged manifest; nothing compiled
    module = compiled / jinja2.ModuleLoader.get_module_filename("index.html.j2")
    saved = module.read_bytes()
    module.unlink()
    assert precompiled_loader(compiled, templates=templates) is None
    module.write_bytes(saved)
    manifest = compiled / "manifest.json"
    manifest.write_text("{", encoding="utf-8")
    assert precompiled_loader(compiled, templates=templates) is None
    manifest.unlink()
    assert precompiled_loader(compiled, templates=templates) is None
    assert precompiled_loader(tmp_path / "absent", templates=templates) is None


def test_the_package_uses_its_compiled_templates_when_up_to_date(
        tmp_path: Path, compiled_calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from bonelesion.report import precompile

    monkeypatch.setattr(precompile, "COMPILED", tmp_path / "compiled")
    html_report.prepare_study_template()  # none compiled ahead: compiled here
    assert sorted(compiled_calls) == ["_base.html.j2", "study.html.j2"]
    compile_templates(tmp_path / "compiled")
    html_report._environment.cache_clear()
    compiled_calls.clear()
    html_report.prepare_study_template()
    assert compiled_calls == []
