"""Request paths of the paid proxy: one normal form, and patterns matched in linear time.

A request path is normalised once; the allowed and blocked paths, the endpoint that sets
the price, the token's path caveat, the one-time key and the upstream request all use
that one string, so no spelling of a path reaches the upstream past a block or a price:
- it arrives percent-decoded once (by the WSGI server). What is still percent-encoded
  after that (`%2561`, sent to become `%61` upstream) is refused, as are NUL and the other
  control characters, backslashes and `;` (path parameters: some servers serve
  `/admin;x` as `/admin`);
- empty segments are dropped (duplicate and trailing slashes); `.` and `..` are refused;
- matching ignores case (both sides lower-cased): an upstream that ignores case would
  serve `/Admin` past a case-sensitive block on `/admin`. Ignoring case can only make a
  block or a price cover more, never less. The path keeps its case on its way upstream.

Patterns: `{name}` matches one segment, `*` any run of characters (`/` included), and
`/x/*` matches `/x` itself too. A pattern is run as an automaton over the path with the
set of its live positions as a bit mask, never by backtracking: the cost is linear in the
path, whatever the pattern (a backtracking regex takes hours on `/*a*a*a*a*b` against a
long path). Patterns are bounded when saved (length, wildcards, how many).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MAX_PATTERN_LENGTH = 500
MAX_WILDCARDS = 8  # `*` and `{name}` in one pattern
MAX_PATTERNS = 50  # in allowedPaths, in blockedPaths

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STILL_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_WILDCARD = re.compile(r"(\{[^/{}]+\}|\*)")


class InvalidPath(ValueError):
    """The path (or pattern) cannot be used; the message says why."""


def normalise(path: str) -> str:
    """The normal form of a request path, as decoded once by the server. Raises InvalidPath."""
    if _CONTROL.search(path):
        raise InvalidPath("the path contains a control character (NUL, CR, LF...)")
    if _STILL_ENCODED.search(path):
        raise InvalidPath("the path is still percent-encoded after decoding (encoded twice)")
    if ";" in path:
        raise InvalidPath("path parameters (';') are not accepted")
    if "\\" in path:
        raise InvalidPath("backslashes are not accepted in paths")
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidPath("'.' and '..' path segments are not allowed")
    return "/" + "/".join(segments)


def clean_pattern(pattern: str) -> str:
    """A pattern a merchant may save, in normal form. Raises InvalidPath."""
    if not pattern.startswith("/"):
        raise InvalidPath(f"{pattern!r} must start with /")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPath(f"a pattern may have at most {MAX_PATTERN_LENGTH} characters")
    if len(_WILDCARD.findall(pattern)) > MAX_WILDCARDS:
        raise InvalidPath(f"a pattern may have at most {MAX_WILDCARDS} wildcards (* and {{name}})")
    if any("{" in part or "}" in part for part in _WILDCARD.split(pattern)[::2]):
        raise InvalidPath(f"{pattern!r}: a '{{' or '}}' that is not a {{name}} segment")
    for forbidden in ("%", "?", "#"):
        if forbidden in pattern:
            raise InvalidPath(f"{pattern!r} must not contain {forbidden!r}")
    try:
        return normalise(pattern)
    except InvalidPath as exc:
        raise InvalidPath(f"{pattern!r}: {str(exc).replace('the path', 'it')}") from None


def clean_patterns(patterns: list[str]) -> list[str]:
    if len(patterns) > MAX_PATTERNS:
        raise InvalidPath(f"at most {MAX_PATTERNS} patterns")
    return list(dict.fromkeys(clean_pattern(pattern) for pattern in patterns))


def matches(pattern: str, key: str) -> bool:
    """Whether `key` (a normalised path, lower-cased: `normalise(path).lower()`) matches
    the pattern."""
    return _compile(pattern).run(key)


# --- the automaton ----------------------------------------------------------------------

_ANY_RUN, _SEGMENT_CHAR, _SEGMENT_RUN = object(), object(), object()


@dataclass(frozen=True)
class _Automaton:
    """Position i means "the first i tokens are matched"; bit i of a mask is position i."""

    exact: str | None  # a pattern without wildcards: plain comparison
    literal: dict[str, int]  # character -> positions that advance on it
    segment_char: int  # positions that advance on any character but "/"
    any_run: int  # positions that stay on any character ("*")
    segment_run: int  # positions that stay on any character but "/" (rest of a {name})
    skippable: int  # positions that may advance without a character (runs match "")
    accept: int

    def run(self, key: str) -> bool:
        if self.exact is not None:
            return key == self.exact or (self.accept != 0 and key.startswith(self.exact + "/"))
        states = self._closure(1)
        for char in key:
            advance = self.literal.get(char, 0)
            stay = self.any_run
            if char != "/":
                advance |= self.segment_char
                stay |= self.segment_run
            states = self._closure(((states & advance) << 1) | (states & stay))
            if not states:
                return False
        return bool(states & self.accept)

    def _closure(self, states: int) -> int:
        while True:
            more = states | ((states & self.skippable) << 1)
            if more == states:
                return states
            states = more


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> _Automaton:
    # Stored patterns are normal (clean_pattern); older or hand-made ones are made so here.
    segments = [segment for segment in pattern.lower().split("/") if segment]
    pattern = "/" + "/".join(segments)
    whole_subtree = pattern.endswith("/*")  # "/x/*" matches "/x" too
    if whole_subtree and not _WILDCARD.search(pattern[:-2]):
        return _Automaton(pattern[:-2], {}, 0, 0, 0, 0, accept=1)
    if not _WILDCARD.search(pattern):
        return _Automaton(pattern, {}, 0, 0, 0, 0, accept=0)
    tokens: list = []
    for part in _WILDCARD.split(pattern):
        if part == "*":
            tokens.append(_ANY_RUN)
        elif part.startswith("{"):
            tokens += [_SEGMENT_CHAR, _SEGMENT_RUN]
        else:
            tokens += list(part)
    literal: dict[str, int] = {}
    segment_char = any_run = segment_run = 0
    for position, token in enumerate(tokens):
        bit = 1 << position
        if token is _ANY_RUN:
            any_run |= bit
        elif token is _SEGMENT_CHAR:
            segment_char |= bit
        elif token is _SEGMENT_RUN:
            segment_run |= bit
        else:
            literal[token] = literal.get(token, 0) | bit
    accept = 1 << len(tokens)
    if whole_subtree:
        accept |= 1 << (len(tokens) - 2)  # before the final "/*"
    return _Automaton(
        None, literal, segment_char, any_run, segment_run, any_run | segment_run, accept
    )
