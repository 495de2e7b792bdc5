"""Mutation families: bytes of one file, and the file system of an export.

Every mutation is a pure function of (bytes, layout, ``random.Random``), so a case is
reproduced from the campaign seed and its index alone. Byte-level families know nothing
of DICOM; structure-aware ones use `fuzz.layout` to hit length fields, VRs and typed
values, and keep the enclosing lengths consistent so that the damage lands where intended.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from fuzz.layout import LONG_VRS, UNDEFINED, VR_CODES, Element, Layout

__all__ = ["BYTE_FAMILIES", "FS_FAMILIES", "mutate_bytes", "mutate_export", "CANARY"]

#: Folder (relative to the case folder) that no run may ever create: hostile values point
#: into it with ``../`` and absolute paths.
CANARY = "canary"

# Elements that matter to the reader, by tag (mutated more often than the rest).
_HOT_TAGS = {
    0x00280010, 0x00280011, 0x00280008, 0x00280100, 0x00280101, 0x00280103, 0x00280002,
    0x00200032, 0x00200037, 0x00280030, 0x00180088, 0x00180050, 0x00281052, 0x00281053,
    0x00200011, 0x00200013, 0x00200012, 0x00180086, 0x00180081, 0x0020000E, 0x0020000D,
    0x00080018, 0x00200052, 0x00020010, 0x00080008, 0x00080060, 0x00080070, 0x0008103E,
    0x00080005, 0x00080016, 0x00020002, 0x00020003, 0x00291010, 0x00291020, 0x00291120,
    0x0019100A, 0x0019100C, 0x0019100E, 0x00431039, 0x001910BB, 0x001910BC, 0x001910BD,
    0x00431030, 0x20011003, 0x2005140F, 0x2005100E, 0x00651050, 0x00651051, 0x00651004,
    0x00651009, 0x00651037, 0x52009229, 0x52009230, 0x00189087, 0x00189089, 0x00209157,
    0x00189082, 0x00200100, 0x00209128, 0x00209056, 0x00181120, 0x00280004, 0x00189076,
    0x00180087, 0x00180084, 0x00280009, 0x00200105, 0x00200020, 0x00181312,
}

_HOSTILE_TEXT: dict[str, tuple[bytes, ...]] = {
    "IS": (b"-rf", b"0x1", b"abc", b"1e3", b"99999999999999999999", b"-0", b"", b" ", b"1\\2\\3",
           b"\x00", b"nan", b"+5", "\uff11".encode(), b"4294967296", b"-2147483649", b"1.5",
           b"\\", b"0"),
    "DS": (b"nan", b"nan\\nan", b"inf", b"-inf", b"1e-320", b"1e308", b"1e309", b"-0", b"abc",
           b"0", b"1\\", b"\\", b"0x10", b"1,5", b"1e-5\\1e-320", b"0\\0\\0", b"-1\\-1",
           b"1e-320\\1e-320", b"3\\nan\\1", b"1" * 64, b"\x00"),
    "UI": (b"", b"../../canary/pwn", b"/tmp/../canary/pwn", b"1.2.\x00.3", b"1.2.3" * 30,
           b"\xff\xfe\xfd", b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.2",
           b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.5", b"1.2.840.10008.5.1.4.1.1.4",
           b"1.2.840.10008.1.3.10", b"0.0", b"..", b"%s%n%x", b"1.2.3\n4"),
    "CS": (b"", b"\x00", b"MOSAIC", b"ORIGINAL\\PRIMARY\\MOSAIC", b"DERIVED\\PRIMARY\\VFRAME",
           b"mosaic", b"A" * 300, b"\\\\\\", b"ROW", b"COL", b"\xff\xfe", b"CT", b"MR",
           b"ISO_IR 192", b"ISO 2022 IR 87", b"ISO_IR 999", b"\x1b$B"),
    "TEXT": (b"../../canary/pwn", b"/canary/pwn", b"\x00\x00", b"\xff\xfe\xfd\xfc", b"\x1b$B\x1b(B",
             b"A" * 4000, b"%s%s%s%n", b"\n\r\t", "\u202e\u0000".encode(), b"a\\b\\c",
             b"### ASCCONV BEGIN ###\nsSliceArray.lSize = 0x7\x00\nsSliceArray.asSlice[0]."
             b"sNormal.dTra = nan\n### ASCCONV END ###"),
}

_ASCII_VRS = {"IS", "DS", "UI", "CS", "AS", "DA", "TM", "DT", "AE"}
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN", "UR"}
_NUMBER_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_INTERESTING_U32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                    0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
_SYNTAXES = (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2",
             b"1.2.840.10008.1.2.1.99", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.57",
             b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.4.90",
             b"1.2.840.10008.1.2.5", b"1.2.3.4.5.6", b"", b"1.2.840.10008.1.2.4.201")


def _pad(value: bytes, vr: str) -> bytes:
    if len(value) % 2 == 0:
        return value
    return value + (b"\x00" if vr in ("UI", "OB", "UN") else b" ")


def _put_length(buf: bytearray, offset: int, size: int, little: bool, value: int) -> None:
    order = "<" if little else ">"
    if size == 2:
        struct.pack_into(order + "H", buf, offset, max(0, min(value, 0xFFFF)))
    else:
        struct.pack_into(order + "L", buf, offset, value & 0xFFFFFFFF)


def _read_length(buf: bytes | bytearray, offset: int, size: int, little: bool) -> int:
    return int.from_bytes(buf[offset:offset + size], "little" if little else "big")


def _group_length_fix(buf: bytearray, lay: Layout, delta: int) -> None:
    for el in lay.elements:
        if el.tag == 0x00020000 and el.length == 4:
            old = struct.unpack_from("<L", buf, el.value_offset)[0]
            struct.pack_into("<L", buf, el.value_offset, (old + delta) & 0xFFFFFFFF)


def replace_element(data: bytes, lay: Layout, el: Element, header_and_value: bytes) -> bytes:
    """Replace a whole element (header + value) and fix the enclosing defined lengths."""
    delta = len(header_and_value) - (el.end - el.offset)
    buf = bytearray(data[:el.offset] + header_and_value + data[el.end:])
    for length_offset, size, little in el.containers:
        if length_offset < el.offset:
            old = _read_length(buf, length_offset, size, little)
            if old != UNDEFINED:
                _put_length(buf, length_offset, size, little, old + delta)
    if el.in_meta:
        _group_length_fix(buf, lay, delta)
    return bytes(buf)


def _element_bytes(el: Element, lay: Layout, vr: str, value: bytes, *,
                   length: int | None = None) -> bytes:
    """Encode an element with ``el``'s tag in the file's encoding."""
    order = "<" if el.little else ">"
    tag = struct.pack(order + "HH", el.tag >> 16, el.tag & 0xFFFF)
    n = len(value) if length is None else length
    implicit = lay.implicit and not el.in_meta
    if implicit:
        return tag + struct.pack(order + "L", n & 0xFFFFFFFF) + value
    if vr in LONG_VRS or len(value) > 0xFFFF:
        vr = vr if vr in LONG_VRS else "UN"
        return tag + vr.encode() + b"\x00\x00" + struct.pack(order + "L", n & 0xFFFFFFFF) + value
    return tag + vr.encode() + struct.pack(order + "H", n & 0xFFFF) + value


def _pick(lay: Layout, rng: random.Random, predicate: Callable[[Element], bool]
          ) -> Element | None:
    found = [el for el in lay.elements if predicate(el)]
    if not found:
        return None
    hot = [el for el in found if el.tag in _HOT_TAGS]
    if hot and rng.random() < 0.7:
        return rng.choice(hot)
    return rng.choice(found)


# --------------------------------------------------------------------- byte families
def bitflip(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    n = rng.choice((1, 1, 2, 4, 8, 32))
    limit = len(buf) if rng.random() < 0.3 else min(len(buf), 4096)
    for _ in range(n):
        i = rng.randrange(limit)
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf), f"bitflip x{n}"


def byte(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    n = rng.choice((1, 2, 4, 16))
    limit = len(buf) if rng.random() < 0.3 else min(len(buf), 4096)
    for _ in range(n):
        i = rng.randrange(limit)
        buf[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x5C, rng.randrange(256)))
    return bytes(buf), f"byte x{n}"


def truncate(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.4 and lay is not None:
        pixel = [el for el in lay.elements if el.tag == 0x7FE00010 and el.depth == 0]
        if pixel:  # inside the pixel data: a copy interrupted late
            el = pixel[0]
            cut = rng.randrange(el.value_offset, max(el.value_offset + 1, len(data)))
            return data[:cut], f"truncate in pixel data at {cut}"
    if r < 0.7 and lay is not None and lay.elements:
        el = rng.choice(lay.elements)
        cut = rng.randrange(el.offset, max(el.offset + 1, el.end))
        return data[:cut], f"truncate inside {el.tag:08X} at {cut}"
    cut = rng.randrange(len(data))
    return data[:cut], f"truncate at {cut}"


def splice(data: bytes, lay: Layout | None, rng: random.Random, other: bytes = b""
           ) -> tuple[bytes, str]:
    if not other:
        other = data
    a = rng.randrange(len(data))
    b = rng.randrange(len(other))
    return data[:a] + other[b:], f"splice {a}+{b}"


# --------------------------------------------------------------- structure families
def length(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    if lay is None or not lay.elements:
        return bitflip(data, lay, rng)
    el = _pick(lay, rng, lambda e: True)
    assert el is not None
    buf = bytearray(data)
    choice = rng.choice(("zero", "odd", "plus", "minus", "undefined", "beyond", "interesting"))
    old = el.length
    value = {
        "zero": 0, "odd": old | 1, "plus": old + rng.choice((1, 2, 8, 256)),
        "minus": max(0, old - rng.choice((1, 2, 8))), "undefined": UNDEFINED,
        "beyond": len(data) - el.value_offset + rng.choice((1, 2, 100, 4096)),
        "interesting": rng.choice(_INTERESTING_U32),
    }[choice]
    _put_length(buf, el.length_offset, el.length_size, el.little, value)
    return bytes(buf), f"length {el.tag:08X} {old}->{value} ({choice})"


def huge_length(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    if lay is None or not lay.elements:
        return bitflip(data, lay, rng)
    el = _pick(lay, rng, lambda e: e.length_size == 4 or e.vr_offset is None)
    if el is None:
        el = rng.choice(lay.elements)
    buf = bytearray(data)
    value = rng.choice((0x7FFFFFF0, 0xFFFFFFF0, 0xFFFFFFFE, 0x40000000, len(data) * 1000,
                        0x10000000))
    _put_length(buf, el.length_offset, el.length_size, el.little, value)
    return bytes(buf), f"huge length {el.tag:08X} -> {value:#x}"


def vr_swap(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    if lay is None:
        return bitflip(data, lay, rng)
    el = _pick(lay, rng, lambda e: e.vr_offset is not None)
    if el is None or el.vr_offset is None:
        return bitflip(data, lay, rng)
    # same header size keeps the rest of the file parseable; or an unknown / odd VR
    same = [v for v in VR_CODES if (v in LONG_VRS) == (el.vr in LONG_VRS)]
    new = rng.choice((*same, "OX", "\x00\x00", "SQ", "UN", "ox", "  "))
    buf = bytearray(data)
    buf[el.vr_offset:el.vr_offset + 2] = new.encode("latin-1")
    return bytes(buf), f"vr {el.tag:08X} {el.vr}->{new!r}"


def value(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    """Replace a typed value (IS/DS/UI/CS, text, binary numbers) with a hostile one."""
    if lay is None or not lay.elements:
        return byte(data, lay, rng)
    el = _pick(lay, rng, lambda e: e.vr in _ASCII_VRS | _TEXT_VRS | set(_NUMBER_VRS)
               or e.tag in _HOT_TAGS and e.vr not in ("SQ", ""))
    if el is None:
        return byte(data, lay, rng)
    vr = el.vr
    if vr in _NUMBER_VRS:
        fmt = _NUMBER_VRS[vr]
        order = "<" if el.little else ">"
        choice = rng.choice(("odd", "empty", "extreme", "many"))
        if choice == "odd":
            new = bytes([rng.randrange(256)])
        elif choice == "empty":
            new = b""
        elif choice == "many":
            new = struct.pack(order + fmt * 3, *([0] * 3))
        elif fmt in "fd":
            new = struct.pack(order + fmt, rng.choice((float("nan"), float("inf"), -0.0, 1e-320
                                                       if fmt == "d" else 1e-40, -1e30)))
        else:
            new = struct.pack(order + fmt.upper(), rng.choice((0, 1, 0xFFFF, 0x8000)) & (
                0xFFFF if fmt.upper() == "H" else 0xFFFFFFFF))
    else:
        family = vr if vr in _HOSTILE_TEXT else "TEXT"
        if el.tag == 0x00020010:
            new = rng.choice(_SYNTAXES)
        else:
            new = rng.choice(_HOSTILE_TEXT[family] + _HOSTILE_TEXT["TEXT"][:3])
        new = _pad(new, vr)
    encoded = _element_bytes(el, lay, vr or "UN", new)
    return replace_element(data, lay, el, encoded), f"value {el.tag:08X} {vr} -> {new[:40]!r}"


def syntax_swap(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    if lay is None:
        return byte(data, lay, rng)
    ts = [el for el in lay.elements if el.tag == 0x00020010]
    if not ts:
        return value(data, lay, rng)
    new = _pad(rng.choice(_SYNTAXES), "UI")
    return (replace_element(data, lay, ts[0], _element_bytes(ts[0], lay, "UI", new)),
            f"transfer syntax -> {new!r}")


def nul_non_utf8(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    if lay is None or not lay.elements:
        return byte(data, lay, rng)
    el = _pick(lay, rng, lambda e: e.vr in _ASCII_VRS | _TEXT_VRS)
    if el is None:
        return byte(data, lay, rng)
    old = data[el.value_offset:el.value_offset + el.length]
    junk = rng.choice((b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\x1b"))
    at = rng.randrange(len(old) + 1)
    new = _pad(old[:at] + junk + old[at:], el.vr)
    encoded = _element_bytes(el, lay, el.vr, new)
    return replace_element(data, lay, el, encoded), f"nul/non-utf8 {el.tag:08X} {junk!r}"


def deep_nesting(data: bytes, lay: Layout | None, rng: random.Random) -> tuple[bytes, str]:
    """Insert an undefined-length private sequence nested ``depth`` levels deep."""
    if lay is None or lay.deflated:
        return byte(data, lay, rng)
    depth = rng.choice((64, 200, 500, 2000, 20000))
    little = lay.little
    order = "<" if little else ">"
    implicit = lay.implicit

    def tag(g: int, e: int) -> bytes:
        return struct.pack(order + "HH", g, e)

    und = struct.pack(order + "L", UNDEFINED)
    zero = struct.pack(order + "L", 0)
    sq_head = tag(0x0009, 0x1001) + (und if implicit else b"SQ\x00\x00" + und)
    item = tag(0xFFFE, 0xE000) + und
    body = (sq_head + item) * depth + (tag(0xFFFE, 0xE00D) + zero + tag(0xFFFE, 0xE0DD) + zero
                                       ) * depth
    creator_value = b"FUZZ"
    creator = tag(0x0009, 0x0010) + (struct.pack(order + "L", 4) if implicit else
                                     b"LO" + struct.pack(order + "H", 4)) + creator_value
    top = [el for el in lay.elements if el.depth == 0 and not el.in_meta]
    after8 = [el for el in top if el.tag >> 16 <= 0x0008]
    at = after8[-1].end if after8 else (top[0].offset if top else len(data))
    if rng.random() < 0.3:
        sqs = [el for el in lay.elements if el.vr == "SQ" and el.length == UNDEFINED]
        if sqs:  # nest inside an existing undefined-length sequence's first item
            el = rng.choice(sqs)
            at = el.value_offset + 8
            return data[:at] + creator + body + data[at:], f"deep nesting {depth} in {el.tag:08X}"
    return data[:at] + creator + body + data[at:], f"deep nesting {depth}"


def wrong_type_sequence(data: bytes, lay: Layout | None, rng: random.Random
                        ) -> tuple[bytes, str]:
    """A sequence where a number or text is (and the reverse)."""
    if lay is None or not lay.elements:
        return byte(data, lay, rng)
    sqs = [el for el in lay.elements if el.vr == "SQ"]
    if sqs and rng.random() < 0.7:
        hot = [el for el in sqs if el.tag in _HOT_TAGS]
        el = rng.choice(hot if hot and rng.random() < 0.7 else sqs)
        vr, new = rng.choice((("US", b"\x02\x00"), ("LO", b"abc "), ("FD", b"\x00" * 8),
                              ("UN", b"\x01\x02\x03\x04"), ("IS", b"12"), ("OB", b"")))
        encoded = _element_bytes(el, lay, vr, new)
        return replace_element(data, lay, el, encoded), f"sequence {el.tag:08X} -> {vr}"
    el = _pick(lay, rng, lambda e: e.vr not in ("SQ", "") and not e.in_meta
               and e.tag != 0x7FE00010)
    if el is None:
        return byte(data, lay, rng)
    order = "<" if el.little else ">"
    # a one-item sequence holding one junk element
    inner = struct.pack(order + "HH", 0x0008, 0x0060) + (
        struct.pack(order + "L", 2) if lay.implicit else b"CS" + struct.pack(order + "H", 2)) + b"CT"
    seq = struct.pack(order + "HH", 0xFFFE, 0xE000) + struct.pack(order + "L", len(inner)) + inner
    encoded = _element_bytes(el, lay, "SQ", seq)
    return replace_element(data, lay, el, encoded), f"{el.tag:08X} {el.vr} -> SQ"


BYTE_FAMILIES: dict[str, Callable[[bytes, Layout | None, random.Random], tuple[bytes, str]]] = {
    "bitflip": bitflip,
    "byte": byte,
    "truncate": truncate,
    "length": length,
    "huge_length": huge_length,
    "vr_swap": vr_swap,
    "value": value,
    "syntax_swap": syntax_swap,
    "nul_non_utf8": nul_non_utf8,
    "deep_nesting": deep_nesting,
    "wrong_type_sequence": wrong_type_sequence,
    "splice": splice,
}


def mutate_bytes(data: bytes, lay: Layout | None, rng: random.Random, family: str
                 ) -> tuple[bytes, str]:
    """Apply one byte family; the result is never empty unless truncation made it so."""
    return BYTE_FAMILIES[family](data, lay, rng)


# ------------------------------------------------------------------ file-system families
def walk_files(root: Path) -> list[Path]:
    """Regular files under ``root`` (links not followed), iteratively: any depth."""
    out: list[Path] = []
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                out.append(Path(entry.path))
    return sorted(out)


_files = walk_files


def _fresh(folder: Path, name: str) -> Path:
    """``folder / name``, or with a suffix when the seed already has such an entry."""
    path = folder / name
    k = 2
    while os.path.lexists(path):
        path = folder / f"{name}_{k}"
        k += 1
    return path


def named_pipe(export: Path, rng: random.Random) -> str:
    pipe = _fresh(export, rng.choice(("IM9999.dcm", "pipe", "DICOMDIR")))
    os.mkfifo(pipe)
    if rng.random() < 0.5:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(_fresh(export, "sock.dcm")))
        finally:
            sock.close()
    return f"named pipe {pipe.name}"


def symlink_loop(export: Path, rng: random.Random) -> str:
    sub = _fresh(export, "loop")
    sub.mkdir()
    os.symlink("..", sub / "up")
    os.symlink(".", sub / "self")
    self_link = _fresh(export, "self_file")
    os.symlink(self_link.name, self_link)  # a link to itself
    a, b = _fresh(export, "a_link"), _fresh(export, "b_link")
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    os.symlink("/nonexistent/target", _fresh(export, "broken.dcm"))
    if rng.random() < 0.5:
        os.symlink(os.fspath(export.resolve()), sub / "absolute_root")
    files = _files(export)
    if files:
        os.symlink(files[0].resolve(), _fresh(export, "second_path_to_file.dcm"))
    return "symlink loops"


def non_utf8_name(export: Path, rng: random.Random) -> str:
    files = _files(export)
    if not files:
        return "no file to rename"
    target = rng.choice(files)
    raw = rng.choice((b"\xff\xfe\xed.dcm", b"caf\xe9.dcm", b"\xed\xa0\x80", b"-rf --db x",
                      b"new\nline.dcm", b"back\\slash", b"x" * 250, b"..dcm", b"'\"$(id).dcm"))
    new = os.fsencode(target.parent) + b"/" + raw
    os.rename(os.fsencode(target), new)
    if rng.random() < 0.5:  # and a folder with such a name
        folder = os.fsencode(export) + b"/" + b"\xfe\xff dir"
        os.mkdir(folder)
        others = [f for f in _files(export) if f != target]
        if others:
            moved = rng.choice(others)
            os.rename(os.fsencode(moved), folder + b"/" + os.fsencode(moved.name))
    return f"non-UTF-8 / hostile name {raw[:20]!r}"


def deep_folders(export: Path, rng: random.Random) -> str:
    files = _files(export)
    if not files:
        return "no file to move"
    depth = rng.choice((300, 1100))
    folder = _fresh(export, "d")
    os.mkdir(folder)
    for _ in range(depth - 1):  # one level at a time: os.makedirs recurses
        folder = folder / "d"
        os.mkdir(folder)
    target = rng.choice(files)
    shutil.move(os.fspath(target), os.fspath(folder / target.name))
    return f"file {depth} folders deep"


def duplicate_truncated(export: Path, rng: random.Random) -> str:
    files = _files(export)
    if not files:
        return "no file to duplicate"
    target = rng.choice(files)
    data = target.read_bytes()
    cut = rng.randrange(len(data) // 2, len(data)) if rng.random() < 0.8 else len(data)
    copy = _fresh(target.parent, target.name + "_copy")
    copy.write_bytes(data[:cut])
    return f"duplicate of {target.name} cut at {cut} of {len(data)}"


def empty_and_junk(export: Path, rng: random.Random) -> str:
    _fresh(export, "empty.dcm").write_bytes(b"")
    _fresh(export, "notes.txt").write_text("not DICOM\n")
    _fresh(export, "folder.dcm").mkdir()
    _fresh(export, "DICM_only").write_bytes(b"\x00" * 128 + b"DICM")
    return "empty, text and look-alike entries"


FS_FAMILIES: dict[str, Callable[[Path, random.Random], str]] = {
    "named_pipe": named_pipe,
    "symlink_loop": symlink_loop,
    "non_utf8_name": non_utf8_name,
    "deep_folders": deep_folders,
    "duplicate_truncated": duplicate_truncated,
    "empty_and_junk": empty_and_junk,
}


def mutate_export(export: Path, rng: random.Random, family: str) -> str:
    """Apply one file-system family to an export folder; return its description."""
    return FS_FAMILIES[family](export, rng)
