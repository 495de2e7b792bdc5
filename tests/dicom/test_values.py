"""Property-based tests of the value-reading layer (`bonelesion.dicom.values`).

Each typed parser is checked two ways: valid values written the way exporters write them
parse back to the number (truth from the generator, not from the parser), and arbitrary
bytes either parse or raise `InputError` naming where and what — never another exception.
"""

from __future__ import annotations

import math
import struct
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from bonelesion.dicom import values
from bonelesion.dicom.structure import HeaderStructureError, check_elements
from bonelesion.errors import DataQualityWarning, InputError

WHERE = "File /export/x.dcm, (0020,0011) SeriesNumber"
#: DS written with 16 characters keeps ≈ 10 significant digits.
DS_RTOL = 1e-9
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
spaces = st.sampled_from(["", " ", "  "])


def _assert_named(exc: InputError, raw: object) -> None:
    text = str(exc)
    assert text.startswith(WHERE), text
    assert "Potential fix" in text


# ------------------------------------------------------------------------------------ IS
@PROPERTY
@given(st.lists(ints, min_size=1, max_size=4), spaces, spaces, st.booleans())
def test_is_round_trips(numbers: list[int], lead: str, trail: str, plus: bool) -> None:
    text = "\\".join(f"{lead}{'+' if plus and n >= 0 else ''}{n}{trail}" for n in numbers)
    raw = text.encode() + (b" " if len(text) % 2 else b"")
    assert values.parse_is(raw, where=WHERE) == tuple(numbers)


@PROPERTY
@given(st.binary(max_size=40))
def test_is_parses_or_names_the_value(raw: bytes) -> None:
    try:
        parsed = values.parse_is(raw, where=WHERE)
    except InputError as exc:
        _assert_named(exc, raw)
        assert repr(raw[:10])[2:-1][:5] in str(exc) or raw == b""
    else:
        assert all(isinstance(v, int) and -(2**31) <= v < 2**31 for v in parsed)


@pytest.mark.parametrize("bad", [b"-rf", b"0x1", b"abc", b"1e3", b"nan", b"99999999999",
                                 "\uff11".encode(), b"1_000", b"1\\", b"1.5"])
def test_is_refuses_what_int_would_take_or_crash_on(bad: bytes) -> None:
    with pytest.raises(InputError, match=r"SeriesNumber: integer string \(IS\) .* is not"):
        values.parse_is(bad, where=WHERE)


# ------------------------------------------------------------------------------------ DS
@PROPERTY
@given(st.lists(finite, min_size=1, max_size=6), st.sampled_from([".6g", ".10g", ".3e", ".16g"]))
def test_ds_round_trips(numbers: list[float], spec: str) -> None:
    text = "\\".join(format(x, spec) for x in numbers)
    parsed = values.parse_ds(text.encode(), where=WHERE)
    for got, written in zip(parsed, text.split("\\"), strict=True):
        assert got == pytest.approx(float(written), rel=DS_RTOL, abs=0)


@PROPERTY
@given(st.binary(max_size=40))
def test_ds_parses_or_names_the_value(raw: bytes) -> None:
    try:
        parsed = values.parse_ds(raw, where=WHERE)
    except InputError as exc:
        _assert_named(exc, raw)
    else:
        assert all(math.isfinite(v) for v in parsed)


@pytest.mark.parametrize("bad", [b"nan", b"nan\\nan", b"inf", b"1e309", b"abc", b"0x10",
                                 b"1,5", b"1\\"])
def test_ds_refuses_non_numbers_and_non_finite(bad: bytes) -> None:
    with pytest.raises(InputError, match=r"decimal string \(DS\)"):
        values.parse_ds(bad, where=WHERE)


def test_ds_accepts_a_subnormal_the_geometry_check_refuses() -> None:
    """1e-320 is a valid DS: the parser reads it, plausibility refuses it as a spacing."""
    (tiny,) = values.parse_ds(b"1e-320")
    assert tiny > 0
    with pytest.raises(InputError, match=r"not a plausible spacing"):
        values.plausible_spacing_mm(tiny, what="SpacingBetweenSlices", where="File a.dcm")


