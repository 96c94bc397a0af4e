"""JSON request bodies, refused before they can hurt.

Two kinds of JSON parse fine and then fail far from where they came in: nesting deep
enough to exhaust the interpreter's recursion limit (a RecursionError, so a 500), and the
NUL character in a string (PostgreSQL's text and jsonb cannot hold it, so a 500 there and a
silently stored NUL on SQLite). Every JSON body is checked here, at the parser, for both:
DRF's parser for the API (the default parser in settings), `loads` for the few views that
read a body or a header as JSON themselves.
"""

import codecs
import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.utils.json import strict_constant

MAX_DEPTH = 64
NUL_MESSAGE = "Must not contain the NUL character (\\u0000)."


class UnsafeJSON(ValueError):
    """Valid JSON that we refuse; `field` is where (`body` for the whole document)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(value) -> None:
    """Raise UnsafeJSON for nesting deeper than MAX_DEPTH or a NUL in any string (keys
    too). Iterative, so it cannot itself run out of stack."""
    stack = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise UnsafeJSON(path or "body", NUL_MESSAGE)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise UnsafeJSON("body", f"The JSON is nested deeper than {MAX_DEPTH} levels.")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise UnsafeJSON(_join(path, key.replace("\x00", "\\u0000")), NUL_MESSAGE)
                stack.append((child, _join(path, key), depth + 1))
        else:
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))


def loads(text: str | bytes, **kwargs):
    """json.loads that raises UnsafeJSON (a ValueError) for what `check` refuses."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        raise UnsafeJSON("body", f"The JSON is nested deeper than {MAX_DEPTH} levels.") from None
    check(value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with `check`: a refused body is a 400 validation error naming the
    field."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            text = codecs.getreader(encoding)(stream).read()
            parse_constant = strict_constant if self.strict else None
            return loads(text, parse_constant=parse_constant)
        except UnsafeJSON as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
