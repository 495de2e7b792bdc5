"""A thoracolumbar-pelvic spine phantom (T10–sacrum with the iliac bones): the analytic scene.

The scene is a list of `Paint` steps (shape + label, painted in order, later wins) and a
table of labels, each label carrying one `Material` (CT number and MR properties). The
renderer (`bonelesion.phantom.spine_study`) turns it into CT and MR images; the truth
records come from the same scene, sampled finely and independently of any image grid.

Anatomy (patient LPS, millimetres; sizes are those of an average adult)
-----------------------------------------------------------------------
* Vertebrae T6–L5 placed along a sagittal curve (thoracic kyphosis, lumbar lordosis), each
  in its own tilted frame: a body with a superelliptic, posteriorly flattened section,
  concave endplates, a cortical shell and trabecular marrow whose CT number falls
  gently from T9 to L5 (osteoporotic option: 60–110 HU); a neural arch (pedicles and
  laminae) around the canal; spinous and transverse processes; superior and inferior
  articular processes forming facet joints with a joint space.
* Discs (annulus and nucleus) between the bodies; the canal holds epidural fat, the
  thecal sac (CSF) and the cord down to L1 (conus).
* Ribs on T6–T12 (head at the body, neck along the transverse process, shaft around the
  trunk, descending; T6–T9 lie above the default scan, their anterior arcs reach the
  T10–T12 levels as on a real CT); an optional short lumbar rib on L1.
* Sacrum S1–S5: fused segments (bony remnant discs), alae, canal, posterior wall and
  foramina; iliac bones (posterior block and wing) meet the alae at the sacroiliac joints
  (2 mm joint space from S1 to S3). An optional sacralised L5 has wing-like transverse
  processes fused to the sacral alae and a thin L5–S1 disc.
* Soft tissue: body outline with subcutaneous fat, abdominal-wall muscle, visceral fat,
  liver, spleen, kidneys in perirenal fat, lung bases, bowel loops with gas, bladder,
  paraspinal, psoas, iliacus and gluteal muscles, aorta and iliac arteries (optionally
  contrast-enhanced), inferior vena cava, and the CT table.
* Lesions (irregular star-shaped solids clipped to bone): sclerotic metastases and bone
  islands (spiculated), optional lytic metastases; look-alikes: endplate sclerosis bands,
  osteophytes and facet-joint sclerosis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from bonelesion.phantom.shapes import (
    AxialArc,
    AxialProfile,
    CapsuleChain,
    Clipped,
    Frame,
    NeuralArchShape,
    Paint,
    Raster,
    Shape,
    StarBlob,
    Superellipsoid,
    VertebralBodyShape,
    frame_from_axis,
    paint,
    rotation_x,
)

__all__ = [
    "Material",
    "SpineOptions",
    "LesionKind",
    "LookAlikeKind",
    "LabelInfo",
    "VertebraModel",
    "DiscModel",
    "RibModel",
    "LesionModel",
    "LookAlikeModel",
    "SpineScene",
    "build_scene",
    "render_labels",
    "SPINE_LEVELS",
]


# ------------------------------------------------------------------------------ materials
@dataclass(frozen=True, kw_only=True)
class Material:
    """Physical values of one tissue.

    Parameters
    ----------
    name : str
    attenuation_hu : float
        CT number.
    fat_fraction : float
        Signal fat fraction F / (W + F) of the MR signal, 0–1.
    t1w_scale : float
        Relative proton signal on the T1-weighted Dixon (0–1).
    t2w_scale : float
        Relative water signal at b = 0 of the fat-suppressed DWI (0–1).
    adc_mm2_per_s : float
    """

    name: str
    attenuation_hu: float
    fat_fraction: float
    t1w_scale: float
    t2w_scale: float
    adc_mm2_per_s: float


def _m(name: str, hu: float, ff: float, t1: float, t2: float, adc: float) -> Material:
    return Material(name=name, attenuation_hu=hu, fat_fraction=ff, t1w_scale=t1,
                    t2w_scale=t2, adc_mm2_per_s=adc)


#: Background materials. CT numbers: textbook values (fat −100, muscle ~50, blood ~40,
#: CSF ~10, cord ~35, disc 70–90, cortical bone of the thin vertebral shell as seen on
#: clinical CT ~700–1200 after blurring of a denser true shell).
MATERIALS: dict[str, Material] = {m.name: m for m in (
    _m("air", -1000.0, 0.0, 0.0, 0.0, 0.0),
    _m("lung", -850.0, 0.0, 0.02, 0.02, 1.0e-3),
    _m("bowel_gas", -950.0, 0.0, 0.0, 0.0, 0.0),
    _m("fat", -100.0, 0.95, 1.0, 0.05, 1.0e-3),
    _m("visceral_fat", -95.0, 0.93, 0.95, 0.05, 1.0e-3),
    _m("epidural_fat", -90.0, 0.93, 0.95, 0.05, 1.0e-3),
    _m("muscle", 50.0, 0.05, 0.45, 0.35, 1.5e-3),
    _m("liver", 60.0, 0.05, 0.6, 0.3, 1.2e-3),
    _m("spleen", 48.0, 0.02, 0.45, 0.6, 0.8e-3),
    _m("kidney", 32.0, 0.02, 0.45, 0.7, 2.0e-3),
    _m("bowel", 30.0, 0.05, 0.35, 0.7, 2.2e-3),
    _m("urine", 8.0, 0.0, 0.15, 1.0, 3.0e-3),
    _m("blood", 40.0, 0.0, 0.3, 0.1, 2.0e-3),
    _m("blood_contrast", 260.0, 0.0, 0.3, 0.1, 2.0e-3),
    _m("vein_contrast", 170.0, 0.0, 0.3, 0.1, 2.0e-3),
    _m("csf", 10.0, 0.0, 0.2, 1.0, 3.0e-3),
    _m("cord", 35.0, 0.0, 0.5, 0.6, 1.0e-3),
    _m("disc_annulus", 90.0, 0.0, 0.4, 0.45, 1.3e-3),
    _m("disc_nucleus", 75.0, 0.0, 0.45, 0.85, 1.7e-3),
    _m("joint", 60.0, 0.0, 0.35, 0.7, 2.0e-3),
    _m("cortical_bone", 1400.0, 0.0, 0.03, 0.03, 0.3e-3),
    _m("fused_disc_bone", 420.0, 0.3, 0.5, 0.3, 0.4e-3),
    _m("foramen", -60.0, 0.8, 0.9, 0.15, 1.2e-3),
    _m("table_skin", 300.0, 0.0, 0.0, 0.0, 0.0),
    _m("table_foam", -850.0, 0.0, 0.0, 0.0, 0.0),
)}


def _marrow(name: str, hu: float, *, osteoporotic: bool) -> Material:
    ff = 0.6 if osteoporotic else 0.45
    return Material(name=name, attenuation_hu=hu, fat_fraction=ff, t1w_scale=1.0,
                    t2w_scale=0.5, adc_mm2_per_s=0.45e-3)


class LesionKind(str, Enum):
    """Kinds of true lesions."""

    SCLEROTIC_METASTASIS = "sclerotic_metastasis"
    BONE_ISLAND = "bone_island"
    LYTIC_METASTASIS = "lytic_metastasis"


class LookAlikeKind(str, Enum):
    """Benign findings that mimic a sclerotic lesion on CT."""

    ENDPLATE_SCLEROSIS = "endplate_sclerosis"
    OSTEOPHYTE = "osteophyte"
    FACET_SCLEROSIS = "facet_sclerosis"


class Region(str, Enum):
    """Spinal region of a vertebra."""

    THORACIC = "thoracic"
    LUMBAR = "lumbar"
    SACRAL = "sacral"


#: MR appearance of sclerotic bone (metastases, bone islands, look-alikes): signal void on
#: every Dixon image and on DWI (dense mineral, few mobile protons).
SCLEROTIC_MR = {"fat_fraction": 0.05, "t1w_scale": 0.08, "t2w_scale": 0.08,
                "adc_mm2_per_s": 0.6e-3}
#: MR appearance of a lytic metastasis: low T1 (marrow fat replaced), bright water signal.
LYTIC_MR = {"fat_fraction": 0.05, "t1w_scale": 0.55, "t2w_scale": 1.0,
            "adc_mm2_per_s": 1.0e-3}


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True, kw_only=True)
class SpineOptions:
    """Variants of the spine phantom.

    Parameters
    ----------
    lumbar_rib : bool
        A short rib on each side of L1 (a labelling trap: the last rib-bearing vertebra
        is then not T12).
    sacralised_l5 : bool
        L5 with wing-like transverse processes fused to the sacral alae and a thin L5–S1
        disc (a transitional vertebra).
    osteoporotic : bool
        Trabecular bone of 60–110 HU instead of 150–250 HU.
    contrast : bool
        Arterial-phase contrast: aorta ~260 HU, veins ~170 HU.
    lesions : bool
        Place the standard sclerotic metastases and bone islands.
    lytic_lesions : bool
        Add two lytic metastases.
    look_alikes : bool
        Add endplate sclerosis bands, osteophytes and facet-joint sclerosis.
    """

    lumbar_rib: bool = False
    sacralised_l5: bool = False
    osteoporotic: bool = False
    contrast: bool = False
    lesions: bool = True
    lytic_lesions: bool = False
    look_alikes: bool = True


# ------------------------------------------------------------------------------ models
@dataclass(frozen=True, kw_only=True)
class LabelInfo:
    """One label of the scene: what it is and its material."""

    name: str
    material: Material
    bone: str = ""


@dataclass(frozen=True, kw_only=True)
class VertebraModel:
    """One vertebra (or sacral segment) of the scene."""

    label: str
    region: Region
    frame: Frame
    width_mm: float
    depth_mm: float
    height_mm: float
    body_cortex_label: int
    body_marrow_label: int
    arch_cortex_label: int
    arch_marrow_label: int
    trabecular_hu: float
    rib_sides: tuple[str, ...] = ()
    fused_to_ilium: bool = False
    transitional: str = ""


@dataclass(frozen=True, kw_only=True)
class DiscModel:
    """An intervertebral disc."""

    upper: str
    lower: str
    centre_lps_mm: tuple[float, float, float]
    height_mm: float
    label: int
    fused: bool = False


@dataclass(frozen=True, kw_only=True)
class RibModel:
    """A rib: its vertebra, side, head position and polyline length."""

    vertebra: str
    side: str
    head_lps_mm: tuple[float, float, float]
    length_mm: float
    lumbar: bool = False


@dataclass(frozen=True, kw_only=True)
class LesionModel:
    """A lesion of the scene (true HU and MR values, shape, host bone, label)."""

    lesion_id: str
    kind: LesionKind
    bone: str
    label: int
    material: Material
    shape: Shape
    expected_nature: str


@dataclass(frozen=True, kw_only=True)
class LookAlikeModel:
    """A look-alike of the scene."""

    look_alike_id: str
    kind: LookAlikeKind
    bone: str
    label: int
    material: Material
    shape: Shape
    detail: str


@dataclass(kw_only=True)
class SpineScene:
    """Everything the renderer and the truth need."""

    options: SpineOptions
    labels: list[LabelInfo]
    paints: list[Paint]
    vertebrae: list[VertebraModel]
    discs: list[DiscModel]
    ribs: list[RibModel]
    lesions: list[LesionModel]
    look_alikes: list[LookAlikeModel]
    sacroiliac_joints: list[tuple[str, tuple[float, float, float]]]
    #: Superior/inferior limits of the anatomy worth scanning (T10 top + margin, ilium).
    scan_top_s_mm: float
    scan_bottom_s_mm: float
    body_centre_lp_mm: tuple[float, float]
    table_p_mm: float
    bone_labels: frozenset[int] = field(default_factory=frozenset)
    _boxes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]] | None = field(
        default=None, repr=False)

    def lut(self, attribute: str) -> NDArray[np.float32]:
        """Per-label value of a `Material` attribute (index = label)."""
        return np.array([getattr(info.material, attribute) for info in self.labels],
                        dtype=np.float32)

    def select(self, lo: NDArray[np.float64], hi: NDArray[np.float64], *,
               fine: bool | None = None, upto: int | None = None) -> list[Paint]:
        """Return the paint steps (in order) whose boxes meet the LPS box [lo, hi].

        Parameters
        ----------
        lo, hi : (3,) ndarray, LPS mm
        fine : bool or None
            Only fine (True) or soft (False) steps; None: both.
        upto : int or None
            Only the first ``upto`` steps.
        """
        if self._boxes is None:
            self._boxes = (np.array([p.shape.lo for p in self.paints]),
                           np.array([p.shape.hi for p in self.paints]),
                           np.array([p.fine for p in self.paints]))
        plo, phi, pfine = self._boxes
        hit = np.all(plo <= np.asarray(hi), axis=1) & np.all(phi >= np.asarray(lo), axis=1)
        if fine is not None:
            hit &= pfine == fine
        if upto is not None:
            hit[upto:] = False
        return [self.paints[i] for i in np.flatnonzero(hit)]

    def label_of(self, name: str) -> int:
        """Label number of a named label."""
        for i, info in enumerate(self.labels):
            if info.name == name:
                return i
        raise KeyError(name)


# ------------------------------------------------------------------------------ levels
@dataclass(frozen=True, kw_only=True)
class _Level:
    label: str
    region: Region
    width: float  # body, lateral
    depth: float  # body, AP
    height: float
    disc_below: float
    tilt_deg: float  # superior end towards anterior (+) or posterior (−)
    canal_a: float
    canal_b: float
    arch_t: float
    sp_len: float
    sp_slope_deg: float  # downward slope of the spinous process
    sp_half_h: float
    tp_len: float
    tp_back_deg: float  # transverse process angled backwards
    tp_up_deg: float
    facet_deg: float  # facet joint below this level: 0 sagittal .. 90 coronal
    wedge: float = 0.0


SPINE_LEVELS: tuple[_Level, ...] = (
    # T6–T8 lie above any default scan range; they carry the ribs whose anterior arcs
    # descend to the T10–T12 levels.
    _Level(label="T6", region=Region.THORACIC, width=33, depth=26, height=19, disc_below=5,
           tilt_deg=-11, canal_a=8.0, canal_b=8.0, arch_t=5.0, sp_len=40, sp_slope_deg=60,
           sp_half_h=4.0, tp_len=24, tp_back_deg=40, tp_up_deg=20, facet_deg=80),
    _Level(label="T7", region=Region.THORACIC, width=34, depth=26.5, height=19.5,
           disc_below=5, tilt_deg=-10.5, canal_a=8.0, canal_b=8.0, arch_t=5.0, sp_len=40,
           sp_slope_deg=60, sp_half_h=4.0, tp_len=24, tp_back_deg=40, tp_up_deg=20,
           facet_deg=80),
    _Level(label="T8", region=Region.THORACIC, width=36, depth=27, height=20, disc_below=5,
           tilt_deg=-10, canal_a=8.0, canal_b=8.0, arch_t=5.0, sp_len=39, sp_slope_deg=58,
           sp_half_h=4.5, tp_len=24, tp_back_deg=40, tp_up_deg=18, facet_deg=78),
    _Level(label="T9", region=Region.THORACIC, width=38, depth=28, height=21, disc_below=5.5,
           tilt_deg=-10, canal_a=8.5, canal_b=8.0, arch_t=5.5, sp_len=38, sp_slope_deg=55,
           sp_half_h=4.5, tp_len=24, tp_back_deg=38, tp_up_deg=18, facet_deg=75),
    _Level(label="T10", region=Region.THORACIC, width=40, depth=29, height=22, disc_below=6,
           tilt_deg=-10, canal_a=8.5, canal_b=8.0, arch_t=5.5, sp_len=36, sp_slope_deg=48,
           sp_half_h=5, tp_len=22, tp_back_deg=35, tp_up_deg=15, facet_deg=70),
    _Level(label="T11", region=Region.THORACIC, width=42, depth=30, height=23, disc_below=7,
           tilt_deg=-10, canal_a=9.0, canal_b=8.0, arch_t=6.0, sp_len=34, sp_slope_deg=35,
           sp_half_h=6, tp_len=14, tp_back_deg=25, tp_up_deg=10, facet_deg=45),
    _Level(label="T12", region=Region.THORACIC, width=44, depth=31, height=24.5, disc_below=8,
           tilt_deg=-10, canal_a=10.0, canal_b=8.0, arch_t=6.5, sp_len=32, sp_slope_deg=22,
           sp_half_h=8, tp_len=10, tp_back_deg=15, tp_up_deg=5, facet_deg=25),
    _Level(label="L1", region=Region.LUMBAR, width=45, depth=32, height=25.5, disc_below=9,
           tilt_deg=-10, canal_a=11.0, canal_b=8.5, arch_t=7.0, sp_len=32, sp_slope_deg=10,
           sp_half_h=9, tp_len=20, tp_back_deg=10, tp_up_deg=0, facet_deg=25),
    _Level(label="L2", region=Region.LUMBAR, width=47, depth=33, height=26.5, disc_below=10,
           tilt_deg=-6, canal_a=11.5, canal_b=8.5, arch_t=7.5, sp_len=33, sp_slope_deg=5,
           sp_half_h=10, tp_len=26, tp_back_deg=5, tp_up_deg=0, facet_deg=30),
    _Level(label="L3", region=Region.LUMBAR, width=49, depth=34, height=27, disc_below=11,
           tilt_deg=0, canal_a=12.0, canal_b=8.5, arch_t=7.5, sp_len=33, sp_slope_deg=0,
           sp_half_h=10, tp_len=31, tp_back_deg=0, tp_up_deg=0, facet_deg=35),
    _Level(label="L4", region=Region.LUMBAR, width=51, depth=34, height=27, disc_below=11,
           tilt_deg=8, canal_a=12.5, canal_b=8.5, arch_t=8.0, sp_len=30, sp_slope_deg=-3,
           sp_half_h=9.5, tp_len=27, tp_back_deg=0, tp_up_deg=5, facet_deg=45),
    _Level(label="L5", region=Region.LUMBAR, width=53, depth=34, height=26, disc_below=10,
           tilt_deg=18, canal_a=13.0, canal_b=8.0, arch_t=8.5, sp_len=25, sp_slope_deg=-5,
           sp_half_h=8.5, tp_len=22, tp_back_deg=0, tp_up_deg=-10, facet_deg=55, wedge=3.0),
)

#: Sacral segments: (label, width, depth, height, bony gap below, tilt, ala half-width,
#: canal semi-axes).
_SACRAL: tuple[tuple[str, float, float, float, float, float, float, float, float], ...] = (
    ("S1", 50, 32, 27, 3.0, 40, 54, 12.0, 6.5),
    ("S2", 42, 25, 22, 2.5, 30, 48, 10.0, 5.5),
    ("S3", 33, 19, 19, 2.0, 16, 40, 8.0, 4.5),
    ("S4", 25, 14, 15, 2.0, 0, 28, 6.0, 3.5),
    ("S5", 18, 10, 12, 0.0, -14, 14, 4.5, 2.5),
)

#: Rib shafts: number of 10° steps around the trunk from the rib angle (rib length).
_RIB_TURNS = {"T6": 14, "T7": 14, "T8": 14, "T9": 13, "T10": 12, "T11": 8, "T12": 5}
#: L3 body centre (LPS mm); the rest of the spine hangs off it.
_L3_CENTRE = np.array([0.0, 30.0, -350.0])
_CORTEX_MM = 1.1
_ENDPLATE_MM = 1.0
_ARCH_CORTEX_MM = 1.5
_FACET_GAP_MM = 1.6
_SI_GAP_MM = 2.0


#: An iliac wing: S knots, ellipse parameters per knot, arc angles (from, to) per knot.
_Wing = tuple[list[float], dict[str, list[float]], list[float], list[float]]


def _axis(tilt_deg: float) -> NDArray[np.float64]:
    a = math.radians(tilt_deg)
    return np.array([0.0, -math.sin(a), math.cos(a)])


class _Labels:
    def __init__(self) -> None:
        self.items: list[LabelInfo] = [LabelInfo(name="air", material=MATERIALS["air"])]

    def add(self, name: str, material: Material, bone: str = "") -> int:
        self.items.append(LabelInfo(name=name, material=material, bone=bone))
        return len(self.items) - 1


def _trabecular_hu(index: int, n: int, *, osteoporotic: bool, rng: np.random.Generator
                   ) -> float:
    """Marrow CT number: falls from the top level to the sacrum, ± a few HU per level."""
    frac = index / max(n - 1, 1)
    if osteoporotic:
        base = 105.0 - 40.0 * frac
    else:
        base = 235.0 - 55.0 * frac
    return float(round(base + rng.uniform(-6.0, 6.0)))


# ------------------------------------------------------------------------------ builder
class _Builder:
    def __init__(self, options: SpineOptions, seed: int) -> None:
        self.opt = options
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B1E]))
        self.labels = _Labels()
        self.soft: list[Paint] = []
        self.bone: list[Paint] = []
        self.vertebrae: list[VertebraModel] = []
        self.discs: list[DiscModel] = []
        self.ribs: list[RibModel] = []
        self.lesions: list[LesionModel] = []
        self.look_alikes: list[LookAlikeModel] = []
        self.si_joints: list[tuple[str, tuple[float, float, float]]] = []
        self.bone_labels: set[int] = set()
        self.frames: dict[str, Frame] = {}
        self.levels: dict[str, _Level] = {}
        self.arch: dict[str, tuple[int, int]] = {}
        self.body_ids: dict[str, tuple[int, int]] = {}
        self.facet_joints: dict[tuple[str, str], tuple[NDArray[np.float64],
                                                       NDArray[np.float64]]] = {}
        self.ala_half_width: dict[str, float] = {}
        self.pending_iap: list[tuple[Shape, int]] = []
        self.ilium_ids: dict[str, tuple[int, int]] = {}
        self.wings: dict[str, _Wing] = {}
        self.look_paints: list[Paint] = []
        self.si_planes: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []

    # -------------------------------------------------------------- geometry of the column
    def place_column(self) -> None:
        levels = list(SPINE_LEVELS)
        if self.opt.sacralised_l5:
            levels[-1] = _replace(levels[-1], disc_below=4.0)
        centres: dict[str, NDArray[np.float64]] = {"L3": _L3_CENTRE.copy()}
        names = [lv.label for lv in levels]
        i3 = names.index("L3")
        for i in range(i3 - 1, -1, -1):
            lo, up = levels[i + 1], levels[i]
            a_lo, a_up = _axis(lo.tilt_deg), _axis(up.tilt_deg)
            a_d = (a_lo + a_up) / np.linalg.norm(a_lo + a_up)
            centres[up.label] = (centres[lo.label] + a_lo * lo.height / 2 + a_d * up.disc_below
                                 + a_up * up.height / 2)
        for i in range(i3 + 1, len(levels)):
            up, lo = levels[i - 1], levels[i]
            a_lo, a_up = _axis(lo.tilt_deg), _axis(up.tilt_deg)
            a_d = (a_lo + a_up) / np.linalg.norm(a_lo + a_up)
            centres[lo.label] = (centres[up.label] - a_up * up.height / 2 - a_d * up.disc_below
                                 - a_lo * lo.height / 2)
        for lv in levels:
            self.levels[lv.label] = lv
            self.frames[lv.label] = Frame(origin=centres[lv.label],
                                          axes=rotation_x(lv.tilt_deg))
        # sacral segments below L5
        prev = levels[-1]
        prev_c = centres[prev.label]
        gap = prev.disc_below
        for (lab, w, d, h, gap_below, tilt, ala, ca, cb) in _SACRAL:
            a_prev, a = _axis(prev.tilt_deg), _axis(tilt)
            a_d = (a_prev + a) / np.linalg.norm(a_prev + a)
            prev_h = prev.height
            c = prev_c - a_prev * prev_h / 2 - a_d * gap - a * h / 2
            lv = _Level(label=lab, region=Region.SACRAL, width=w, depth=d, height=h,
                        disc_below=gap_below, tilt_deg=tilt, canal_a=ca, canal_b=cb,
                        arch_t=6.0 if lab in ("S1", "S2") else 5.0, sp_len=6.0,
                        sp_slope_deg=20, sp_half_h=4.0, tp_len=0.0, tp_back_deg=0,
                        tp_up_deg=0, facet_deg=55)
            self.levels[lab] = lv
            self.frames[lab] = Frame(origin=c, axes=rotation_x(tilt))
            self.ala_half_width[lab] = ala
            prev, prev_c, gap = lv, c, gap_below

    # -------------------------------------------------------------- helpers
    def add_bone(self, shape: Shape, label: int) -> None:
        self.bone.append(Paint(shape=shape, label=label, fine=True))
        self.bone_labels.add(label)

    def spine_p(self, s_mm: float) -> float:
        """P coordinate of the body centres at height S (interpolated)."""
        pts = sorted((float(f.origin[2]), float(f.origin[1])) for f in self.frames.values())
        zs, ps = zip(*pts, strict=True)
        return float(np.interp(s_mm, zs, ps))

    # -------------------------------------------------------------- vertebra
    def vertebra(self, lv: _Level, index: int, n_levels: int) -> None:
        f = self.frames[lv.label]
        a, b, hh = lv.width / 2, lv.depth / 2, lv.height / 2
        osteo = self.opt.osteoporotic
        trab = _trabecular_hu(index, n_levels, osteoporotic=osteo, rng=self.rng)
        bone = lv.label
        cort = MATERIALS["cortical_bone"]
        marrow = _marrow(f"marrow_{bone}", trab, osteoporotic=osteo)
        body_c = self.labels.add(f"{bone}.body_cortex", cort, bone)
        body_m = self.labels.add(f"{bone}.body_marrow", marrow, bone)
        arch_c = self.labels.add(f"{bone}.arch_cortex", cort, bone)
        arch_m = self.labels.add(f"{bone}.arch_marrow", marrow, bone)
        self.body_ids[bone] = (body_c, body_m)
        self.arch[bone] = (arch_c, arch_m)
        sacral = lv.region is Region.SACRAL
        flat = 0.82
        post_wall = flat * b
        cv = post_wall + lv.canal_b - 0.5
        arch_outer, arch_inner = self._arch_parts(lv, f, cv, post_wall)
        body_outer = VertebralBodyShape(f, semi_lateral_mm=a, semi_ap_mm=b, half_height_mm=hh,
                                        concavity_mm=0.8 if sacral else 1.8, wedge_mm=lv.wedge,
                                        posterior_flat=flat)
        body_inner = VertebralBodyShape(f, semi_lateral_mm=a - _CORTEX_MM,
                                        semi_ap_mm=b - _CORTEX_MM,
                                        half_height_mm=hh - _ENDPLATE_MM,
                                        concavity_mm=0.8 if sacral else 1.8, wedge_mm=lv.wedge,
                                        posterior_flat=(flat * b - _CORTEX_MM) / (b - _CORTEX_MM))
        for s in arch_outer:
            self.add_bone(s, arch_c)
        self.add_bone(body_outer, body_c)
        for s in arch_inner:
            self.add_bone(s, arch_m)
        self.add_bone(body_inner, body_m)
        ribs: tuple[str, ...] = ()
        if lv.region is Region.THORACIC or (lv.label == "L1" and self.opt.lumbar_rib):
            ribs = ("left", "right")
        transitional = ""
        if lv.label == "L1" and self.opt.lumbar_rib:
            transitional = "lumbar_rib"
        if lv.label == "L5" and self.opt.sacralised_l5:
            transitional = "sacralised_L5"
        self.vertebrae.append(VertebraModel(
            label=bone, region=lv.region, frame=f, width_mm=lv.width, depth_mm=lv.depth,
            height_mm=lv.height, body_cortex_label=body_c, body_marrow_label=body_m,
            arch_cortex_label=arch_c, arch_marrow_label=arch_m, trabecular_hu=trab,
            rib_sides=ribs, fused_to_ilium=lv.label in ("S1", "S2", "S3"),
            transitional=transitional))

    def _arch_parts(self, lv: _Level, f: Frame, cv: float, post_wall: float
                    ) -> tuple[list[Shape], list[Shape]]:
        """Outer (cortex) and inner (marrow) shapes of the posterior elements."""
        hh = lv.height / 2
        sacral = lv.region is Region.SACRAL
        thoracic = lv.region is Region.THORACIC
        t = lv.arch_t
        if sacral:
            ped, lam = (-hh - lv.disc_below / 2 - 0.5, hh + 1.5), (-hh - lv.disc_below / 2 - 0.5,
                                                                    hh + 1.5)
        elif thoracic:
            ped, lam = (-0.15 * lv.height, 0.45 * lv.height), (-0.75 * lv.height, 0.3 * lv.height)
        else:
            ped, lam = (-0.12 * lv.height, 0.45 * lv.height), (-0.62 * lv.height, 0.35 * lv.height)
        outer: list[Shape] = []
        inner: list[Shape] = []
        ct = _ARCH_CORTEX_MM
        taper = 0.45 if lv.region is Region.LUMBAR else (0.35 if sacral else 0.2)
        outer.append(NeuralArchShape(f, canal_a_mm=lv.canal_a, canal_b_mm=lv.canal_b,
                                     canal_v_mm=cv, thickness_mm=t, v_min_mm=post_wall - 5,
                                     pedicle_band_mm=ped, lamina_band_mm=lam, taper=taper))
        inner.append(NeuralArchShape(f, canal_a_mm=lv.canal_a + ct, canal_b_mm=lv.canal_b + ct,
                                     canal_v_mm=cv, thickness_mm=t - 2 * ct,
                                     v_min_mm=post_wall - 5,
                                     pedicle_band_mm=(ped[0] + ct, ped[1] - ct),
                                     lamina_band_mm=(lam[0] + ct, lam[1] - ct), taper=taper))
        back = cv + lv.canal_b + t
        # spinous process: from the back of the ring, sloping down
        s = math.radians(lv.sp_slope_deg)
        d = np.array([0.0, math.cos(s), -math.sin(s)])
        perp = np.array([0.0, math.sin(s), math.cos(s)])
        start = np.array([0.0, back - t * 0.6, (lam[0] + lam[1]) / 2 + (2.0 if sacral else 0.0)])
        thick = 3.0 if thoracic else (3.5 if not sacral else 2.5)
        for shrink, dest in ((0.0, outer), (ct, inner)):
            sub = f.sub(start + d * lv.sp_len / 2, np.stack([[1.0, 0, 0], d, perp]))
            dest.append(Superellipsoid(sub, (thick - shrink, lv.sp_len / 2 + t * 0.3 - shrink,
                                             lv.sp_half_h - shrink), exponent=4.0))
        # tip of the spinous process: a rounded knob
        tip = start + d * (lv.sp_len + t * 0.3 - 2)
        for shrink, dest in ((0.0, outer), (ct, inner)):
            dest.append(Superellipsoid(f.sub(tip, np.eye(3)),
                                       (thick + 0.8 - shrink, 4.0 - shrink,
                                        lv.sp_half_h + 1.5 - shrink)))
        # transverse processes
        if lv.tp_len > 0:
            for tp_sign in (1.0, -1.0):
                back_a, up_a = math.radians(lv.tp_back_deg), math.radians(lv.tp_up_deg)
                dirn = np.array([tp_sign * math.cos(back_a) * math.cos(up_a),
                                 math.sin(back_a) * math.cos(up_a), math.sin(up_a)])
                root = np.array([tp_sign * (lv.canal_a + t * 0.5), cv - 1.0,
                                 0.25 * lv.height if not thoracic else 0.3 * lv.height])
                length = lv.tp_len + lv.canal_a * 0.3
                semi = (length / 2, 4.5 if thoracic else 3.2, 5.5 if thoracic else 4.5)
                if lv.label == "L5":
                    semi = (length / 2, 6.0, 8.0)
                    if self.opt.sacralised_l5:
                        dirn = np.array([tp_sign * 0.8, 0.1, -0.6])
                        dirn /= np.linalg.norm(dirn)
                        length = 40.0
                        semi = (length / 2, 10.0, 12.0)
                hint = np.array([0.0, 1.0, 0.0])
                sub = _frame_along(f, root + dirn * length / 2, dirn, hint)
                for shrink, dest in ((0.0, outer), (ct, inner)):
                    dest.append(Superellipsoid(sub, tuple(x - shrink for x in semi),
                                               exponent=4.0))
        # articular processes: facet joint below this level (IAP of this vertebra) and
        # above (SAP of this vertebra); the joint frames are stored when the lower
        # vertebra is built, so process the SAP here and the IAP of the level above.
        if lv.label != SPINE_LEVELS[0].label:
            upper = self._upper_of(lv.label)
            if upper is not None:
                for side, side_sign in (("left", 1.0), ("right", -1.0)):
                    joint, normal = self._facet_joint(upper, lv, side_sign)
                    self.facet_joints[(lv.label, side)] = (joint, normal)
                    sap, iap = self._facet_processes(lv, upper, joint, normal)
                    for shrink, dest in ((0.0, outer), (ct, inner)):
                        dest.append(sap(shrink))
                    up_c, up_m = self.arch[upper.label]
                    self.add_bone(iap(0.0), up_c)
                    self.pending_iap.append((iap(ct), up_m))
        return outer, inner

    def _upper_of(self, label: str) -> _Level | None:
        order = [lv.label for lv in SPINE_LEVELS] + [s[0] for s in _SACRAL]
        i = order.index(label)
        if i == 0 or label in ("S2", "S3", "S4", "S5"):
            return None
        return self.levels[order[i - 1]]

    def _facet_joint(self, upper: _Level, lower: _Level, sign: float
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Centre (LPS) and unit normal (from the upper IAP to the lower SAP) of a facet."""
        f = self.frames[lower.label]
        b = lower.depth / 2
        cv = 0.82 * b + lower.canal_b - 0.5
        uj = sign * (upper.canal_a + 1.5)
        if lower.region is Region.SACRAL:
            uj = sign * (upper.canal_a + 3.0)
        joint_local = np.array([uj, cv + lower.canal_b * 0.55, lower.height / 2 + 3.0])
        beta = math.radians(upper.facet_deg)
        n_local = np.array([sign * math.cos(beta), -math.sin(beta), 0.0])
        return f.point(joint_local), f.vector(n_local)

    def _facet_processes(self, lower: _Level, upper: _Level, joint: NDArray[np.float64],
                         normal: NDArray[np.float64]
                         ) -> tuple[Callable[[float], Shape], Callable[[float], Shape]]:
        f = self.frames[lower.label]
        axis = f.axes[2]
        tangent = np.cross(axis, normal)
        thick = 5.5 if upper.region is Region.LUMBAR else 4.5
        height = 10.0 if upper.region is Region.LUMBAR else 8.0
        g = _FACET_GAP_MM

        def sap(shrink: float) -> Shape:
            c = joint + normal * (g / 2 + thick / 2) - axis * 4.0
            fr = Frame(origin=c, axes=np.stack([normal, tangent, axis]))
            return Clipped(Superellipsoid(fr, (thick / 2 - shrink, 7.0 - shrink,
                                               height - shrink), exponent=4.0),
                           [(-normal, joint, -(g / 2 + shrink))])

        def iap(shrink: float) -> Shape:
            c = joint - normal * (g / 2 + thick / 2) + axis * 4.0
            fr = Frame(origin=c, axes=np.stack([normal, tangent, axis]))
            return Clipped(Superellipsoid(fr, (thick / 2 - shrink, 6.5 - shrink,
                                               height - shrink), exponent=4.0),
                           [(normal, joint, -(g / 2 + shrink))])

        return sap, iap

    # -------------------------------------------------------------- discs and canal
    def disc(self, upper: _Level, lower: _Level, *, fused: bool) -> None:
        fu, fl = self.frames[upper.label], self.frames[lower.label]
        top = fu.point([0, 0, -upper.height / 2])
        bottom = fl.point([0, 0, lower.height / 2])
        centre = (top + bottom) / 2
        axis = top - bottom
        height = float(np.linalg.norm(axis))
        a = (upper.width + lower.width) / 4
        b = (upper.depth + lower.depth) / 4
        fr = frame_from_axis(centre, axis)
        span = height / 2 + 4.0
        planes_out = [(fu.axes[2], fu.point([0, 0, -upper.height / 2 + 2.5]), 0.0),
                      (-fl.axes[2], fl.point([0, 0, lower.height / 2 - 2.5]), 0.0)]
        if fused:
            lab = self.labels.add(f"{upper.label}-{lower.label}.fused_disc",
                                  MATERIALS["fused_disc_bone"], lower.label)
            self.add_bone(Clipped(Superellipsoid(fr, (a - 1.0, b - 1.0, span)), planes_out), lab)
        else:
            ann = self.labels.add(f"{upper.label}-{lower.label}.disc",
                                  MATERIALS["disc_annulus"])
            nuc = self.labels.add(f"{upper.label}-{lower.label}.nucleus",
                                  MATERIALS["disc_nucleus"])
            bulge = 1.0
            self.bone.append(Paint(shape=Clipped(
                Superellipsoid(fr, (a + bulge, b + bulge * 0.5, span), exponent=2.4),
                planes_out), label=ann))
            self.bone.append(Paint(shape=Clipped(
                Superellipsoid(fr, (a * 0.55, b * 0.5, span)), planes_out), label=nuc))
            lab = ann
        self.discs.append(DiscModel(upper=upper.label, lower=lower.label,
                                    centre_lps_mm=_t3(centre), height_mm=height, label=lab,
                                    fused=fused))

    def canal_contents(self) -> None:
        """Epidural fat, thecal sac and cord: tubes through the canal centres."""
        order = [lv.label for lv in SPINE_LEVELS] + ["S1", "S2", "S3"]
        pts, ca, cb = [], [], []
        for lab in order:
            lv, f = self.levels[lab], self.frames[lab]
            cv = 0.82 * lv.depth / 2 + lv.canal_b - 0.5
            for w in (lv.height / 2 + lv.disc_below / 2, 0.0):
                pts.append(f.point([0, cv, w]))
                ca.append(lv.canal_a)
                cb.append(lv.canal_b)
        pts_a = np.asarray(pts)[1:]
        ca_a, cb_a = np.asarray(ca)[1:], np.asarray(cb)[1:]
        # continue the canal upwards beyond the top level
        up = pts_a[0] + (pts_a[0] - pts_a[2]) * 2.0
        pts_a = np.vstack([up, pts_a])
        ca_a = np.concatenate([[ca_a[0]], ca_a])
        cb_a = np.concatenate([[cb_a[0]], cb_a])
        epi = self.labels.add("canal.epidural_fat", MATERIALS["epidural_fat"])
        csf = self.labels.add("canal.csf", MATERIALS["csf"])
        cord = self.labels.add("canal.cord", MATERIALS["cord"])
        r_canal = np.sqrt(ca_a * cb_a)
        self.soft_tubes(pts_a, r_canal * 0.98, epi)
        # thecal sac ends at S2; the cord (conus) at the L1/L2 disc
        s2 = order.index("S2") * 2
        self.soft_tubes(pts_a[: s2 + 1], np.minimum(r_canal[: s2 + 1] * 0.8,
                                                    cb_a[: s2 + 1] * 1.0 + 1.5), csf)
        l1 = order.index("L1") * 2 + 1
        r_cord = np.linspace(4.5, 2.0, l1 + 1)
        self.soft_tubes(pts_a[: l1 + 1], r_cord, cord)

    def soft_tubes(self, pts: NDArray[np.float64], radius: NDArray[np.float64] | float,
                   label: int, *, fine: bool = True) -> None:
        chain = CapsuleChain(pts, radius)
        for seg in chain.segments():
            self.bone.append(Paint(shape=seg, label=label, fine=fine))

    # -------------------------------------------------------------- ribs
    def rib(self, lv: _Level, side: str, trunk: _Trunk, *, lumbar: bool = False) -> None:
        f = self.frames[lv.label]
        sign = 1.0 if side == "left" else -1.0
        a, b = lv.width / 2, lv.depth / 2
        head = f.point([sign * (a * 0.88 + 4.0), 0.45 * b, 0.25 * lv.height])
        cv = 0.82 * b + lv.canal_b - 0.5
        if lumbar:
            tp_tip = f.point([sign * (lv.canal_a + lv.arch_t * 0.5 + lv.tp_len + 3.0), cv - 1,
                              0.25 * lv.height])
            pts = [f.point([sign * (lv.canal_a + lv.arch_t * 0.5 + lv.tp_len - 2.0), cv - 6.0,
                            0.25 * lv.height - 1.0])]
            d = np.array([sign * 0.8, 0.15, -0.45])
            for k in range(1, 5):
                pts.append(pts[0] + d / np.linalg.norm(d) * 11.0 * k)
            radius = np.linspace(3.2, 2.2, len(pts))
            length = 44.0
            head = pts[0]
            del tp_tip
        else:
            back_a = math.radians(lv.tp_back_deg)
            reach = lv.canal_a + lv.arch_t * 0.5 + lv.tp_len * 0.8
            tub = f.point([sign * reach * math.cos(back_a) * 1.05,
                           cv - 4.0 + reach * math.sin(back_a) * 0.8, 0.2 * lv.height])
            pts = [head, (head + tub) / 2 + np.array([0, 1.0, 0]), tub]
            # shaft: around the trunk from the posterior angle, descending
            n_turn = _RIB_TURNS[lv.label]
            z = float(tub[2])
            psi0 = 35.0
            for k in range(n_turn):
                psi = math.radians(psi0 + 10.0 * k)
                al, ap, cl, cp = trunk.ribcage(z)
                p = np.array([sign * al * math.sin(psi), cp + ap * math.cos(psi), z])
                if k == 0:
                    p = (p + pts[-1]) / 2 + np.array([sign * 6.0, 8.0, 0.0])
                step = float(np.linalg.norm(p[:2] - pts[-1][:2]))
                z -= 0.32 * step
                p[2] = z
                pts.append(p)
            radius = np.concatenate([[3.6, 3.4, 3.4], np.linspace(3.6, 2.8, n_turn)])
            if lv.label == "T12":
                radius = radius * 0.88
            length = float(sum(np.linalg.norm(np.diff(np.asarray(pts), axis=0), axis=1)))
        pts_a = np.asarray(pts)
        c_id = self.labels.add(f"rib_{lv.label}_{side}.cortex", MATERIALS["cortical_bone"],
                               f"rib_{lv.label}_{side}")
        m_id = self.labels.add(f"rib_{lv.label}_{side}.marrow",
                               _marrow("marrow_rib", 160.0 if not self.opt.osteoporotic
                                       else 80.0, osteoporotic=self.opt.osteoporotic),
                               f"rib_{lv.label}_{side}")
        chain = CapsuleChain(pts_a, radius)
        inner = CapsuleChain(pts_a, np.maximum(radius - 1.2, 0.8))
        for seg in chain.segments():
            self.add_bone(seg, c_id)
        for seg in inner.segments():
            self.add_bone(seg, m_id)
        self.ribs.append(RibModel(vertebra=lv.label, side=side, head_lps_mm=_t3(head),
                                  length_mm=length, lumbar=lumbar))

    # -------------------------------------------------------------- sacrum and ilium
    def sacrum_alae(self) -> None:
        """Lateral masses of S1–S5, cut at the SI joint planes.

        Painted after the bodies: the ala cortex spares the body marrow, and the ala marrow
        replaces the body's lateral cortex, so the trabecular bone is continuous.
        """
        for lab, *_ in _SACRAL:
            lv, f = self.levels[lab], self.frames[lab]
            half = self.ala_half_width[lab]
            c_id, m_id = self.arch[lab]
            body_c, body_m = self.body_ids[lab]
            b = lv.depth / 2
            cv = 0.82 * b + lv.canal_b - 0.5
            back = cv + lv.canal_b + lv.arch_t
            v_lo, v_hi = -b * 0.75, back - 1.0
            h = lv.height / 2 + lv.disc_below / 2 + 1.5
            inner_u = lv.width * 0.3
            for sign in (1.0, -1.0):
                for shrink, lab_id in ((0.0, c_id), (1.5, m_id)):
                    # the marrow keeps the medial end (it merges with the body marrow)
                    centre = np.array([sign * ((inner_u + half) / 2 - shrink / 2),
                                       (v_lo + v_hi) / 2, 0.0])
                    shape = Superellipsoid(
                        f.sub(centre, np.eye(3)),
                        ((half - inner_u) / 2 - shrink / 2, (v_hi - v_lo) / 2 - shrink,
                         h - shrink), exponent=4.0)
                    planes = [(n, q, -(_SI_GAP_MM / 2 + shrink)) for n, q in self.si_planes]
                    self.bone.append(Paint(shape=Clipped(shape, planes), label=lab_id,
                                           not_over=frozenset({body_m})))
                    self.bone_labels.add(lab_id)

    def si_geometry(self) -> None:
        """Sacroiliac joint planes: lateral to the S1–S3 alae, converging backwards."""
        f2 = self.frames["S2"]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            gamma = math.radians(28.0)
            n = np.array([sign * math.cos(gamma), math.sin(gamma), 0.12])
            n /= np.linalg.norm(n)
            q = f2.point([sign * 41.0, 4.0, 6.0])
            self.si_planes.append((n, q))
            self.si_joints.append((side, _t3(q)))

    def ilium(self, trunk: _Trunk) -> None:
        osteo = self.opt.osteoporotic
        s1, s3 = self.frames["S1"], self.frames["S3"]
        for (side, sign), (n, q) in zip((("left", 1.0), ("right", -1.0)), self.si_planes,
                                        strict=True):
            bone = f"ilium_{side}"
            c_id = self.labels.add(f"{bone}.cortex", MATERIALS["cortical_bone"], bone)
            m_id = self.labels.add(f"{bone}.marrow",
                                   _marrow("marrow_ilium", 75.0 if osteo else 185.0,
                                           osteoporotic=osteo), bone)
            self.ilium_ids[side] = (c_id, m_id)
            # joint cartilage: a thin plate between sacrum and ilium
            jf = Frame(origin=q, axes=_plane_axes(n))
            joint = self.labels.add(f"si_joint_{side}", MATERIALS["joint"])
            self.bone.append(Paint(shape=Superellipsoid(jf, (_SI_GAP_MM / 2 + 0.3, 24.0, 34.0),
                                                        exponent=4.0), label=joint))
            # posterior block (auricular part and tuberosity), lateral to the joint
            t_axis = np.cross(np.array([0.0, 0.0, 1.0]), n) * sign  # towards posteromedial
            t_axis /= np.linalg.norm(t_axis)
            block_c = q + n * 13.0 + t_axis * 8.0 + np.array([0.0, 0.0, 6.0])
            bf = Frame(origin=block_c, axes=np.stack([n, t_axis, np.cross(n, t_axis)]))
            planes_c = [(-n, q, -(_SI_GAP_MM / 2))]
            planes_m = [(-n, q, -(_SI_GAP_MM / 2 + 1.6))]
            self.add_bone(Clipped(Superellipsoid(bf, (14.0, 30.0, 38.0), exponent=4.0),
                                  planes_c), c_id)
            marrow_block = Clipped(Superellipsoid(bf, (12.4, 28.4, 36.4), exponent=4.0),
                                   planes_m)
            # wing: axial ellipse arcs from the posterior block to the crest and the ASIS;
            # per knot (S): centre L, centre P (from S1), semi L, semi P, angle from (back),
            # angle to (front), thickness back, middle, front
            y1 = float(s1.origin[1])
            rows = [
                (float(s3.origin[2]) - 22.0, 38, -30, 58, 46, 62, 5, 15, 16, 18),
                (float(self.frames["S2"].origin[2]), 36, -38, 70, 54, 62, -22, 12, 10, 14),
                (float(s1.origin[2]), 32, -44, 86, 64, 64, -40, 9, 5, 10),
                (float(self.frames["L5"].origin[2]), 28, -46, 98, 72, 70, -48, 8, 4, 9),
                (float(self.frames["L4"].origin[2]) - 2.0, 26, -44, 104, 72, 74, -38, 8, 6, 8),
            ]
            knots = [r[0] for r in rows]
            wing: dict[str, list[float]] = {
                "centre_l_mm": [sign * r[1] for r in rows],
                "centre_p_mm": [y1 + r[2] for r in rows],
                "semi_l_mm": [float(r[3]) for r in rows],
                "semi_p_mm": [float(r[4]) for r in rows]}
            if sign > 0:
                a_from, a_to = [float(r[5]) for r in rows], [float(r[6]) for r in rows]
            else:
                a_from = [180.0 - r[5] for r in rows]
                a_to = [180.0 - r[6] for r in rows]
            th = {"thickness_from_mm": [float(r[7]) for r in rows],
                  "thickness_mid_mm": [float(r[8]) for r in rows],
                  "thickness_to_mm": [float(r[9]) for r in rows]}
            outer, inner = (AxialArc(
                knots, centre_l_mm=wing["centre_l_mm"], centre_p_mm=wing["centre_p_mm"],
                semi_l_mm=wing["semi_l_mm"], semi_p_mm=wing["semi_p_mm"],
                angle_from_deg=a_from, angle_to_deg=a_to,
                thickness_from_mm=th["thickness_from_mm"],
                thickness_mid_mm=th["thickness_mid_mm"],
                thickness_to_mm=th["thickness_to_mm"], shrink_mm=shrink) for shrink in (0.0, 1.6))
            clip = [(-n, q, -(_SI_GAP_MM / 2))]
            self.add_bone(Clipped(outer, clip), c_id)
            self.add_bone(marrow_block, m_id)
            self.add_bone(Clipped(inner, [(-n, q, -(_SI_GAP_MM / 2 + 1.6))]), m_id)
            self.wings[side] = (knots, wing, a_from, a_to)

    def sacral_foramina(self) -> None:
        sac = frozenset(self.arch[s[0]][i] for s in _SACRAL for i in (0, 1)) | frozenset(
            self.body_ids[s[0]][i] for s in _SACRAL for i in (0, 1))
        lab = self.labels.add("sacral_foramen", MATERIALS["foramen"])
        rim_c = self.arch["S1"][0]
        for (up, *_), (low, *_) in zip(_SACRAL[:-1], _SACRAL[1:], strict=True):
            fu, fl = self.frames[up], self.frames[low]
            lu, ll = self.levels[up], self.levels[low]
            for sign in (1.0, -1.0):
                p_up = fu.point([sign * (ll.width / 2 + 6.5), 0.0, -lu.height / 2])
                p_lo = fl.point([sign * (ll.width / 2 + 6.5), 0.0, ll.height / 2])
                c = (p_up + p_lo) / 2
                ap = (fu.axes[1] + fl.axes[1]) / 2
                r = 4.5 * ll.width / 42.0
                p0, p1 = c - ap * 25.0, c + ap * 25.0
                self.bone.append(Paint(shape=CapsuleChain(np.stack([p0, p1]), r + 1.3),
                                       label=rim_c, only_over=sac))
                self.bone.append(Paint(shape=CapsuleChain(np.stack([p0, p1]), r),
                                       label=lab, only_over=sac | {rim_c}))

    # -------------------------------------------------------------- lesions
    def add_lesion(self, lesion_id: str, kind: LesionKind, bone: str,
                   centre: NDArray[np.float64], volume_ml: float, hu: float,
                   *, elongation: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        rng = self.rng
        if kind is LesionKind.BONE_ISLAND:
            k = 14
            dirs = _random_dirs(rng, k)
            amp = rng.uniform(0.35, 0.8, k)
            cos = rng.uniform(0.965, 0.985, k)
        else:
            k = 7
            dirs = _random_dirs(rng, k)
            amp = rng.uniform(-0.25, 0.35, k)
            cos = rng.uniform(0.2, 0.55, k)
        rot = _random_rotation(rng)
        frame = Frame(origin=np.asarray(centre, float), axes=rot)
        probe = StarBlob(frame, 1.0, elongation, dirs, amp, cos)
        vol1 = _unit_volume(probe)
        r0 = (volume_ml * 1000.0 / vol1) ** (1.0 / 3.0)
        shape = StarBlob(frame, r0, elongation, dirs, amp, cos)
        if kind is LesionKind.LYTIC_METASTASIS:
            mat = Material(name=f"lesion_{lesion_id}", attenuation_hu=hu, **LYTIC_MR)
            nature = "malignant"
        else:
            mat = Material(name=f"lesion_{lesion_id}", attenuation_hu=hu, **SCLEROTIC_MR)
            nature = "benign" if kind is LesionKind.BONE_ISLAND else "malignant"
        lab = self.labels.add(f"lesion_{lesion_id}", mat, bone)
        self.lesions.append(LesionModel(lesion_id=lesion_id, kind=kind, bone=bone, label=lab,
                                        material=mat, shape=shape, expected_nature=nature))

    def add_look_alike(self, look_id: str, kind: LookAlikeKind, bone: str, shape: Shape,
                       hu: float, detail: str, *, only_over: frozenset[int] | None) -> None:
        mat = Material(name=f"lookalike_{look_id}", attenuation_hu=hu, **SCLEROTIC_MR)
        lab = self.labels.add(f"lookalike_{look_id}", mat, bone)
        self.look_alikes.append(LookAlikeModel(look_alike_id=look_id, kind=kind, bone=bone,
                                               label=lab, material=mat, shape=shape,
                                               detail=detail))
        self.look_paints.append(Paint(shape=shape, label=lab, only_over=only_over))



def _replace(lv: _Level, **changes: float) -> _Level:
    import dataclasses
    return dataclasses.replace(lv, **changes)  # type: ignore[arg-type]


def _frame_along(f: Frame, centre_local: NDArray[np.float64], direction_local: NDArray[np.float64],
                 hint_local: NDArray[np.float64]) -> Frame:
    d = direction_local / np.linalg.norm(direction_local)
    h = hint_local - np.dot(hint_local, d) * d
    h /= np.linalg.norm(h)
    return f.sub(centre_local, np.stack([d, h, np.cross(d, h)]))


def _plane_axes(n: NDArray[np.float64]) -> NDArray[np.float64]:
    t = np.cross(np.array([0.0, 0.0, 1.0]), n)
    t /= np.linalg.norm(t)
    return np.stack([n, t, np.cross(n, t)])


def _t3(p: NDArray[np.float64] | Sequence[float]) -> tuple[float, float, float]:
    return float(p[0]), float(p[1]), float(p[2])


def _random_dirs(rng: np.random.Generator, k: int) -> NDArray[np.float64]:
    v = rng.normal(size=(k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.T  # type: ignore[no-any-return]


def _unit_volume(shape: StarBlob) -> float:
    """Volume (mm³) of a star blob, sampled on a 0.05·r grid around its centre."""
    reach = float(shape.hi[0] - shape.lo[0]) / 2
    n = 48
    ax = np.linspace(-reach, reach, n, dtype=np.float32)
    step = float(ax[1] - ax[0])
    c = shape.frame.origin
    x = (ax + np.float32(c[0])).reshape(-1, 1, 1)
    y = (ax + np.float32(c[1])).reshape(1, -1, 1)
    z = (ax + np.float32(c[2])).reshape(1, 1, -1)
    return float(np.count_nonzero(shape.inside(x, y, z))) * step**3


# ------------------------------------------------------------------------------ trunk
@dataclass(frozen=True)
class _Trunk:
    """Body outline knots along S (semi-axes and centre of the skin superellipse)."""

    knots: NDArray[np.float64]
    semi_l: NDArray[np.float64]
    semi_p: NDArray[np.float64]
    centre_p: NDArray[np.float64]

    def at(self, s_mm: float) -> tuple[float, float, float]:
        return (float(np.interp(s_mm, self.knots, self.semi_l)),
                float(np.interp(s_mm, self.knots, self.semi_p)),
                float(np.interp(s_mm, self.knots, self.centre_p)))

    def ribcage(self, s_mm: float) -> tuple[float, float, float, float]:
        al, ap, cp = self.at(s_mm)
        return al - 24.0, ap - 22.0, 0.0, cp + 4.0


def _trunk(b: _Builder) -> _Trunk:
    top = float(b.frames["T6"].origin[2]) + 60.0
    bottom = float(b.frames["S5"].origin[2]) - 60.0
    marks = [("T6", 160, 118, 88), ("T9", 160, 116, 92), ("T11", 158, 114, 96),
             ("L1", 152, 112, 100), ("L3", 150, 112, 104), ("L5", 160, 112, 100),
             ("S1", 170, 112, 90), ("S3", 176, 110, 72), ("S5", 172, 105, 62)]
    zs, al, ap, cp = [top], [160.0], [118.0], []
    for lab, a, p, back in marks:
        z = float(b.frames[lab].origin[2])
        zs.append(z)
        al.append(a)
        ap.append(p)
        cp.append(float(b.frames[lab].origin[1]) + back - p)
    zs.append(bottom)
    al.append(170.0)
    ap.append(100.0)
    cp = [cp[0]] + cp + [cp[-1]]
    # supine: the back flattens towards the table (half-way to the most posterior point)
    back = np.asarray(cp) + np.asarray(ap)
    back = 0.5 * back + 0.5 * back.max()
    cp = list(back - np.asarray(ap))
    order = np.argsort(zs)
    return _Trunk(knots=np.asarray(zs)[order], semi_l=np.asarray(al)[order],
                  semi_p=np.asarray(ap)[order], centre_p=np.asarray(cp)[order])


# ------------------------------------------------------------------------------ soft
def _soft_tissue(b: _Builder, tr: _Trunk) -> float:
    """Paint the soft tissue (rendered per output slice); returns the table's P position."""
    L = b.labels
    soft = b.soft
    fat = L.add("subcutaneous_fat", MATERIALS["fat"])
    wall = L.add("body_wall_muscle", MATERIALS["muscle"])
    vfat = L.add("visceral_fat", MATERIALS["visceral_fat"])
    k = tr.knots
    soft.append(Paint(shape=AxialProfile(k, centre_l_mm=np.zeros_like(k), centre_p_mm=tr.centre_p,
                                         semi_l_mm=tr.semi_l, semi_p_mm=tr.semi_p, exponent=2.3),
                      label=fat, fine=False))
    fat_t = np.where(k > float(b.frames["T12"].origin[2]), 14.0, 20.0)
    soft.append(Paint(shape=AxialProfile(k, centre_l_mm=np.zeros_like(k), centre_p_mm=tr.centre_p,
                                         semi_l_mm=tr.semi_l - fat_t,
                                         semi_p_mm=tr.semi_p - fat_t, exponent=2.3),
                      label=wall, fine=False))
    wall_t = 11.0
    soft.append(Paint(shape=AxialProfile(k, centre_l_mm=np.zeros_like(k), centre_p_mm=tr.centre_p,
                                         semi_l_mm=tr.semi_l - fat_t - wall_t,
                                         semi_p_mm=tr.semi_p - fat_t - wall_t, exponent=2.3),
                      label=vfat, fine=False))
    viscera = frozenset({vfat})
    z = {lab: float(f.origin[2]) for lab, f in b.frames.items()}
    p = {lab: float(f.origin[1]) for lab, f in b.frames.items()}

    def blob(name: str, mat: str, centre: Sequence[float], semi: Sequence[float],
             only: frozenset[int] | None = viscera, exponent: float = 2.0) -> int:
        lab = L.add(name, MATERIALS[mat])
        soft.append(Paint(shape=Superellipsoid(Frame(origin=np.asarray(centre, float),
                                                     axes=np.eye(3)), semi, exponent),
                          label=lab, only_over=only, fine=False))
        return lab

    liver = blob("liver", "liver", (-62, p["T11"] - 55, z["T11"] + 5), (88, 80, 95))
    spleen = blob("spleen", "spleen", (78, p["T11"] + 5, z["T11"] + 10), (32, 48, 52))
    for side, sign, dz in (("left", 1.0, -15.0), ("right", -1.0, -28.0)):
        c = (sign * 72, p["L1"] + 8, z["L1"] + dz)
        blob(f"perirenal_fat_{side}", "visceral_fat", c, (36, 32, 66),
             only=viscera | {liver, spleen, wall})
        blob(f"kidney_{side}", "kidney", c, (27, 22, 55), only=None)
    # lung bases in the posterior costophrenic recesses
    lung_over = viscera | {liver, spleen}
    for sign in (1.0, -1.0):
        blob("lung", "lung", (sign * 92, p["T10"] + 18, z["T9"] + 25), (58, 62, 62),
             only=lung_over)
    # bowel loops and gas (deterministic from the seed)
    rng = b.rng
    z_lo, z_hi = z["S2"], z["L1"]
    bowel = L.add("bowel", MATERIALS["bowel"])
    gas = L.add("bowel_gas", MATERIALS["bowel_gas"])
    for _ in range(46):
        zb = rng.uniform(z_lo, z_hi)
        al, _ap, cp = tr.at(zb)
        ll = rng.uniform(-0.75, 0.75) * (al - 45)
        pp = cp - rng.uniform(0.15, 0.75) * (_ap - 30) - 10 * (1 - abs(ll) / al)
        r = rng.uniform(11, 20)
        soft.append(Paint(shape=Superellipsoid(Frame(origin=np.array([ll, pp, zb]),
                                                     axes=np.eye(3)),
                                               (r, r * rng.uniform(0.7, 1.0),
                                                r * rng.uniform(1.2, 2.5))),
                          label=bowel, only_over=viscera, fine=False))
    for _ in range(14):
        zb = rng.uniform(z_lo, z_hi)
        al, _ap, cp = tr.at(zb)
        ll = rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 0.8) * (al - 45)
        pp = cp - rng.uniform(0.1, 0.7) * (_ap - 30)
        r = rng.uniform(5, 12)
        soft.append(Paint(shape=Superellipsoid(Frame(origin=np.array([ll, pp, zb]),
                                                     axes=np.eye(3)),
                                               (r, r * 0.8, r * 1.6)),
                          label=gas, only_over=viscera | {bowel}, fine=False))
    blob("bladder", "urine", (0, p["S4"] - 95, z["S4"] - 30), (48, 36, 38))
    # muscles: paraspinal, psoas
    musc = L.add("paraspinal_muscle", MATERIALS["muscle"])
    levels = ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3", "S4"]
    zz = np.array([z[lv] for lv in levels])
    pb = np.array([p[lv] for lv in levels])
    wd = np.array([22, 23, 24, 26, 28, 29, 30, 30, 28, 24, 18, 12, 8], float)
    hgt = np.array([22, 23, 24, 26, 28, 29, 30, 29, 27, 22, 16, 11, 7], float)
    off_p = np.array([46, 47, 49, 52, 55, 58, 60, 59, 56, 52, 48, 44, 40], float)
    order = np.argsort(zz)
    for sign in (1.0, -1.0):
        soft.append(Paint(shape=AxialProfile(zz[order], centre_l_mm=(sign * (wd + 4))[order],
                                             centre_p_mm=(pb + off_p)[order],
                                             semi_l_mm=wd[order], semi_p_mm=hgt[order],
                                             exponent=2.2),
                          label=musc, only_over=frozenset({wall, vfat}), fine=False))
    # quadratus lumborum: lateral to the transverse processes
    ql = ["T12", "L1", "L2", "L3", "L4", "L5"]
    zq = np.array([z[lv] for lv in ql])
    for sign in (1.0, -1.0):
        soft.append(Paint(shape=AxialProfile(
            zq[::-1], centre_l_mm=[sign * v for v in (50, 56, 62, 66, 66, 62)][::-1],
            centre_p_mm=(np.array([p[lv] for lv in ql]) + 18.0)[::-1],
            semi_l_mm=[6, 10, 14, 16, 15, 8][::-1], semi_p_mm=[5, 8, 10, 11, 10, 6][::-1]),
            label=musc, only_over=frozenset({vfat}), fine=False))
    psoas = L.add("psoas", MATERIALS["muscle"])
    pl = ["T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3"]
    zp = np.array([z[lv] for lv in pl])
    rp = np.array([3, 8, 13, 17, 21, 23, 22, 20, 18], float)
    widths = {lv.label: lv.width for lv in SPINE_LEVELS}
    xp = np.array([widths.get(lv, 50.0) / 2 + 0.8 * r for lv, r in zip(pl, rp, strict=True)])
    xp[-3:] = [58, 66, 72]
    ppp = np.array([p[lv] for lv in pl]) - np.array([2, 2, 2, 3, 5, 12, 30, 45, 55], float)
    o = np.argsort(zp)
    for sign in (1.0, -1.0):
        soft.append(Paint(shape=AxialProfile(zp[o], centre_l_mm=(sign * xp)[o],
                                             centre_p_mm=ppp[o], semi_l_mm=rp[o],
                                             semi_p_mm=(rp * 0.9)[o]),
                          label=psoas, only_over=viscera | {wall}, fine=False))
    # vessels
    art = MATERIALS["blood_contrast" if b.opt.contrast else "blood"]
    ven = MATERIALS["vein_contrast" if b.opt.contrast else "blood"]
    aorta = L.add("aorta", art)
    ivc = L.add("ivc", ven)
    vl = ["T9", "T11", "L1", "L3", "L4"]
    pts = np.array([[12.0, p[lv] - _body_depth(lv) / 2 - 14.0, z[lv]] for lv in vl])
    pts[0, 2] += 40.0
    b.soft_tubes(pts, np.linspace(11.5, 9.0, len(pts)), aorta, fine=False)
    for sign in (1.0, -1.0):
        il = np.array([pts[-1], [sign * 35, p["S1"] - 45, z["S1"] + 5],
                       [sign * 62, p["S3"] - 65, z["S3"] - 10]])
        b.soft_tubes(il, np.array([8.0, 6.5, 5.5]), aorta, fine=False)
    vpts = np.array([[-22.0, p[lv] - _body_depth(lv) / 2 - 16.0, z[lv]] for lv in vl])
    vpts[0, 2] += 40.0
    b.soft_tubes(vpts, np.linspace(12.0, 10.5, len(vpts)), ivc, fine=False)
    for sign in (1.0, -1.0):
        il = np.array([vpts[-1], [sign * 30, p["S1"] - 38, z["S1"]],
                       [sign * 58, p["S3"] - 60, z["S3"] - 12]])
        b.soft_tubes(il, np.array([9.0, 7.5, 6.5]), ivc, fine=False)
    # pelvic muscles around the wings
    glut = L.add("gluteal_muscle", MATERIALS["muscle"])
    iliac = L.add("iliacus", MATERIALS["muscle"])
    for side in ("left", "right"):
        knots, wing, a_from, a_to = b.wings[side]
        for lab_id, scale, thick, over in ((glut, 1.22, 34.0, {wall, vfat, musc}),
                                           (iliac, 0.86, 22.0, {vfat, wall})):
            sw = {kk: (np.asarray(v) if kk.startswith("centre") else np.asarray(v) * scale)
                  for kk, v in wing.items()}
            soft.append(Paint(shape=AxialArc(knots, **sw, angle_from_deg=a_from,  # type: ignore[arg-type]
                                             angle_to_deg=a_to,
                                             thickness_from_mm=[thick] * 5,
                                             thickness_mid_mm=[thick] * 5,
                                             thickness_to_mm=[thick * 0.6] * 5),
                              label=lab_id, only_over=frozenset(over), fine=False))
    # table under the back (supine convention; the renderer mirrors nothing: the table is
    # part of the scene in patient coordinates and moves with the patient position)
    back_p = float(np.max(tr.centre_p + tr.semi_p))
    return back_p + 2.0


def _body_depth(label: str) -> float:
    """Body depth (AP, mm) of a level."""
    for lv in SPINE_LEVELS:
        if lv.label == label:
            return lv.depth
    return 30.0


def _table(b: _Builder, table_p: float, top: float, bottom: float, *, prone: bool) -> None:
    L = b.labels
    skin = L.add("table_skin", MATERIALS["table_skin"])
    foam = L.add("table_foam", MATERIALS["table_foam"])
    radius = 900.0
    sign = -1.0 if prone else 1.0
    cp = table_p + sign * (radius + 7.0) * -1.0
    centre = 90.0 if not prone else -90.0
    knots = [bottom - 50.0, top + 50.0]
    for lab, shrink in ((skin, 0.0), (foam, 1.6)):
        b.soft.append(Paint(shape=AxialArc(knots, centre_l_mm=[0, 0], centre_p_mm=[cp, cp],
                                           semi_l_mm=[radius, radius],
                                           semi_p_mm=[radius, radius],
                                           angle_from_deg=[centre - 15] * 2,
                                           angle_to_deg=[centre + 15] * 2,
                                           thickness_from_mm=[14.0] * 2,
                                           thickness_mid_mm=[14.0] * 2,
                                           thickness_to_mm=[14.0] * 2, shrink_mm=shrink),
                            label=lab, only_over=frozenset({0, skin}), fine=False))


# ------------------------------------------------------------------------------ lesions
def _standard_lesions(b: _Builder) -> None:
    f = b.frames
    s1 = f["S1"]
    il_l = b.si_joints[0][1]
    il_r = b.si_joints[1][1]
    n_l, n_r = b.si_planes[0][0], b.si_planes[1][0]
    M, B = LesionKind.SCLEROTIC_METASTASIS, LesionKind.BONE_ISLAND
    # largest: left sacral ala / S1 lateral mass
    b.add_lesion("met01", M, "S1", s1.point([33.0, 2.0, -2.0]), 4.2, 640.0,
                 elongation=(1.0, 0.8, 1.1))
    b.add_lesion("met02", M, "ilium_right", np.asarray(il_r) + n_r * 16.0
                 + np.array([0.0, 4.0, 6.0]), 2.6, 720.0, elongation=(0.75, 1.0, 1.2))
    b.add_lesion("met03", M, "L3", f["L3"].point([8.0, -3.0, 1.0]), 2.0, 780.0)
    b.add_lesion("met04", M, "T11", f["T11"].point([-6.0, -2.0, 0.0]), 0.8, 560.0)
    b.add_lesion("met05", M, "L1", f["L1"].point([-9.0, 4.0, -3.0]), 0.35, 680.0)
    b.add_lesion("bi01", B, "L2", f["L2"].point([-9.0, 2.0, 2.0]), 0.5, 1300.0)
    b.add_lesion("bi02", B, "T12", f["T12"].point([9.0, -4.0, -2.0]), 0.12, 1180.0)
    b.add_lesion("bi03", B, "L4", f["L4"].point([7.0, 0.0, 3.0]), 0.9, 1450.0)
    b.add_lesion("bi04", B, "ilium_left", np.asarray(il_l) + n_l * 14.0
                 + np.array([0.0, 8.0, 16.0]), 0.25, 1100.0)
    b.add_lesion("bi05", B, "S2", f["S2"].point([-4.0, -1.0, 0.0]), 0.06, 1250.0)


def _lytic_lesions(b: _Builder) -> None:
    f = b.frames
    L = LesionKind.LYTIC_METASTASIS
    b.add_lesion("lyt01", L, "T10", f["T10"].point([5.0, -2.0, 0.0]), 1.5, 35.0)
    b.add_lesion("lyt02", L, "L5", f["L5"].point([-10.0, -2.0, 0.0]), 0.7, 25.0)


def _look_alikes(b: _Builder) -> None:
    f = b.frames
    lv = b.levels
    # endplate sclerosis (Modic 3-like) on both sides of the L4–L5 disc
    for look_id, lab, end in (("eps01", "L4", "inferior"), ("eps02", "L5", "superior")):
        fr, level = f[lab], lv[lab]
        c_id, m_id = b.body_ids[lab]
        sign = -1.0 if end == "inferior" else 1.0
        band = 5.5
        centre = fr.point([0.0, -level.depth * 0.12, sign * (level.height / 2 - band / 2)])
        shape = Clipped(Superellipsoid(Frame(origin=centre, axes=fr.axes),
                                       (level.width * 0.42, level.depth * 0.36, band),
                                       exponent=2.0),
                        [(fr.axes[2] * -sign, fr.point([0, 0, sign * (level.height / 2
                                                                      - band)]), 0.0)])
        b.add_look_alike(look_id, LookAlikeKind.ENDPLATE_SCLEROSIS, lab, shape, 620.0,
                         f"{end} endplate", only_over=frozenset({m_id}))
    # osteophytes: anterolateral spurs at the L3–L4 and T11–T12 endplate rims
    for look_id, lab, end, ang in (("ost01", "L3", "inferior", -60.0),
                                   ("ost02", "L4", "superior", -120.0),
                                   ("ost03", "T12", "superior", -30.0)):
        fr, level = f[lab], lv[lab]
        c_id, m_id = b.body_ids[lab]
        sign = -1.0 if end == "inferior" else 1.0
        a, bb = level.width / 2, level.depth / 2
        t = math.radians(ang)
        rim = np.array([a * math.cos(t), bb * math.sin(t), sign * (level.height / 2 - 1.5)])
        out = np.array([math.cos(t), math.sin(t), 0.0])
        pts = np.stack([fr.point(rim - out * 2.0), fr.point(rim + out * 3.5),
                        fr.point(rim + out * 6.5 + np.array([0, 0, sign * 2.5])),
                        fr.point(rim + out * 7.5 + np.array([0, 0, sign * 5.0]))])
        spur = CapsuleChain(pts, np.array([3.2, 2.8, 2.0, 1.2]))
        b.add_look_alike(look_id, LookAlikeKind.OSTEOPHYTE, lab, spur, 850.0,
                         f"{end} endplate rim", only_over=None)
    # facet-joint sclerosis: subchondral bone of the superior articular process
    for look_id, lab, side in (("fac01", "L5", "right"), ("fac02", "S1", "left")):
        joint, normal = b.facet_joints[(lab, side)]
        c_id, m_id = b.arch[lab]
        fr = Frame(origin=joint + normal * (_FACET_GAP_MM / 2 + 2.0), axes=_plane_axes(normal))
        shape = Clipped(Superellipsoid(fr, (2.2, 6.5, 8.0), exponent=2.0), [])
        b.add_look_alike(look_id, LookAlikeKind.FACET_SCLEROSIS, lab, shape, 900.0,
                         f"{side} facet joint {b._upper_of(lab).label}-{lab}",  # type: ignore[union-attr]
                         only_over=frozenset({c_id, m_id}))


# ------------------------------------------------------------------------------ scene
def build_scene(options: SpineOptions | None = None, *, seed: int = 0,
                prone: bool = False) -> SpineScene:
    """Build the spine scene for a set of options.

    Parameters
    ----------
    options : SpineOptions, optional
    seed : int
        Seeds the small random parts (trabecular CT numbers ±6 HU, lesion shapes, bowel).
    prone : bool
        Put the table in front of the patient (prone positions).

    Returns
    -------
    SpineScene
    """
    opt = options or SpineOptions()
    b = _Builder(opt, seed)
    b.place_column()
    tr = _trunk(b)
    b.si_geometry()
    order = [lv.label for lv in SPINE_LEVELS] + [s[0] for s in _SACRAL]
    # discs first (bodies overwrite their margins)
    for up, lo in zip(order[:-1], order[1:], strict=True):
        b.disc(b.levels[up], b.levels[lo], fused=b.levels[up].region is Region.SACRAL)
    b.canal_contents()
    n_marrow = len(order) - 4
    for i, lab in enumerate(order):
        b.vertebra(b.levels[lab], min(i, n_marrow - 1), n_marrow)
    for iap_shape, iap_label in b.pending_iap:
        b.add_bone(iap_shape, iap_label)
    b.sacrum_alae()
    if opt.sacralised_l5:
        _sacralisation(b)
    b.ilium(tr)
    b.sacral_foramina()
    for lv in SPINE_LEVELS:
        if lv.region is Region.THORACIC:
            for side in ("left", "right"):
                b.rib(lv, side, tr)
    if opt.lumbar_rib:
        for side in ("left", "right"):
            b.rib(b.levels["L1"], side, tr, lumbar=True)
    table_p = _soft_tissue(b, tr)
    top = float(b.frames["T10"].point([0, 0, b.levels["T10"].height / 2])[2]) + 14.0
    bottom = float(b.frames["S4"].origin[2]) - 8.0
    _table(b, table_p if not prone else float(np.min(tr.centre_p - tr.semi_p)) - 2.0,
           top, bottom, prone=prone)
    if opt.look_alikes:
        _look_alikes(b)
    if opt.lesions:
        _standard_lesions(b)
    if opt.lytic_lesions:
        _lytic_lesions(b)
    bone_over = frozenset(b.bone_labels)
    lesion_paints = [Paint(shape=les.shape, label=les.label, only_over=bone_over)
                     for les in b.lesions]
    paints = b.soft + b.bone + b.look_paints + lesion_paints
    for les in b.lesions:
        b.bone_labels.add(les.label)
    for la in b.look_alikes:
        b.bone_labels.add(la.label)
    al, ap, cp = tr.at((top + bottom) / 2)
    return SpineScene(
        options=opt, labels=b.labels.items, paints=paints, vertebrae=b.vertebrae,
        discs=b.discs, ribs=b.ribs, lesions=b.lesions, look_alikes=b.look_alikes,
        sacroiliac_joints=b.si_joints, scan_top_s_mm=top, scan_bottom_s_mm=bottom,
        body_centre_lp_mm=(0.0, cp), table_p_mm=table_p,
        bone_labels=frozenset(b.bone_labels))


def _sacralisation(b: _Builder) -> None:
    """Bony bridges between the L5 transverse processes and the S1 alae."""
    f5, f1 = b.frames["L5"], b.frames["S1"]
    c_id, m_id = b.arch["L5"]
    for sign in (1.0, -1.0):
        top = f5.point([sign * 42.0, 4.0, -4.0])
        bottom = f1.point([sign * 40.0, 2.0, 8.0])
        chain = CapsuleChain(np.stack([top, bottom]), 8.0)
        b.add_bone(chain, c_id)
        b.add_bone(CapsuleChain(np.stack([top, bottom]), 6.4), m_id)


def render_labels(scene: SpineScene, raster: Raster, *, fine: bool | None = None,
                  labels: NDArray[np.uint16] | None = None) -> NDArray[np.uint16]:
    """Paint the scene (all steps, or only the fine/soft ones) on a raster block.

    Parameters
    ----------
    scene : SpineScene
    raster : Raster
    fine : bool or None
        Paint only the fine (True) or soft (False) steps; None paints all.
    labels : (S, R, C) ndarray of uint16, optional
        Start from these labels (modified in place); zeros (air) when omitted.

    Returns
    -------
    (S, R, C) ndarray of uint16
    """
    out = np.zeros(raster.shape, np.uint16) if labels is None else labels
    n = len(scene.labels)
    for step in scene.paints:
        if fine is None or step.fine == fine:
            paint(out, raster, step, lut_size=n)
    return out
