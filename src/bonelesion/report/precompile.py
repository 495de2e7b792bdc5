"""The report templates compiled ahead of time: written when the package is built, checked at use.

Compiling ``study.html.j2`` (and its base, and ``index.html.j2``) costs ~30-60 ms of every
process that writes a report.html; importing the same templates compiled to Python modules
costs ~1 ms. They are compiled when a wheel is built (``setup.py``'s ``build_py``) and by
``make install`` for a source checkout (``python src/bonelesion/report/precompile.py``), into
``templates_compiled/`` beside the templates, with a manifest of what they were compiled from:
Jinja2's version, the environment's options and the SHA-256 of every template. Nothing is
written at run time (a run writes only into its output folder).

At use (`precompiled_loader`), the manifest is compared with the installed Jinja2, the options
and the templates as they are now; any difference (a template edited in a checkout, Jinja2
upgraded, options changed, a compiled file missing) means the templates are compiled in the
process as without this module, so a stale compiled template is never rendered.

This module imports nothing of bonelesion: the build loads it by path, before bonelesion's
dependencies exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["TEMPLATES", "COMPILED", "environment_options", "compile_templates",
           "precompiled_loader"]

logger = logging.getLogger(__name__)

#: The templates (package data).
TEMPLATES = Path(__file__).with_name("templates")
#: Where a build or ``make install`` writes them compiled.
COMPILED = Path(__file__).with_name("templates_compiled")
_MANIFEST = "manifest.json"


def environment_options() -> dict[str, Any]:
    """Return the options the report's `jinja2.Environment` is made with.

    The compiled code depends on them, so the manifest records them.
    """
    return {"autoescape": True, "undefined": jinja2.StrictUndefined, "trim_blocks": True,
            "lstrip_blocks": True}


def _stamp(templates: Path) -> dict[str, Any]:
    """Return what compiled templates depend on: Jinja2, the options, each template's text."""
    options = {k: (f"{v.__module__}.{v.__qualname__}" if isinstance(v, type) else repr(v))
               for k, v in sorted(environment_options().items())}
    return {"jinja2": jinja2.__version__, "options": options,
            "templates": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                          for p in sorted(templates.glob("*.j2"))}}


def compile_templates(target: Path, *, templates: Path = TEMPLATES) -> None:
    """Compile every template of `templates` into `target` (modules + manifest).

    Replaces what `target` held; the manifest is written last, so an interrupted run leaves
    a folder `precompiled_loader` does not use.
    """
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), **environment_options())
    target.mkdir(parents=True, exist_ok=True)
    (target / _MANIFEST).unlink(missing_ok=True)
    for old in target.glob("tmpl_*.py"):
        old.unlink()
    env.compile_templates(target, zip=None, ignore_errors=False)
    (target / _MANIFEST).write_text(json.dumps(_stamp(templates), indent=1, sort_keys=True)
                                    + "\n", encoding="utf-8")


def precompiled_loader(compiled: Path = COMPILED, *, templates: Path = TEMPLATES
                       ) -> jinja2.BaseLoader | None:
    """Return a loader of the compiled templates, or None when they cannot be used as they are.

    Used only when the manifest matches this Jinja2, these options and the templates' text
    now, and every template has its compiled module.
    """
    try:
        recorded = json.loads((compiled / _MANIFEST).read_text(encoding="utf-8"))
        current = _stamp(templates)
    except (OSError, ValueError) as exc:
        logger.debug("no compiled report templates in %s: %s", compiled, exc)
        return None
    if recorded != current:
        logger.debug("compiled report templates in %s are stale (%s, now %s)", compiled,
                     recorded.get("jinja2") if isinstance(recorded, dict) else "?",
                     current["jinja2"])
        return None
    missing = [name for name in current["templates"]
               if not (compiled / jinja2.ModuleLoader.get_module_filename(name)).is_file()]
    if missing or not current["templates"]:
        logger.debug("compiled report templates in %s lack %s", compiled, missing or "all")
        return None
    return jinja2.ModuleLoader(compiled)


if __name__ == "__main__":  # python src/bonelesion/report/precompile.py [TARGET]
    compile_templates(Path(sys.argv[1]) if len(sys.argv) > 1 else COMPILED)
