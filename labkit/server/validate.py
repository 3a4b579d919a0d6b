"""Input checks shared by the route families, meaning exactly what their OpenAPI schemas say.

- `json_integer`: a JSON value that JSON Schema calls an integer (3 and 3.0, not true, not 3.5).
- `query_integer` / `query_number`: a query parameter written as a plain decimal number; an empty
  value, a sign, spaces, `nan`, `inf` or `1_000` are refused with 422 naming the parameter.
- `NOT_BLANK` / `CONTROL_CHARS`: regex classes used both by the server's text checks and by the
  OpenAPI `pattern`s, spelled out so that they mean the same in Python, ECMA and Rust regex.
- `load_json`: the one JSON reader of every entry point (HTTP bodies and WebSocket messages): strict
  JSON (no NaN/Infinity) nested at most `MAX_JSON_DEPTH` levels, with numbers of sane length (see
  `MAX_JSON_INT_DIGITS`, `MAX_JSON_FLOAT_CHARS`); anything else raises `JSONInputError`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from .problem import ProblemError

NOT_BLANK = r"[^\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""Matches a character that is not whitespace (Python's str.isspace set, spelled out): a title, tag
or chat text must contain one."""

CONTROL_CHARS = r"[\x00-\x1f\x7f-\x9f]"
"""Matches a control character (Unicode category Cc)."""

CONTROL_CHARS_BUT_NEWLINE_TAB = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
"""Matches a control character other than newline and tab (allowed in multi-line text)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects any JSON input may have (the lab's own documents need 3)."""

MAX_JSON_INT_DIGITS = 30
"""Most digits (sign not counted) a JSON integer may have. The lab's largest numbers are 2**63 (19
digits); past Python's int-digit limit (4,300) int() raises a ValueError json.loads lets through (a
500), and below it a long integer still costs quadratic time to convert."""

MAX_JSON_FLOAT_CHARS = 40
"""Longest text a JSON number with a fraction or exponent may be written in: a double holds 17
significant digits, so more than this is no data, only work for the parser."""


class JSONInputError(ValueError):
    """The input is not JSON the lab accepts; the message says why, in one line for a person."""


def _reject_constant(name: str):
    raise JSONInputError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_JSON_INT_DIGITS:
        raise JSONInputError(f"a number has {digits} digits; integers may have at most "
                             f"{MAX_JSON_INT_DIGITS}")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_JSON_FLOAT_CHARS:
        raise JSONInputError(f"a number is written in {len(text)} characters; numbers with a fraction "
                             f"or exponent may take at most {MAX_JSON_FLOAT_CHARS}")
    value = float(text)
    if math.isinf(value):
        raise JSONInputError(f"the number {text} is too large for a double (it would be infinity)")
    return value


def _depth_over(value, limit: int) -> bool:
    """True when `value` nests arrays/objects deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def load_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH):
    """Parse `data` as strict JSON nested at most `max_depth` levels; `JSONInputError` otherwise.

    Bytes must be UTF-8. NaN and Infinity are refused (they are not JSON), and so are integers of more
    than MAX_JSON_INT_DIGITS digits and other numbers longer than MAX_JSON_FLOAT_CHARS characters or
    too large for a double. Over-deep input is
    refused whether Python's parser gives up on it (RecursionError) or not, so no handler ever walks
    a structure deep enough to exhaust the stack.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int,
                           parse_float=_parse_float)
    except RecursionError:
        value, too_deep = None, True
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    else:
        too_deep = _depth_over(value, max_depth)
    if too_deep:
        raise JSONInputError(f"nested deeper than {max_depth} levels (the lab's limit)")
    return value


_INTEGER = re.compile(r"0|[1-9][0-9]{0,18}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,18})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,4})?")


def json_integer(value) -> int | None:
    """`value` as an int when JSON Schema calls it an integer (3 or 3.0; never a bool), else None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def query_integer(raw: str, name: str, low: int, high: int) -> int:
    """A whole number written in plain decimal digits (no sign, spaces or leading zeros) within
    [low, high]; 422 naming `name` otherwise."""
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ProblemError(
            422, f"{name} must be a whole number from {low} to {high}, got {raw[:50]!r}",
            errors=[{"field": name, "message": f"must be an integer in [{low}, {high}]"}],
        )
    return int(raw)


def query_number(raw: str, name: str, low: float, high: float) -> float:
    """A decimal number (JSON number syntax: `2`, `0.5`, `1e-3`) within [low, high]; 422 naming
    `name` otherwise."""
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not low <= value <= high:
        raise ProblemError(
            422, f"{name} must be a number from {low:g} to {high:g}, got {raw[:50]!r}",
            errors=[{"field": name, "message": f"must be a number in [{low:g}, {high:g}]"}],
        )
    return value


# -- CSV exports ---------------------------------------------------------------------------------
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may read a cell as a formula by (OWASP, "CSV Injection")."""