# ----------------------------------------------------------------------- binary numbers
@PROPERTY
@given(st.sampled_from(["US", "SS", "UL", "SL"]), st.data(), st.booleans())
def test_binary_integers_round_trip(vr: str, data: st.DataObject, little: bool) -> None:
    fmt = values.BINARY_FORMATS[vr]
    bits = struct.calcsize("<" + fmt) * 8
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
    numbers = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=5))
    raw = struct.pack(("<" if little else ">") + fmt * len(numbers), *numbers)
    assert values.parse_binary(raw, vr, little=little) == tuple(numbers)


@PROPERTY
@given(st.sampled_from(["US", "UL", "FL", "FD", "SS"]), st.binary(max_size=33))
def test_binary_length_must_be_a_whole_number_of_values(vr: str, raw: bytes) -> None:
    size = struct.calcsize("<" + values.BINARY_FORMATS[vr])
    if len(raw) % size:
        with pytest.raises(InputError, match=rf"{vr} value of {len(raw)} bytes"):
            values.parse_binary(raw, vr, where=WHERE)
    else:
        assert len(values.parse_binary(raw, vr, where=WHERE)) == len(raw) // size


@PROPERTY
@given(st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=4))
def test_fd_round_trips(numbers: list[float]) -> None:
    raw = struct.pack("<" + "d" * len(numbers), *numbers)
    assert values.parse_binary(raw, "FD") == tuple(numbers)


# ------------------------------------------------------------------------------------ UI
uid_components = st.integers(min_value=0, max_value=10**12).map(str)


@PROPERTY
@given(st.lists(uid_components, min_size=2, max_size=8))
def test_ui_round_trips_with_nul_padding(parts: list[str]) -> None:
    uid = ".".join(parts)
    raw = uid.encode() + (b"\x00" if len(uid) % 2 else b"")
    assert values.parse_ui(raw, where=WHERE) == uid


@PROPERTY
@given(st.binary(max_size=80))
def test_ui_parses_or_names_the_value(raw: bytes) -> None:
    try:
        uid = values.parse_ui(raw, where=WHERE)
    except InputError as exc:
        _assert_named(exc, raw)
    else:
        assert uid is None or (uid.isascii() and uid.isprintable() and "/" not in uid
                               and " " not in uid)


@pytest.mark.parametrize("bad", [b"../../canary/pwn", b"/abs/path", b"1.2.\x00.3", b"\xff\xfe",
                                 b"1.2.3\n4", b"1 2"])
def test_ui_refuses_paths_controls_and_non_ascii(bad: bytes) -> None:
    with pytest.raises(InputError, match=r"UID \(UI\)"):
        values.parse_ui(bad, where=WHERE)


# ------------------------------------------------------------------------------------ CS
cs_token = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                          blacklist_characters="\\"), min_size=1, max_size=16)


@PROPERTY
@given(st.lists(cs_token, min_size=1, max_size=5))
def test_cs_round_trips(tokens: list[str]) -> None:
    assert values.parse_cs("\\".join(tokens).encode(), where=WHERE) == tuple(tokens)


@PROPERTY
@given(st.binary(max_size=40))
def test_cs_parses_or_names_the_value(raw: bytes) -> None:
    try:
        tokens = values.parse_cs(raw, where=WHERE)
    except InputError as exc:
        _assert_named(exc, raw)
    else:
        assert all(t.isascii() and t.isprintable() for t in tokens)


# ------------------------------------------------------------------- vendor text: ASCCONV
ascconv_key = st.from_regex(r"\As[A-Z][A-Za-z]{1,8}(\.[a-z][A-Za-z]{1,8}){0,2}\Z")


@PROPERTY
@given(st.dictionaries(ascconv_key, st.one_of(st.integers(-10**6, 10**6), finite), max_size=6),
       st.booleans())
