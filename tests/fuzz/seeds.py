"""Seeds: real scanner files from ../shared/data (read in place) and small phantom studies.

A seed is a small export: a few files of one series (so that stacks form, duplicates and
gaps matter) or one file of a collection of syntaxes. Shared data are found at run time
(`testdata.SHARED_DATA`) and never copied into the repository; phantoms are written into a
cache folder with `bonelesion.phantom.write_study` (deterministic bytes for a given seed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fuzz.mutate import walk_files

__all__ = ["Seed", "shared_seeds", "phantom_seeds", "all_seeds"]

#: Folders of ../shared/data whose files are unrelated objects: one seed per file.
_COLLECTIONS = {"compressed_nema_pydicom", "ts_siemens_trio_mr_9syntaxes",
                "enhanced_philips_siemens_small"}
#: Files per series seed.
_SERIES_FILES = 3
#: Larger files are left out (they slow every case down without new structure).
_MAX_FILE_BYTES = 12 * 1024**2


@dataclass(frozen=True)
class Seed:
    """A seed export: files copied (then mutated) into a case folder under their names."""

    name: str
    files: tuple[Path, ...]
    #: Names inside the export (relative paths).
    names: tuple[str, ...]
    #: A whole study (used by the ``run`` and ``load_volume`` entry points).
    study: bool = False


def _dicom_folders(root: Path) -> list[Path]:
    out = []
    for dataset in sorted(p for p in root.iterdir() if p.is_dir()):
        base = dataset / "dicom"
        if not base.is_dir():
            continue
        folders = sorted({f.parent for f in walk_files(base)})
        out.extend(folders)
    return out


def shared_seeds(root: Path) -> list[Seed]:
    """Seeds from ../shared/data; [] when it is absent."""
    if not root.is_dir():
        return []
    seeds: list[Seed] = []
    for folder in _dicom_folders(root):
        dataset = folder.relative_to(root).parts[0]
        files = [f for f in sorted(folder.iterdir())
                 if f.is_file() and f.stat().st_size <= _MAX_FILE_BYTES
                 and f.suffix.lower() not in (".txt", ".md", ".json", ".nii", ".gz")]
        if not files:
            continue
        label = "/".join(folder.relative_to(root).parts)
        if dataset in _COLLECTIONS or len(files) == 1:
            for f in files:
                seeds.append(Seed(f"{label}/{f.name}", (f,), (f.name,)))
            continue
        mid = max(0, len(files) // 2 - _SERIES_FILES // 2)
        chosen = files[mid:mid + _SERIES_FILES]
        seeds.append(Seed(label, tuple(chosen), tuple(f"stack/{f.name}" for f in chosen)))
    return seeds


def _write_phantoms(cache: Path) -> None:
    from bonelesion.phantom import write_study

    for vendor, enhanced, compressed in (("siemens", False, False), ("ge", True, False),
                                         ("philips", False, True)):
        out = cache / f"{vendor}{'_enhanced' if enhanced else ''}" \
                      f"{'_compressed' if compressed else ''}"
        if not (out / "truth.json").exists():
            write_study(out, vendor=vendor, seed=7, enhanced=enhanced, compressed=compressed)
    dicomdir = cache / "dicomdir"
    if not (dicomdir / "DICOMDIR").exists():
        from pydicom import dcmread
        from pydicom.fileset import FileSet

        source = cache / "ge_enhanced" / "DICOM"
        fs = FileSet()
        for f in sorted(walk_files(source))[:3]:
            fs.add(dcmread(f))
        fs.write(dicomdir)


def phantom_seeds(cache: Path) -> list[Seed]:
    """Phantom study seeds (written into ``cache`` once): per series and whole studies."""
    _write_phantoms(cache)
    seeds: list[Seed] = []
    for study in sorted(p for p in cache.iterdir() if p.is_dir()):
        files = walk_files(study)
        dicom = [f for f in files if f.suffix == ".dcm" or f.name == "DICOMDIR"
                 or study.name == "dicomdir"]
        if study.name == "dicomdir":
            seeds.append(Seed("phantom/dicomdir", tuple(dicom),
                              tuple(os.fspath(f.relative_to(study)) for f in dicom)))
            continue
        by_folder: dict[Path, list[Path]] = {}
        for f in dicom:
            by_folder.setdefault(f.parent, []).append(f)
        for folder, members in sorted(by_folder.items()):
            mid = max(0, len(members) // 2 - 1)
            chosen = members[mid:mid + _SERIES_FILES]
            seeds.append(Seed(f"phantom/{study.name}/{folder.name}", tuple(chosen),
                              tuple(f"stack/{f.name}" for f in chosen)))
        whole = [f for f in files if f.name != "truth.json"]
        seeds.append(Seed(f"phantom/{study.name}", tuple(whole),
                          tuple(os.fspath(f.relative_to(study)) for f in whole), study=True))
    return seeds


def all_seeds(shared_root: Path | None, cache: Path) -> list[Seed]:
    """Shared-data seeds (when present) then phantom seeds, in a fixed order."""
    seeds = shared_seeds(shared_root) if shared_root is not None else []
    return seeds + phantom_seeds(cache)
