"""Backend URLs: one parser, so every store resolves paths and options the same way.

Local schemes (``sqlite``, ``file``) take a path after ``scheme://``: relative paths resolve against
the project folder, absolute ones start with ``/`` (``sqlite:///abs/path``). Network schemes
(``redis``, ``postgresql``) keep their URL; ``?prefix=`` names the key prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from feedstack.core.errors import ConfigError
from feedstack.core.redact import redact_url


@dataclass(frozen=True)
class BackendUrl:
    url: str
    scheme: str
    path: Path | None  # local schemes
    prefix: str  # network schemes: key prefix


def parse_backend_url(url: str, key: str, allowed: tuple[str, ...], project: Path) -> BackendUrl:
    """Parse ``url`` (the value of spec key ``key``) into a BackendUrl or raise ConfigError."""
    if "://" not in url:
        raise ConfigError(
            f"backends.{key} = {redact_url(url)!r}: not a URL; expected one of the schemes "
            f"{', '.join(allowed)}"
        )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in allowed:
        raise ConfigError(
            f"backends.{key} = {redact_url(url)!r}: unknown scheme {scheme!r}; "
            f"valid: {', '.join(allowed)}"
        )
    if scheme in ("sqlite", "file", "duckdb"):
        if not rest:
            raise ConfigError(f"backends.{key} = {url!r}: missing path after {scheme}://")
        p = Path(rest)
        return BackendUrl(url, scheme, p if p.is_absolute() else project / p, "")
    parts = urlsplit(url)
    prefix = parse_qs(parts.query).get("prefix", ["feedstack"])[0]
    return BackendUrl(url, scheme, None, prefix)


def strip_prefix(url: str) -> str:
    """The URL without our own ``prefix`` option, as the client library expects it."""
    parts = urlsplit(url)
    query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs if k != "prefix"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_client(url: str, **kwargs: Any) -> Any:
    """A redis-py client for ``url`` (imported lazily: the CLI must start without it)."""
    import redis

    return redis.Redis.from_url(strip_prefix(url), socket_timeout=10, **kwargs)