def test_ascconv_numbers_round_trip(protocol: dict[str, float], as_hex: bool) -> None:
    lines = []
    for key, number in protocol.items():
        text = (hex(number) if as_hex and isinstance(number, int) and number >= 0
                else repr(number))
        lines.append(f"{key}\t = {text}\t# comment")
    raw = ("junk\n### ASCCONV BEGIN object=MrProt ###\n" + "\n".join(lines)
           + "\n### ASCCONV END ###\n").encode("latin-1")
    asc = values.parse_ascconv(raw, where=WHERE)
    for key, number in protocol.items():
        assert values.ascconv_number(asc, key, where=WHERE) == pytest.approx(float(number))


@PROPERTY
@given(st.binary(max_size=200))
def test_ascconv_parses_or_names_the_value(raw: bytes) -> None:
    asc = values.parse_ascconv(b"### ASCCONV BEGIN ###\nsSliceArray.lSize = " + raw
                               + b"\n### ASCCONV END ###", where=WHERE)
    try:
        number = values.ascconv_number(asc, "sSliceArray.lSize", where=WHERE)
    except InputError as exc:
        assert "sSliceArray.lSize" in str(exc) and WHERE in str(exc)
    else:
        assert number is None or math.isfinite(number)


def test_ascconv_nul_inside_a_value_is_named() -> None:
    asc = values.parse_ascconv(b"### ASCCONV BEGIN ###\nsSliceArray.lSize = 0x\x007\n"
                               b"### ASCCONV END ###", where=WHERE)
    with pytest.raises(InputError, match=r"ASCCONV sSliceArray.lSize: value '0x\\x007' is not"):
        values.ascconv_number(asc, "sSliceArray.lSize", where=WHERE)


# ---------------------------------------------------- vendor text: GE/Philips/UIH numbers
@PROPERTY
@given(st.lists(finite, min_size=1, max_size=5))
def test_private_number_tokens_round_trip(numbers: list[float]) -> None:
    raw = "\\".join(repr(x) for x in numbers).encode()
    assert values.parse_number_tokens(raw) == numbers


@PROPERTY
@given(st.binary(max_size=100))
def test_private_number_tokens_never_raise(raw: bytes) -> None:
    assert all(isinstance(v, float) for v in values.parse_number_tokens(raw))


# ------------------------------------------------------------------------------ accessors
def _header(elements: dict[int, tuple[str | None, bytes]], *, implicit: bool = False
            ) -> Dataset:
    ds = Dataset({BaseTag(t): RawDataElement(BaseTag(t), vr, len(v), v, 0, implicit, True)
                  for t, (vr, v) in elements.items()})
    values.bind_source(ds, "/export/x.dcm")
    return ds


@PROPERTY
@given(st.sampled_from(["IS", "DS", "US", "UL", "FD", "LO", "UN", "SQ", "OX", None]),
       st.binary(max_size=24))
