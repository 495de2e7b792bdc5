"""The campaign: build mutated cases, run the entry points, count, minimise and report.

Deterministic: case *i* of campaign seed *s* is built from ``random.Random(f"{s}:{i}")``
and seed number ``i mod len(seeds)`` alone, whatever ``--jobs`` is.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from fuzz.layout import layout
from fuzz.minimise import ddmin
from fuzz.mutate import FS_FAMILIES, mutate_bytes, mutate_export, walk_files
from fuzz.runner import READER_TARGETS, TARGETS, Outcome, run_target
from fuzz.seeds import Seed, all_seeds

__all__ = ["Case", "build_case", "run_campaign", "main"]

_BYTE_WEIGHTS = {"bitflip": 1.0, "byte": 1.0, "truncate": 1.5, "length": 1.5,
                 "huge_length": 1.0, "vr_swap": 1.0, "value": 3.0, "syntax_swap": 0.7,
                 "nul_non_utf8": 1.0, "deep_nesting": 0.7, "wrong_type_sequence": 1.2,
                 "splice": 0.5}
_FS_PROBABILITY = 0.2


@dataclass
class Case:
    """A built case: which seed, which mutations, which file was mutated."""

    index: int
    seed: str
    families: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    mutated: str | None = None  # path of the byte-mutated file, relative to the export


def remove_tree(path: Path) -> None:
    """Remove a folder of any depth (iteratively; links are removed, never followed)."""
    if not os.path.lexists(path):
        return
    order: list[bytes] = []
    stack = [os.fsencode(path)]
    while stack:
        folder = stack.pop()
        order.append(folder)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                os.unlink(entry.path)
    for folder in reversed(order):
        os.rmdir(folder)


def build_case(index: int, seed: Seed, campaign_seed: int, case_dir: Path,
               replace: bytes | None = None) -> Case:
    """Write case ``index`` into ``case_dir/export`` (``replace``: the mutated file's bytes)."""
    rng = random.Random(f"{campaign_seed}:{index}")
    remove_tree(case_dir)
    export = case_dir / "export"
    export.mkdir(parents=True)
    for source, name in zip(seed.files, seed.names, strict=True):
        target = export / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    case = Case(index, seed.name)
    byte_mutation = rng.random() < 0.9
    if rng.random() < _FS_PROBABILITY or not byte_mutation:
        family = rng.choice(sorted(FS_FAMILIES))
        case.families.append(family)
        case.descriptions.append(mutate_export(export, rng, family))
    if byte_mutation:
        files = [f for f in walk_files(export) if f.suffix not in (".csv", ".json")]
        if files:
            target = rng.choice(files)
            data = target.read_bytes()
            names = sorted(_BYTE_WEIGHTS)
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                family = rng.choices(names, weights=[_BYTE_WEIGHTS[n] for n in names])[0]
                if not data:
                    break
                data, text = mutate_bytes(data, layout(data), rng, family)
                case.families.append(family)
                case.descriptions.append(text)
            target.write_bytes(data if replace is None else replace)
            case.mutated = os.fsdecode(os.path.relpath(os.fsencode(target), os.fsencode(export)))
    return case


@dataclass
class CaseResult:
    """Outcomes of one case."""

    case: Case
    outcomes: list[Outcome]
    findings: list[dict[str, Any]] = field(default_factory=list)
    harness_error: str = ""


@dataclass(frozen=True)
class Settings:
    """Campaign settings shared by the workers."""

    campaign_seed: int
    targets: tuple[str, ...]
    study_targets: tuple[str, ...]
    study_every: int
    timeout_s: float
    run_timeout_s: float
    memory_bytes: int
    work: Path
    out: Path
    minimise_budget: int
    exec_mode: bool
    keep: bool


_SEEDS: list[Seed] = []
_STUDY_SEEDS: list[Seed] = []
_MINIMISED: set[str] = set()


def _case_seed(index: int, settings: Settings) -> tuple[Seed, tuple[str, ...]]:
    if settings.study_every and _STUDY_SEEDS and index % settings.study_every == \
            settings.study_every - 1:
        k = index // settings.study_every
        return _STUDY_SEEDS[k % len(_STUDY_SEEDS)], settings.study_targets
    return _SEEDS[index % len(_SEEDS)], settings.targets


def run_case(index: int, settings: Settings) -> CaseResult:
    """Build case ``index``, run its targets, save and minimise what failed."""
    seed, targets = _case_seed(index, settings)
    # the case's own folder holds only its box: a write to ../../ from the working folder
    # lands there and is seen, whatever other workers do in the campaign folder
    holder = settings.work / f"case-{index:06d}"
    case_dir = holder / "box"
    try:
        case = build_case(index, seed, settings.campaign_seed, case_dir)
    except OSError as exc:  # a fault of the harness, counted apart (never a finding)
        remove_tree(holder)
        broken = Case(index, seed.name, descriptions=[f"case not built: {exc!r}"])
        return CaseResult(broken, [], harness_error=repr(exc))
    result = CaseResult(case, [])
    for target in targets:
        timeout = settings.run_timeout_s if target == "run" else settings.timeout_s
        outcome = run_target(target, case_dir, timeout_s=timeout,
                             memory_bytes=settings.memory_bytes, exec_mode=settings.exec_mode)
        result.outcomes.append(outcome)
        if outcome.kind != "ok":
            result.findings.append(_save_finding(case, seed, outcome, case_dir, settings))
    if not settings.keep:
        remove_tree(holder)
    return result


def _save_finding(case: Case, seed: Seed, outcome: Outcome, case_dir: Path,
                  settings: Settings) -> dict[str, Any]:
    digest = hashlib.sha1(outcome.signature.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    folder = settings.out / "findings" / f"{digest}-case{case.index:06d}-{outcome.target}"
    info: dict[str, Any] = {"signature": outcome.signature, "kind": outcome.kind,
                            "target": outcome.target, "case": dataclasses.asdict(case),
                            "exit_code": outcome.exit_code, "folder": os.fspath(folder)}
    first = digest not in _MINIMISED and not any(
        p.name.startswith(digest) for p in (settings.out / "findings").glob(f"{digest}-*"))
    if not first:
        return info
    _MINIMISED.add(digest)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "detail.txt").write_text(outcome.detail, errors="backslashreplace")
    if case.mutated is not None:
        mutated = case_dir / "export" / case.mutated
        data = mutated.read_bytes() if mutated.exists() else b""
        (folder / "input.bin").write_bytes(data)
        if settings.minimise_budget and outcome.kind in ("crash", "oom", "hang", "signal"):
            small, runs = _minimise(case, seed, outcome, data, settings)
            (folder / "minimal.bin").write_bytes(small)
            info["minimal_bytes"] = len(small)
            info["minimise_runs"] = runs
    (folder / "case.json").write_text(json.dumps(info, indent=2, ensure_ascii=True))
    return info


def _minimise(case: Case, seed: Seed, outcome: Outcome, data: bytes, settings: Settings
              ) -> tuple[bytes, int]:
    scratch = settings.work / f"min-{case.index:06d}" / "box"

    def fails(candidate: bytes) -> bool:
        build_case(case.index, seed, settings.campaign_seed, scratch, replace=candidate)
        again = run_target(outcome.target, scratch, timeout_s=settings.timeout_s,
                           memory_bytes=settings.memory_bytes, exec_mode=settings.exec_mode)
        return again.signature == outcome.signature

    try:
        return ddmin(data, fails, budget=settings.minimise_budget)
    finally:
        remove_tree(scratch.parent)


def _init_worker(seeds: list[Seed], study: list[Seed]) -> None:
    _SEEDS[:] = seeds
    _STUDY_SEEDS[:] = study


def run_campaign(n_cases: int, settings: Settings, seeds: list[Seed], *, jobs: int = 1,
                 start: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run cases ``start .. start + n_cases - 1``; return the report (also written)."""
    study = [s for s in seeds if s.study]
    plain = [s for s in seeds if not s.study]
    _init_worker(plain, study)
    settings.work.mkdir(parents=True, exist_ok=True)
    settings.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results: list[CaseResult] = []
    indices = range(start, start + n_cases)
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_init_worker,
                                 initargs=(plain, study)) as pool:
            for i, result in enumerate(pool.map(run_case, indices, [settings] * n_cases,
                                                chunksize=4)):
                results.append(result)
                _progress(progress, i, n_cases, results, t0)
    else:
        for i, index in enumerate(indices):
            results.append(run_case(index, settings))
            _progress(progress, i, n_cases, results, t0)
    report = _report(results, settings, seeds, time.monotonic() - t0, start)
    (settings.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=True))
    return report


def _progress(enabled: bool, i: int, n: int, results: list[CaseResult], t0: float) -> None:
    if not enabled or (i + 1) % 25 and i + 1 != n:
        return
    findings = sum(len(r.findings) for r in results)
    print(f"[fuzz] {i + 1}/{n} cases, {findings} findings, {time.monotonic() - t0:.0f} s",
          file=sys.stderr, flush=True)


def _report(results: list[CaseResult], settings: Settings, seeds: list[Seed], seconds: float,
            start: int) -> dict[str, Any]:
    by_target: dict[str, Counter[str]] = {}
    exits: dict[str, Counter[str]] = {}
    rss: dict[str, float] = {}
    slowest: dict[str, float] = {}
    families: Counter[str] = Counter()
    problems_checked = 0
    unique: dict[str, dict[str, Any]] = {}
    for r in results:
        families.update(set(r.case.families))
        for o in r.outcomes:
            by_target.setdefault(o.target, Counter())[o.kind] += 1
            exits.setdefault(o.target, Counter())[str(o.exit_code)] += 1
            rss[o.target] = max(rss.get(o.target, 0.0), o.max_rss_mib)
            slowest[o.target] = max(slowest.get(o.target, 0.0), o.seconds)
            problems_checked += o.problems_checked
        for f in r.findings:
            entry = unique.setdefault(f["signature"], {**f, "count": 0})
            entry["count"] += 1
    return {
        "campaign_seed": settings.campaign_seed,
        "cases": len(results),
        "first_case": start,
        "duration_s": round(seconds, 1),
        "timeout_s": settings.timeout_s,
        "memory_limit_gib": settings.memory_bytes / 1024**3,
        "runs": {t: dict(c) for t, c in sorted(by_target.items())},
        "exit_codes": {t: dict(c) for t, c in sorted(exits.items())},
        "max_rss_mib": {t: round(v, 1) for t, v in sorted(rss.items())},
        "slowest_run_s": {t: round(v, 2) for t, v in sorted(slowest.items())},
        "refusal_messages_checked": problems_checked,
        "harness_errors": [f"case {r.case.index}: {r.harness_error}" for r in results
                           if r.harness_error],
        "families": dict(sorted(families.items())),
        "seeds": [s.name for s in seeds],
        "findings": sorted(unique.values(), key=lambda f: -f["count"]),
    }


def _print_summary(report: dict[str, Any]) -> None:
    kinds = ("ok", "crash", "oom", "hang", "signal", "stdout", "naming", "write_outside")
    print(f"{report['cases']} cases, seed {report['campaign_seed']}, "
          f"{report['duration_s']} s, {len(report['seeds'])} seeds")
    print("| entry point | runs | " + " | ".join(kinds[1:]) + " |")
    print("|---|---|" + "---|" * (len(kinds) - 1))
    for target, counts in report["runs"].items():
        total = sum(counts.values())
        print(f"| {target} | {total} | " + " | ".join(str(counts.get(k, 0)) for k in kinds[1:])
              + " |")
    for f in report["findings"]:
        print(f"  {f['count']:5d} × {f['signature']}  (first: case {f['case']['index']})")
    for error in report["harness_errors"]:
        print(f"  harness error: {error}")


def _selftest(out: Path, exec_mode: bool) -> int:
    """Run each self-test target on a one-file export; print {target: kind} as JSON."""
    from fuzz.runner import SELFTEST_TARGETS

    case = out / "selftest" / "box"
    remove_tree(case.parent)
    (case / "export").mkdir(parents=True)
    (case / "export" / "a.dcm").write_bytes(b"\0" * 128 + b"DICM")
    kinds = {}
    for target in SELFTEST_TARGETS:
        outcome = run_target(target, case, timeout_s=2.0, memory_bytes=1024**3,
                             exec_mode=exec_mode)
        kinds[target] = outcome.kind
        for sub in ("cwd", "home", "tmp"):  # undo what the write self-test did
            remove_tree(case / sub)
    print(json.dumps(kinds))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m fuzz`` (tests/ on PYTHONPATH)."""
    from support.testdata import SHARED_DATA

    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--seed", type=int, default=13, help="campaign seed")
    p.add_argument("--targets", default=",".join(READER_TARGETS),
                   help=f"comma-separated, of {', '.join(TARGETS)}")
    p.add_argument("--study-every", type=int, default=0,
                   help="every N-th case is a whole phantom study run through "
                        "--study-targets (0: never)")
    p.add_argument("--study-targets", default=",".join(TARGETS))
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per run")
    p.add_argument("--run-timeout", type=float, default=120.0, help="seconds per `run`")
    p.add_argument("--memory-gib", type=float, default=4.0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("fuzz_out"))
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default OUT/work)")
    p.add_argument("--cache", type=Path, default=None,
                   help="phantom seed cache (default OUT/phantoms)")
    p.add_argument("--shared", type=Path, default=SHARED_DATA)
    p.add_argument("--no-shared", action="store_true", help="phantom seeds only")
    p.add_argument("--minimise-budget", type=int, default=150)
    p.add_argument("--exec", dest="exec_mode", action="store_true",
                   help="fresh interpreter per run instead of forking")
    p.add_argument("--keep", action="store_true", help="keep every case folder")
    p.add_argument("--selftest", action="store_true",
                   help="run the misbehaving self-test targets once each; print their outcomes")
    args = p.parse_args(argv)
    if args.selftest:
        return _selftest(args.out.resolve(), args.exec_mode)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = args.out.resolve()
    cache = (args.cache or out / "phantoms").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    # Matplotlib (the report's figures) keeps a font cache in HOME, which the oracle watches
    # for writes driven by hostile values: give it one folder of the campaign instead (built
    # once, not once per case). Not a write of the product's choosing.
    os.environ["MPLCONFIGDIR"] = os.fspath(out / "matplotlib")
    seeds = all_seeds(None if args.no_shared else args.shared, cache)
    settings = Settings(
        campaign_seed=args.seed, targets=tuple(t for t in args.targets.split(",") if t),
        study_targets=tuple(t for t in args.study_targets.split(",") if t),
        study_every=args.study_every, timeout_s=args.timeout, run_timeout_s=args.run_timeout,
        memory_bytes=int(args.memory_gib * 1024**3), work=(args.work or out / "work").resolve(),
        out=out, minimise_budget=args.minimise_budget, exec_mode=args.exec_mode, keep=args.keep)
    for t in (*settings.targets, *settings.study_targets):
        if t not in TARGETS:
            p.error(f"unknown target {t!r}")
    # Everything the children need is imported once, here (the fork server).
    import bonelesion.cli.main  # noqa: F401
    import bonelesion.dicom.convert  # noqa: F401
    import bonelesion.dicom.index  # noqa: F401
    import bonelesion.dicom.series  # noqa: F401

    report = run_campaign(args.cases, settings, seeds, jobs=args.jobs, start=args.start)
    _print_summary(report)
    bad = sum(f["count"] for f in report["findings"])
    return 1 if bad else (2 if report["harness_errors"] else 0)