def csv_cell(value):
    """`value` safe for a CSV cell a spreadsheet will open: a string starting with = + - @ TAB or CR
    gets a leading single quote, so it shows as the text it is instead of running as a formula
    (`=HYPERLINK(...)`, `=cmd|...`); anything else (numbers included) is returned unchanged."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


# -- names that cannot impersonate (chat members; see labkit/server/chat.py) ---------------------
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
"""Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters a renderer
draws as nothing, such as U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER, U+FEFF and the Hangul fillers
U+3164 / U+FFA0. Python's unicodedata has no such property, so the ranges are spelled out."""

BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
"""Explicit embeddings, overrides and isolates: they re-order the text around them (a right-to-left
override reverses the rest of the line), so a chat text loses them before it is stored."""


def _name_forbidden_class() -> str:
    """A regex class of what a name may not hold: control (Cc) and format (Cf, which includes every
    bidi control) characters, line and paragraph separators, the default-ignorable ranges and U+2800
    BRAILLE PATTERN BLANK (drawn as empty space). BMP characters are written as \\uXXXX (Python, ECMA
    and Rust regex read them alike); the few astral ones literally. Surrogates are left out (no Rust
    regex may hold them): `chat_name` refuses a lone one itself."""
    points = {0x2800}
    for low, high in DEFAULT_IGNORABLE:
        points.update(range(low, high + 1))
    for plane in (0x0000, 0x10000, 0xE0000):
        points.update(cp for cp in range(plane, plane + 0x10000)
                      if unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp"))
    points -= set(range(0xD800, 0xE000))

    def spell(cp: int) -> str:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)

    ranges, ordered = [], sorted(points)
    start = prev = ordered[0]
    for cp in ordered[1:] + [None]:
        if cp is not None and cp == prev + 1:
            prev = cp
            continue
        ranges.append(spell(start) if start == prev else f"{spell(start)}-{spell(prev)}")
        if cp is not None:
            start = prev = cp
    return "[" + "".join(ranges) + "]"


NAME_FORBIDDEN_UNICODE = '14.0.0'
NAME_FORBIDDEN_AS_COMPUTED = (
    '[\\u0000-\\u001f\\u007f-\\u009f\\u00ad\\u034f\\u0600-\\u0605\\u061c\\u06dd\\u070f'
    '\\u0890-\\u0891\\u08e2\\u115f-\\u1160\\u17b4-\\u17b5\\u180b-\\u180f\\u200b-\\u200f'
    '\\u2028-\\u202e\\u2060-\\u206f\\u2800\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufffb'
    '\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a'
    '\U000e0000-\U000e0fff]'
)
"""_name_forbidden_class() as computed with Unicode 14.0.0 (Python 3.11's unicodedata): walking
every code point of three planes takes about 20 ms, a tenth of `lk.start()`, so a Python with that
Unicode version uses the stored class (tests/test_names.py recomputes it) and another computes it."""
NAME_FORBIDDEN = (NAME_FORBIDDEN_AS_COMPUTED if unicodedata.unidata_version == NAME_FORBIDDEN_UNICODE
                  else _name_forbidden_class())
"""Matches a character no chat name may hold (see _name_forbidden_class); also the OpenAPI `not`
pattern of a name, so the document says what the server refuses."""
_NAME_FORBIDDEN = re.compile(NAME_FORBIDDEN)


def chat_name(raw, limit: int = 32) -> tuple[str | None, list[dict]]:
    """A chat name that cannot impersonate anyone, or the reasons it is refused.

    Refused: a name with a control, format (zero-width space, word joiner, BOM, every bidi control
    such as the right-to-left override), invisible (Hangul filler, braille blank) or lone surrogate
    character, or with nothing but spaces. Otherwise it is NFKC-normalised (full-width and ligature
    forms become plain letters), trimmed, and enforced as RFC 8265 usernames: each space-separated
    part is a PRECIS UsernameCasePreserved string (`precis-i18n`: letters and digits of any script
    and printable ASCII; no symbols, no compatibility forms, the bidi rule), parts joined by one
    space (RFC 8265 section 3.5). `limit` counts the characters as sent. Whether it clashes with a
    name someone holds is `name_keys`'s to say; whether it is reserved, `reserved_word`'s.
    """
    def refuse(message: str):
        return None, [{"field": "name", "message": message}]

    if not isinstance(raw, str):
        return refuse("a string is required")
    if any(unicodedata.category(ch) == "Cs" for ch in raw):
        return refuse("a lone surrogate is not a character")
    if len(raw) > limit:
        return refuse(f"at most {limit} characters")
    name = unicodedata.normalize("NFKC", raw).strip()
    for text in (raw, name):
        if bad := _NAME_FORBIDDEN.search(text):
            ch = bad.group()
            return refuse(f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}) is invisible or "
                          "changes how text is laid out; names may not hold it")
    if not re.search(NOT_BLANK, name):
        return refuse("empty: say who you are")
    try:
        parts = [_precis("UsernameCasePreserved", part) for part in name.split()]
    except UnicodeEncodeError as exc:
        ch = exc.object[exc.start] if exc.start < len(exc.object) else ""
        where = f"U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')})" if ch else "this name"
        return refuse(f"{where} is not allowed in a username (RFC 8265: {exc.reason})")
    return " ".join(parts), []


