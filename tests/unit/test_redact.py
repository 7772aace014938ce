"""One helper renders backend URLs without credentials: known answers, and the log filter."""

from __future__ import annotations

import logging

import pytest

from feedstack.core.redact import RedactingFilter, redact_text, redact_url

PW = "pl4nted-S3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{PW}@cache:6379/0?prefix=fs", "redis://:***@cache:6379/0?prefix=fs"),
        (f"redis://app:{PW}@cache/1", "redis://app:***@cache/1"),
        (f"postgresql://app:{PW}@db:5432/feeds", "postgresql://app:***@db:5432/feeds"),
        (f"postgresql+psycopg2://u:{PW}@h/d", "postgresql+psycopg2://u:***@h/d"),
        (f"redis://cache/0?password={PW}&prefix=x", "redis://cache/0?password=***&prefix=x"),
        (f"cache:6379,db=0,password={PW}", "cache:6379,db=0,password=***"),  # Feast's form
        ("redis://cache:6379/0", "redis://cache:6379/0"),  # nothing to hide
        ("sqlite://data/events.sqlite", "sqlite://data/events.sqlite"),
        ("postgresql://app@db/feeds", "postgresql://app@db/feeds"),
    ],
)
def test_redact_url_known_answers(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_in_messages() -> None:
    msg = f"candidate cache redis://:{PW}@h:1/0: read failed; then postgresql://a:{PW}@db/x down"
    out = redact_text(msg)
    assert PW not in out and out.count("***") == 2 and "redis://:***@h:1/0" in out


def test_log_filter_redacts_arguments_and_tracebacks() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "warm-up failed: %s", (f"redis://:{PW}@h/0",), None
    )
    try:
        raise RuntimeError(f"connect redis://u:{PW}@h/0")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert PW not in text and "redis://:***@h/0" in text and "redis://u:***@h/0" in text
