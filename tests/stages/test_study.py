"""Study assembly (measure_study), series selection, writers, and the measure/adc commands."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synthetic import STUDY_UID, ct_cube, dixon_series, dwi_series

from bonelesion.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, main
from bonelesion.errors import InputError, StageError
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.config import PipelineConfig
from bonelesion.stages.output import CSV_COLUMNS
from bonelesion.stages.study import dwi_sets, measure_study
from bonelesion.units import IntensityUnit

ATOL_HU = 1e-3  # noise-free float32
ATOL_SIR = 1e-5
RTOL_ADC = 1e-5


@dataclass(frozen=True)
class FakeStack:
    """Duck-typed stand-in for bonelesion.dicom.series.Stack."""

    info: SeriesInfo
    volume: Volume | None


def _stack(v: Volume) -> FakeStack:
    return FakeStack(info=v.series, volume=v)


def _study() -> tuple[list[FakeStack], Lesion]:
    """CT (700 HU cube), Dixon (FF 0.1 lesion), DWI b 0/1000 (ADC 0.9e-3), all one FoR."""
    ct, _ = ct_cube(
        shape=(20, 40, 40),
        lesion_hu=700.0,
        lesion_slices=slice(2, 18),
        lesion_rows=slice(4, 36),
        lesion_columns=slice(4, 36),
        spacing_mm=(1.0, 1.0, 1.0),
    )
    dixon = dixon_series(0.1, shape=(8, 20, 20), spacing_mm=(2.0, 2.0, 2.0))
    dwi = dwi_series(0.9e-3, [0, 1000], shape=(8, 20, 20), spacing_mm=(2.0, 2.0, 2.0))
    stacks = [_stack(ct), *(_stack(v) for v in dixon.values()), *(_stack(v) for v in dwi)]
    centre = ct.index_to_lps([[10, 20, 20]])[0]
    lesion = Lesion(
        lesion_id="L1",
        sphere=Sphere(tuple(centre), 6.0),
        treated=False,
        annotations={"sins_pain": 1},
    )
    return stacks, lesion


def test_measure_study_runs_every_stage() -> None:
    stacks, lesion = _study()
    (m,) = measure_study(stacks, [lesion], PipelineConfig())
    assert m.study_instance_uid == STUDY_UID and m.lesion_id == "L1"
    assert m.missing == {}
    assert m.ct is not None and m.ct.attenuation_mean_hu == pytest.approx(700.0, abs=ATOL_HU)
    assert m.chemical_shift is not None
    assert m.chemical_shift.chemical_shift_ratio == pytest.approx(0.8, abs=ATOL_SIR)
    assert m.chemical_shift.fat_fraction == pytest.approx(0.1, abs=ATOL_SIR)
    assert m.adc is not None and m.adc.adc_source == "fitted"
    assert m.adc.adc_mean_mm2_per_s == pytest.approx(0.9e-3, rel=RTOL_ADC)
    assert m.annotations == {"treated": False, "sins_pain": 1}


def test_missing_modalities_have_reasons() -> None:
    stacks, lesion = _study()
    ct_only = [s for s in stacks if s.info.role == "ct"]
    (m,) = measure_study(ct_only, [lesion], PipelineConfig())
    assert m.ct is not None and m.chemical_shift is None and m.adc is None
    assert "no in/opposed-phase" in m.missing["chemical_shift"]
    assert "no scanner ADC map" in m.missing["adc"]
    mr_only = [s for s in stacks if s.info.role not in ("ct", "dixon_water", "dixon_fat")]
    (m,) = measure_study(mr_only, [lesion], PipelineConfig())
    assert "no CT stack" in m.missing["ct"]
    assert m.chemical_shift is not None and m.chemical_shift.fat_fraction is None
    assert "this study has none" in m.missing["fat_fraction"]


def test_errors_become_reasons_not_failures() -> None:
    stacks, _ = _study()
    outside = Lesion(lesion_id="far", sphere=Sphere((900.0, 0.0, 0.0), 5.0))
    other_for = Lesion(
        lesion_id="for", sphere=Sphere((0.0, 0.0, 0.0), 5.0), frame_of_reference_uid="1.2.3.4"
    )
    single_b = [s for s in stacks if s.info.b_value_s_per_mm2 != 0.0]
    m_far, m_for = measure_study(single_b, [outside, other_for], PipelineConfig())
    assert set(m_far.missing) == {"ct", "chemical_shift", "adc"}
    assert "has no voxel on series" in m_far.missing["ct"]
    assert "at least two distinct b-values" in m_far.missing["adc"]
    assert "frame of reference 1.2.3.4" in m_for.missing["ct"]


def test_scanner_adc_preferred_and_lesion_restricted_to_its_study() -> None:
    stacks, lesion = _study()
    grid = stacks[-1].volume
    scanner = grid.with_array(
        np.full(grid.shape, 1.3e-3, np.float32),
        intensity_unit=IntensityUnit.MM2_PER_S,
        series=grid.series.replace(role="adc", series_instance_uid="9.9"),
    )
    other = Lesion(lesion_id="X", sphere=Sphere((0.0, 0.0, 0.0), 1.0), study_instance_uid="7.7")
    (m,) = measure_study([*stacks, _stack(scanner)], [lesion, other], PipelineConfig())
    assert m.adc is not None and m.adc.adc_source == "scanner"
    assert m.adc.adc_mean_mm2_per_s == pytest.approx(1.3e-3, rel=1e-6)


def test_measure_study_refuses_mixed_studies_and_wraps_bugs() -> None:
    stacks, lesion = _study()
    alien = stacks[0].volume
    moved = alien.with_array(alien.array, series=alien.series.replace(study_instance_uid="5.5"))
    with pytest.raises(InputError, match="stacks of 2 studies"):
        measure_study([*stacks, _stack(moved)], [lesion], PipelineConfig())

    class Broken(Lesion):
        def mask_on(self, target: Volume) -> Volume:  # noqa: ARG002
            raise ZeroDivisionError("boom")

    broken = Broken(lesion_id="B", sphere=Sphere((0.0, 0.0, 0.0), 1.0))
    with pytest.raises(StageError, match="stage ct failed unexpectedly on lesion 'B'"):
        measure_study(stacks, [broken], PipelineConfig())


def test_dwi_sets_group_single_b_series_and_keep_multi_b_series() -> None:
    raw = dwi_series(1e-3, [0, 1000, 1000], series_instance_uid="1.10")
    raw = [
        raw[0],
        *(
            v.with_array(
                v.array,
                series=v.series.replace(
                    diffusion_direction=(1.0, 0.0, 0.0) if i else (0.0, 1.0, 0.0)
                ),
            )
            for i, v in enumerate(raw[1:])
        ),
    ]
    b0 = dwi_series(1e-3, [0], series_instance_uid="1.16")[0]
    trace = dwi_series(1e-3, [1000], series_instance_uid="1.12")[0]
    sets = dwi_sets([_stack(v) for v in (*raw, b0, trace)])
    assert [set(s.series_instance_uids) for s in sets] == [{"1.10"}, {"1.16", "1.12"}]
    assert sets[1].b_values_s_per_mm2 == (0.0, 1000.0)


# ---------------------------------------------------------------------------- commands
def _fake_loader(stacks: list[FakeStack]):
    return lambda export_dir: stacks


def test_measure_command_writes_csv_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks, lesion = _study()
    monkeypatch.setattr(
        "bonelesion.stages.commands._load_stacks",
        _fake_loader([s for s in stacks if s.info.role in ("ct", "dwi")]),
    )
    centre = lesion.sphere.centre_lps_mm
    rois = tmp_path / "rois.csv"
    rois.write_text(
        "lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm,treated\n"
        f"L1,{centre[0]},{centre[1]},{centre[2]},6,false\n"
        "L2,900,0,0,5,\n"
    )
    out = tmp_path / "out"
    assert main(["-q", "measure", str(tmp_path), "--rois", str(rois), "--out", str(out)]) == EXIT_OK
    with (out / "lesions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0])[: len(CSV_COLUMNS)] == CSV_COLUMNS
    assert float(rows[0]["ct_attenuation_mean_hu"]) == pytest.approx(700.0, abs=ATOL_HU)
    assert float(rows[0]["adc_mean_mm2_per_s"]) == pytest.approx(0.9e-3, rel=RTOL_ADC)
    assert rows[0]["adc_source"] == "fitted" and rows[0]["mr_chemical_shift_ratio"] == ""
    assert rows[1]["ct_attenuation_mean_hu"] == ""
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == "1.0"
    assert doc["config"]["stages"]["dwi_adc"]["b_min_s_per_mm2"] == 50.0
    lesions = {entry["lesion_id"]: entry for entry in doc["lesions"]}
    assert "no in/opposed-phase" in lesions["L1"]["missing"]["chemical_shift"]
    assert "has no voxel" in lesions["L2"]["missing"]["ct"]
    assert lesions["L1"]["annotations"]["treated"] is False
    # existing outputs are not overwritten without --force
    assert (
        main(["-q", "measure", str(tmp_path), "--rois", str(rois), "--out", str(out)]) == EXIT_INPUT
    )
    assert (
        main(["-q", "measure", str(tmp_path), "--rois", str(rois), "--out", str(out), "--force"])
        == EXIT_OK
    )


def test_measure_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rois = tmp_path / "rois.csv"
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm\nL1,0,0,0,-1\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[stages.dwi_adc]\nbmin = 1\n")
    assert (
        main(
            [
                "-q",
                "measure",
                str(tmp_path),
                "--rois",
                str(rois),
                "--out",
                str(tmp_path / "o"),
                "--config",
                str(cfg),
            ]
        )
        == EXIT_CONFIG
    )
    assert "stages.dwi_adc.bmin: unknown key" in capsys.readouterr().err
    assert (
        main(["-q", "measure", str(tmp_path), "--rois", str(rois), "--out", str(tmp_path / "o")])
        == EXIT_INPUT
    )
    assert "line 2, column 'radius_mm'" in capsys.readouterr().err


def test_adc_command_writes_nifti_in_mm2_per_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks, _ = _study()
    monkeypatch.setattr("bonelesion.stages.commands._load_stacks", _fake_loader(stacks))
    out = tmp_path / "adc"
    assert main(["-q", "adc", str(tmp_path), str(out)]) == EXIT_OK
    (path,) = out.glob("*.nii.gz")
    image = nib.load(path)
    np.testing.assert_allclose(image.get_fdata(), 0.9e-3, rtol=RTOL_ADC)
    grid = stacks[-1].volume
    # NIfTI voxel (i, j, k) = (column, row, slice) maps to the same LPS point as the volume
    ras = image.affine @ np.array([3, 5, 7, 1.0])
    np.testing.assert_allclose(ras[:3] * [-1, -1, 1], grid.index_to_lps([[7, 5, 3]])[0], atol=1e-9)
    sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["b_values_s_per_mm2"] == [0.0, 1000.0] and sidecar["unit"] == "mm2/s"


def test_adc_command_without_dwi_and_with_a_single_b(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stacks, _ = _study()
    monkeypatch.setattr(
        "bonelesion.stages.commands._load_stacks",
        _fake_loader([s for s in stacks if s.info.role == "ct"]),
    )
    assert main(["-q", "adc", str(tmp_path), str(tmp_path / "a")]) == EXIT_INPUT
    monkeypatch.setattr(
        "bonelesion.stages.commands._load_stacks",
        _fake_loader([s for s in stacks if s.info.b_value_s_per_mm2 == 1000.0]),
    )
    assert main(["-q", "adc", str(tmp_path), str(tmp_path / "b")]) == 4


def test_series_choices_are_noted() -> None:
    stacks, lesion = _study()
    ct = stacks[0].volume
    coarse = Volume(  # same origin, half the rows/columns, twice the spacing
        array=np.asarray(ct.array)[:, ::2, ::2].copy(),
        spacing_mm=(1.0, 2.0, 2.0),
        origin_lps_mm=ct.origin_lps_mm,
        direction_lps=ct.direction_lps,
        intensity_unit=ct.intensity_unit,
        series=ct.series.replace(series_instance_uid="1.2.coarse"),
    )
    grid = stacks[-1].volume
    maps = [
        grid.with_array(
            np.full(grid.shape, 1e-3, np.float32),
            intensity_unit=IntensityUnit.MM2_PER_S,
            series=grid.series.replace(role="adc", series_instance_uid=f"9.{i}"),
        )
        for i in range(2)
    ]
    (m,) = measure_study(
        [*stacks, _stack(coarse), *(_stack(v) for v in maps)], [lesion], PipelineConfig()
    )
    assert m.ct is not None and m.ct.series_instance_uid == ct.series.series_instance_uid
    assert any("2 CT stacks; used series" in w for w in m.warnings)
    assert any("2 scanner ADC maps" in w for w in m.warnings)
    named = Lesion(lesion_id="N", sphere=lesion.sphere, series_instance_uid="1.2.coarse")
    (m,) = measure_study([*stacks, _stack(coarse)], [named], PipelineConfig())
    assert m.ct is not None and m.ct.series_instance_uid == "1.2.coarse"


def test_command_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rois = tmp_path / "rois.csv"
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm\nL1,0,0,0,5\n")
    monkeypatch.setattr("bonelesion.dicom.series.load_series", lambda path: [])
    with pytest.raises(InputError, match="no DICOM stack found"):
        from bonelesion.stages.commands import measure_export

        measure_export(tmp_path, rois, tmp_path / "o")
    stacks, _ = _study()
    monkeypatch.setattr("bonelesion.stages.commands._load_stacks", _fake_loader(stacks))
    assert main(["-q", "adc", str(tmp_path), str(tmp_path / "a")]) == EXIT_OK
    assert main(["-q", "adc", str(tmp_path), str(tmp_path / "a")]) == EXIT_INPUT
    assert main(["-q", "adc", str(tmp_path), str(tmp_path / "a"), "--force"]) == EXIT_OK