def _precis(profile: str, text: str) -> str:
    from precis_i18n import get_profile

    return get_profile(profile).enforce(text)


def case_mapped(name: str) -> str:
    """`name` as RFC 8265 compares usernames (UsernameCaseMapped, part by part): `ALICE` -> `alice`."""
    try:
        return " ".join(_precis("UsernameCaseMapped", part) for part in name.split())
    except UnicodeEncodeError:  # not a name chat_name accepted: compare it case-folded
        return unicodedata.normalize("NFKC", name).casefold()


RESERVED_WORDS = ("instructor", "teacher", "admin", "agent", "bank", "system")
"""Words no student's chat name may contain, in any case or script ("Teacher (instructor)",
"ＡＤＭＩＮ", "аdmin" with a Cyrillic а, "adm1n" are all refused): they would speak for the class
or the bank. A word inside another one counts too ("magenta" holds "agent"): a student picks
another name."""


def _loose(text: str) -> str:
    """A skeleton with letters, digits and marks only, and i, l, 1 and I as one letter."""
    kept = "".join(ch for ch in text if unicodedata.category(ch)[0] in "LNM")
    for ch in "l1I":
        kept = kept.replace(_skeleton(ch), _skeleton("i"))
    return kept


def reserved_word(name: str) -> str | None:
    """The reserved word `name` contains or looks like it contains (see RESERVED_WORDS), or None."""
    forms = {_loose(_skeleton(case_mapped(name))), _loose(_skeleton(name))}
    for word in RESERVED_WORDS:
        if any(_loose(_skeleton(word)) in form for form in forms):
            return word
    return None


def _confusable_prototypes() -> dict[str, str]:
    """char -> one representative of its class of look-alikes (UTS #39 confusables.txt, as shipped by
    the maintained `confusable-homoglyphs` package). Two strings are confusable exactly when their
    characters map to the same representatives, which is all uniqueness needs."""
    from confusable_homoglyphs.confusables import confusables_data

    def clean(text: str) -> str:
        return text.replace("\u200e", "").replace("\u200f", "")

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sizes = {clean(char): len(glyphs) for char, glyphs in confusables_data.items()}
    for char, glyphs in confusables_data.items():
        for glyph in glyphs:
            parent[find(clean(glyph["c"]))] = find(clean(char))
    classes: dict[str, list[str]] = {}
    for member in list(parent):
        classes.setdefault(find(member), []).append(member)
    prototypes: dict[str, str] = {}
    for members in classes.values():
        # a multi-character member can only be a target (confusables.txt maps single characters);
        # otherwise the target is the member that lists the most look-alikes
        best = min(members, key=lambda m: (len(m) == 1, not m.isascii(), -sizes.get(m, 0), m))
        for member in members:
            if len(member) == 1:
                prototypes[member] = best
    return prototypes


_prototypes: dict[str, str] | None = None


def name_keys(name: str) -> frozenset[str]:
    """What names are compared by for uniqueness: two names clash when they share a key. The keys are
    the UTS #39 skeleton (NFD, each character to its look-alike class, NFD again) of the name as
    RFC 8265 compares it (UsernameCaseMapped: `ALICE` clashes with `alice`) and of the name as sent
    (so `aIice`, with a capital I, clashes with `alice` too). A combining dot above (U+0307) after
    an i or j (or a dotless ı, which the skeleton makes an i) is drawn as the dot the letter already
    has, so the skeleton drops it: `ali\u0307ce` and `al\u0131\u0307ce` clash with `alice`.
    `alice`, `Alice`, `аlice` (with a Cyrillic а) and `ａｌｉｃｅ` clash; `alice` and `alicia` do not."""
    name = unicodedata.normalize("NFKC", name)
    return frozenset({_skeleton(name), _skeleton(case_mapped(name))})


def name_key(name: str) -> str:
    """One key per name, the skeleton of its case-mapped form: for per-name bookkeeping; whether two
    names clash is `name_keys`'s to say."""
    return _skeleton(case_mapped(unicodedata.normalize("NFKC", name)))


def _skeleton(text: str) -> str:
    global _prototypes
    if _prototypes is None:
        _prototypes = _confusable_prototypes()
    protos = _prototypes
    mapped = "".join(protos.get(ch, ch) for ch in unicodedata.normalize("NFD", text))
    mapped = "".join(protos.get(ch, ch) for ch in mapped)  # a multi-character target's letters
    mapped = unicodedata.normalize("NFD", mapped)
    dot, soft = protos.get("\u0307", "\u0307"), {protos.get(ch, ch) for ch in "ij\u0131\u0237"}
    out: list[str] = []
    for ch in mapped:
        if ch == dot and out and out[-1] in soft:
            continue  # i + U+0307 looks like i: the dot is the one i already has
        out.append(ch)
    return "".join(out)


def chat_text_for_display(text: str) -> str:
    """`text` without explicit bidi embeddings, overrides and isolates (see BIDI_CONTROLS)."""
    return BIDI_CONTROLS.sub("", text)
