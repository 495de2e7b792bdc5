"""Architecture guard: packages import downward only (DESIGN.md, "Layers import downward only")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bonelesion"

# Rank of each layer; a module may import from its own rank or lower ones.
LAYER_RANK = {
    "errors": 0, "units": 0, "config": 0, "model": 1, "dicom": 2, "phantom": 2,
    "roi": 3, "stages": 4, "classify": 5, "report": 6, "pipeline": 7, "batch": 8,
    "pacs": 9, "cli": 10, "__main__": 10, "__init__": 10,
}
# Phantom QA measures scans with the stages, so it sits above them (it is a command-level tool).
MODULE_RANK_OVERRIDES = {"phantom.qa": 7, "phantom.regress": 7}


def _rank_of(module: str) -> int:
    parts = module.split(".")
    two = ".".join(parts[:2])
    if two in MODULE_RANK_OVERRIDES:
        return MODULE_RANK_OVERRIDES[two]
    return LAYER_RANK.get(parts[0], 10)


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_imports(path: Path) -> None:
    rel = path.relative_to(SRC).with_suffix("")
    own = ".".join(rel.parts)
    own_rank = _rank_of(own)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = list(rel.parts[:-1])
    bad = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # relative import: resolve it, so `from ..report import x` cannot slip through
            base = package[:len(package) - node.level + 1]
            names = [".".join(["bonelesion", *base, *([node.module] if node.module else [])])]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("bonelesion."):
                target = name.removeprefix("bonelesion.")
                if _rank_of(target) > own_rank:
                    bad.append(f"line {node.lineno}: {name}")
    assert not bad, f"{own} imports from a higher layer: {bad}"
