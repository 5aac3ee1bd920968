"""Passwords never leave the process: one masking function for every URL, config or error shown or
stored (console, MLflow params, tags and artifacts, study attributes, CLI errors).

`mask(text)` finds every URL in `text` and replaces its password (`scheme://user:***@host`, also
with `/`, `@` or `?` inside an unencoded password, and with no user: `scheme://:***@host`) and the
value of secret query parameters (`?password=***`). It also replaces, anywhere in the text, the
passwords of the URLs the process has opened (`remember`), because drivers quote pieces of a URL
without its scheme (`could not translate host name "b@host"` for the password `a@b`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel

MASK = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_END = re.compile(r"""[\s'"<>`]""")
_SECRET_PARAM = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey|sslpassword)=)"
    r"[^&;#]*", re.IGNORECASE)
# Pieces of a remembered password shorter than this are not searched for in free text: they
# would mangle ordinary words.
_MIN_PIECE = 4
_remembered: dict[str, str] = {}  # secret -> what replaces it


def _password_span(rest: str) -> tuple[int, int] | None:
    """Where the password is in the part of a URL after `://` (`user:pass@host/db`), if any."""
    boundary = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, boundary)
    if at < 0:  # a `?` or `#` inside the password itself
        at = rest.rfind("@")
    user, colon, _ = rest[:max(at, 0)].partition(":")
    if at < 0 or not colon or "/" in user:  # no password, or a path such as sqlite:////a:b@c.db
        return None
    return len(user) + 1, at


def _split(url: str) -> tuple[str, str]:
    scheme = _SCHEME.match(url)
    return (url[:scheme.end()], url[scheme.end():]) if scheme else ("", url)


def _mask_url(url: str) -> str:
    head, rest = _split(url)
    span = _password_span(rest)
    if span:
        rest = rest[:span[0]] + MASK + rest[span[1]:]
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, head + rest)


def mask(text: str) -> str:
    """`text` with the password of every URL in it, and every remembered password, masked."""
    out, position = [], 0
    for match in _SCHEME.finditer(text):
        if match.start() < position:
            continue
        end = _END.search(text, match.end())
        stop = end.start() if end else len(text)
        out += [text[position:match.start()], _mask_url(text[match.start():stop])]
        position = stop
    out.append(text[position:])
    masked = "".join(out)
    for secret in sorted(_remembered, key=len, reverse=True):
        masked = masked.replace(secret, _remembered[secret])
    return masked


def url_secrets(url: str) -> set[str]:
    """The password of `url` and its secret query values (raw and percent-decoded), with the
    pieces between `@` and `/` that a driver may quote on their own."""
    _, rest = _split(url)
    span = _password_span(rest)
    found = {rest[span[0]:span[1]]} if span else set()
    found |= {m.group(0)[len(m.group(1)):] for m in _SECRET_PARAM.finditer(url)}
    found |= {unquote(s) for s in found}
    pieces = {p for s in found for p in re.split(r"[@/]", s) if len(p) >= _MIN_PIECE}
    return {s for s in found | pieces if s}


def remember(*urls: str | None) -> None:
    """From now on, `mask` and every log record hide these URLs' passwords wherever they appear."""
    for url in urls:
        if not url:
            continue
        secrets = url_secrets(url)
        _remembered.update(dict.fromkeys(secrets, MASK))
        # A driver that splits `user:a@b@host` at the first `@` quotes the host as `b@host`.
        _remembered.update({f"{s.split('@', 1)[1]}@": f"{MASK}@" for s in secrets if "@" in s})
    _install_log_masking()


def _install_log_masking() -> None:
    """Every log record (MLflow's engine retries, SQLAlchemy, Optuna) is masked when created."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "harness_masks", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return record

    factory.harness_masks = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def error_message(error: BaseException) -> str:
    """`Type: message` of an exception, masked: what a trial's error tag and the console show."""
    return mask(f"{type(error).__name__}: {error}")


def _mask_values(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_values(v) for v in value]
    return value


def masked_json(model: BaseModel, *, indent: int | None = None) -> str:
    """A pydantic model (the resolved config) as JSON with every string value masked."""
    return json.dumps(_mask_values(model.model_dump(mode="json")), indent=indent)


__all__ = ["MASK", "error_message", "mask", "masked_json", "remember", "url_secrets"]
