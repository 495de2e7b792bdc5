"""Architecture guard: allowed and forbidden imports, public CLI imports, no import cycles.

DESIGN.md "Layers import downward only"; STYLE.md §1. Every import of the package is read
from the source (``ast``): top-level and function-level ones, absolute and relative.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bonelesion"

# Rank of each layer; a module may import from its own rank or lower ones.
LAYER_RANK = {
    "errors": 0, "units": 0, "config": 0, "sqlite_file": 0, "model": 1, "dicom": 2, "phantom": 2,
    "roi": 3, "stages": 4, "classify": 5, "report": 6, "pipeline": 7, "batch": 8,
    "pacs": 9, "cli": 10, "__main__": 10, "__init__": 10,
}
# Phantom QA measures scans through the pipeline, so it sits at the pipeline's level.
MODULE_RANK_OVERRIDES = {"phantom.qa": 7, "phantom.regress": 7}

#: Arrows that must never exist whatever the ranks say (package → packages it never imports).
FORBIDDEN = {
    # the model is the foundation: geometry and records, nothing of ours but errors and units
    "model": {"config", "dicom", "phantom", "roi", "stages", "classify", "report", "pipeline",
              "batch", "pacs", "cli"},
    # stages are pure maths over Volumes: no file reading, no ROI sources, no outputs
    "stages": {"dicom", "phantom", "roi", "classify", "report", "pipeline", "batch", "pacs",
               "cli"},
    # the classifier is a pure function of measurements and thresholds
    "classify": {"dicom", "phantom", "roi", "stages", "report", "pipeline", "batch", "pacs",
                 "cli"},
    # the reader knows nothing of the phantom generator written with it
    "dicom": {"phantom"},
}


def _imports(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, imported module, imported names) of every import of a source file."""
    rel = path.relative_to(SRC).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            if node.level == 0 and node.module:
                yield node.lineno, node.module, names
            elif node.level > 0:
                # relative import: resolved, so `from ..report import x` cannot slip through
                base = package[:len(package) - node.level + 1]
                module = ".".join(["bonelesion", *base, *([node.module] if node.module else [])])
                yield node.lineno, module, names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("bonelesion", *parts))


def _rank_of(module: str) -> int:
    parts = module.split(".")
    two = ".".join(parts[:2])
    if two in MODULE_RANK_OVERRIDES:
        return MODULE_RANK_OVERRIDES[two]
    return LAYER_RANK.get(parts[0], 10)


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _own(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


def upward_or_forbidden(path: Path) -> list[str]:
    """Every import of ``path`` that breaks the layering (empty when it is clean)."""
    own = _own(path)
    own_rank = _rank_of(own)
    own_package = own.split(".")[0]
    bad = []
    for line, name, _ in _imports(path):
        if not name.startswith("bonelesion."):
            continue
        target = name.removeprefix("bonelesion.")
        if _rank_of(target) > own_rank:
            bad.append(f"line {line}: {name} (upward)")
        elif target.split(".")[0] in FORBIDDEN.get(own_package, ()):
            bad.append(f"line {line}: {name} (forbidden: {own_package} never imports "
                       f"{target.split('.')[0]})")
    return bad


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_or_forbidden_imports(path: Path) -> None:
    bad = upward_or_forbidden(path)
    assert not bad, f"{_own(path)} breaks the layers: {bad}"


def test_the_guard_catches_a_planted_forbidden_import(tmp_path: Path) -> None:
    # a stage reading DICOM is below the rank of dicom? No: dicom ranks lower, so only the
    # forbidden list catches it; a model importing the reader, likewise
    planted = {
        "stages/planted.py": "from bonelesion.dicom.series import load_series\n",
        "model/planted.py": "def f():\n    from bonelesion.config import build_config\n",
        "classify/planted.py": "from ..stages import fit_adc\n",
        "roi/planted.py": "import bonelesion.report.outputs\n",
    }
    global SRC
    real = SRC
    try:
        SRC = tmp_path / "bonelesion"
        for rel, text in planted.items():
            (SRC / rel).parent.mkdir(parents=True, exist_ok=True)
            (SRC / rel).write_text(text)
        found = {rel: upward_or_forbidden(SRC / rel) for rel in planted}
    finally:
        SRC = real
    assert "forbidden: stages never imports dicom" in found["stages/planted.py"][0]
    assert "forbidden: model never imports config" in found["model/planted.py"][0]
    assert "forbidden: classify never imports stages" in found["classify/planted.py"][0]
    assert "(upward)" in found["roi/planted.py"][0]


@pytest.mark.parametrize("path", sorted((SRC / "cli").glob("*.py")),
                         ids=lambda p: p.name)
def test_cli_imports_only_public_names(path: Path) -> None:
    bad = []
    for line, name, names in _imports(path):
        if not name.startswith("bonelesion.") or name.startswith("bonelesion.cli"):
            continue
        private = [p for p in name.split(".") if p.startswith("_")]
        private += [n for n in names if n.startswith("_")]
        if private:
            bad.append(f"line {line}: {name} {private}")
    assert not bad, f"cli/{path.name} imports private names: {bad}"


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (any import level)."""
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p): p for p in _modules()}
    for name, path in modules.items():
        deps = set()
        for _, target, names in _imports(path):
            if not target.startswith("bonelesion"):
                continue
            for candidate in (*(f"{target}.{n}" for n in names), target):
                if candidate in modules and candidate != name:
                    deps.add(candidate)
                    break
        graph[name] = deps
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package importing its own submodules is not a cycle of jobs
            real = [m for m in component
                    if not any(o != m and o.startswith(m + ".") for o in component)]
            if len(real) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


#: Private groups of vendor data and private creators: vendor knowledge (DESIGN.md "Vendors
#: differ"; lives in dicom/vendors, and in the phantom that writes each vendor's style).
_VENDOR_MARKS = ("0x0019", "0x0029", "0x0043", "0x0065", "0x2001", "0x2005", "GEMS_",
                 "SIEMENS CSA", "SIEMENS MR HEADER", "Philips MR Imaging", "Philips Imaging DD",
                 "Image Private Header")
_VENDOR_HOMES = ("dicom/vendors/", "phantom/")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_vendor_knowledge_only_in_the_vendor_modules(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    if rel.startswith(_VENDOR_HOMES):
        return
    code = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
    found = [mark for mark in _VENDOR_MARKS if mark in code]
    assert not found, f"{rel} holds vendor knowledge {found}: move it into dicom/vendors"
