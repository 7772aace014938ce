"""Backend URLs without their secrets, for every message, log line, CLI output and report.

A backend URL may carry a password (``redis://:pw@host:6379/0``,
``postgresql://user:pw@host/db``) or a token in its query (``?password=``, ``?token=``). Anything
that shows a URL to a person or writes it to a file that is not the spec goes through
``redact_url`` (one URL) or ``redact_text`` (free text that may contain URLs: an exception
message from a client library, a log line). The adapters keep the real URL to connect and show
only the redacted one (their ``url`` / ``location`` attributes).

    redis://:s3cret@cache:6379/0?prefix=fs   ->  redis://:***@cache:6379/0?prefix=fs
    postgresql://app:s3cret@db/feeds         ->  postgresql://app:***@db/feeds
    redis://cache/0?password=s3cret          ->  redis://cache/0?password=***
    cache:6379,db=0,password=s3cret          ->  cache:6379,db=0,password=***  (Feast's form)

``RedactingFilter`` applies ``redact_text`` to every record of a logger it is attached to (the
server attaches it to the root handlers), so a library that prints its connection URL in an
exception cannot leak it through our logs either.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# scheme://[user][:password]@ : the password part is everything up to the last "@" before the
# host (passwords may contain "@" when not percent-encoded; the host never does).
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s]*)@"
)
_SECRET_PARAMS = re.compile(
    r"(?P<key>[?&;,](?:password|passwd|pwd|secret|token|access_key|api_key|apikey|auth)=)"
    r"(?P<value>[^&\s#'\"]*)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL and every secret
    query parameter replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m['key']}{MASK}", out)


def redact_url(url: str) -> str:
    """One backend URL, safe to show (the same rule as ``redact_text``)."""
    return redact_text(url)


class RedactingFilter(logging.Filter):
    """Renders each record's message once, redacted (arguments and exception text included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Attach a RedactingFilter to every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