def test_accessors_raise_only_input_errors_naming_file_and_element(vr: str | None,
                                                                   raw: bytes) -> None:
    ds = _header({0x00200011: (vr, raw), 0x00280008: (vr, raw), 0x0008103E: (vr, raw)},
                 implicit=vr is None)
    for call in (lambda: values.get_int(ds, "SeriesNumber"),
                 lambda: values.get_floats(ds, "NumberOfFrames"),
                 lambda: values.get_text(ds, "SeriesDescription"),
                 lambda: values.get_uid(ds, "SeriesNumber"),
                 lambda: values.items(ds, "SeriesNumber")):
        try:
            call()
        except InputError as exc:
            assert "/export/x.dcm" in str(exc) and "(00" in str(exc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values.get_int(ds, "SeriesNumber", strict=False)  # never raises
    assert all(issubclass(w.category, DataQualityWarning) for w in caught)


def test_lenient_accessor_warns_once_and_converts_once() -> None:
    ds = _header({0x00200011: ("IS", b"-rf ")})
    with pytest.warns(DataQualityWarning, match=r"x\.dcm, \(0020,0011\) SeriesNumber.*b'-rf '.*"
                                                  r"The value is ignored"):
        assert values.get_int(ds, "SeriesNumber", strict=False) is None
    with pytest.raises(InputError, match=r"SeriesNumber: integer string"):
        values.get_int(ds, "SeriesNumber")


@PROPERTY
@given(st.sampled_from(["IS", "DS", "US", "FD", "CS", "UI", "LO"]), st.binary(max_size=24),
       st.sampled_from(["ints", "floats", "text", "uid", "cs"]))
def test_values_shared_between_headers_equal_a_fresh_parse(vr: str, raw: bytes,
                                                           kind: str) -> None:
    """Values parsed from equal bytes in another header (the process-wide memo) are the
    ones the parsers give; an invalid value names its own file in every header."""
    read = {"ints": values.get_ints, "floats": values.get_floats, "text": values.get_text,
            "uid": values.get_uid, "cs": values.get_cs}[kind]
    outcomes = []
    values._PARSED.clear()
    for name in ("first", "second"):
        ds = _header({0x00200011: (vr, raw)})
        values.bind_source(ds, f"/export/{name}.dcm")
        try:
            outcomes.append(read(ds, "SeriesNumber"))
        except InputError as exc:
            assert f"/export/{name}.dcm" in str(exc)
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]


def test_a_number_where_a_sequence_belongs_is_named() -> None:
    ds = _header({0x52009230: ("US", b"\x02\x00")})
    with pytest.raises(InputError, match=r"\(5200,9230\) PerFrameFunctionalGroupsSequence: .*"
                                         r"not a sequence"):
        values.items(ds, "PerFrameFunctionalGroupsSequence")


def test_multivalued_spacing_is_refused_where_one_value_is_needed() -> None:
    ds = _header({0x00280030: ("DS", b"nan\\nan ")})
    with pytest.raises(InputError, match=r"PixelSpacing: decimal string \(DS\) b'nan\\\\nan"):
        values.get_floats(ds, "PixelSpacing", count=2)


# ------------------------------------------------------------------- structure: iterative
def _nested(depth: int) -> bytes:
    sq = b"\x09\x00\x01\x10SQ\x00\x00\xff\xff\xff\xff"
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return (sq + item) * depth + close * depth


@pytest.mark.parametrize("depth", [10, 64])
def test_nesting_within_the_limit_is_walked(depth: int) -> None:
    buf = _nested(depth)
    end, pixel = check_elements(buf, 0, len(buf), implicit=False, little=True, where="x.dcm")
    assert end == len(buf) and pixel is None


@pytest.mark.parametrize("depth", [65, 200, 100_000])
def test_deep_nesting_is_refused_without_recursion(depth: int) -> None:
    buf = _nested(depth)
    with pytest.raises(HeaderStructureError, match=r"x\.dcm: sequences nested deeper than 64"):
        check_elements(buf, 0, len(buf), implicit=False, little=True, where="x.dcm")


@PROPERTY
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_structure_check_raises_only_its_own_error(raw: bytes, implicit: bool,
                                                   little: bool) -> None:
    try:
        end, _ = check_elements(raw, 0, len(raw), implicit=implicit, little=little,
                                where="x.dcm")
    except HeaderStructureError as exc:
        assert str(exc).startswith("File x.dcm:") and "(byte " in str(exc)
    else:
        assert end <= len(raw)


def test_length_beyond_the_file_is_refused_before_allocating() -> None:
    huge = b"\x08\x00\x3e\x10LT\xf0\xff" + b"x" * 16  # LT of 65520 bytes, 16 present
    with pytest.raises(HeaderStructureError, match=r"\(0008,103E\) declares 65520 bytes but "
                                                   r"only 16 are left") as info:
        check_elements(huge, 0, len(huge), implicit=False, little=True, where="x.dcm")
    assert info.value.truncated
