"""What travels on the wire: JSON bytes (orjson), and the checks applied to them.

Requests: ``{"cmd": <str>, "body": <object|list>}``. Replies: a JSON object with an integer
``code`` (0 = success) and, on failure, ``error``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._errors import InvalidBody, PayloadTooLarge

__all__ = ["MAX_DEPTH", "decode_object", "encode", "encode_checked"]

MAX_DEPTH = 64  # deeper JSON is refused on decode (orjson itself refuses > 254 levels on encode)


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def encode_checked(value: Any, max_payload: int) -> bytes:
    """Encode a request; refuse what is not JSON or does not fit, before anything is sent."""
    try:
        data = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidBody(f"not JSON-serializable ({exc})") from None
    if len(data) > max_payload:
        raise PayloadTooLarge(len(data), max_payload)
    return data


def check_body(body: object) -> object:
    if body is None:
        return {}
    if not isinstance(body, dict | list):
        raise InvalidBody(f"must be a JSON object or list, not {type(body).__name__}")
    return body


def decode_object(data: bytes, what: str = "message", *, limit_depth: bool = True) -> dict[str, Any]:
    """Parse bytes that must hold a JSON object; any other input is a clear InvalidBody.

    ``limit_depth``: refuse nesting deeper than ``MAX_DEPTH`` (what handlers and the control
    plane are given). Replies skip it: a big find answer has a brace per block, and walking it
    would cost three times the decode; orjson stops at 1024 levels anyway.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidBody(f"{what} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InvalidBody(f"{what} must be a JSON object, not {type(value).__name__}")
    # only input with many brackets can be too deep: the common case costs two byte counts
    if limit_depth and data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidBody(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item if isinstance(v, dict | list))
    return deepest
