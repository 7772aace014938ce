"""The one exception tree of feedstack.

    FeedstackError                 base; never raised itself
    ├── ConfigError                feedstack.yaml or a backend URL is wrong (names key and value)
    ├── InputError                 the caller's input cannot be used at all (a file that cannot
    │                              be read, a bad CLI value, a bad request); per-event problems
    │                              are *rejections* (dead letters), not errors
    ├── Refused                    the caller may not do this (now): no or a wrong API key, a
    │                              missing scope, an empty rate-limit bucket (serve/errors.py
    │                              holds the subclasses)
    ├── DataError                  our own stored data is corrupt or does not fit: a candidate
    │                              cache entry that does not decode, lists built for other ranker
    │                              features, a model file that does not load. Never the caller's
    │                              fault: serving degrades (a fallback reason) or answers 500,
    │                              never 4xx; batch jobs quarantine the record and go on
    ├── BackendUnavailable         a store or server cannot be reached; callers degrade, never lose
    │                              acknowledged data
    └── NotSupported               an optional capability a backend does not offer

Who decides what: the CLI maps ConfigError and InputError to exit code 2, every other
FeedstackError to 1 (cli/common.py); the serving transports map every exception to an HTTP
status and a gRPC code in one table (serve/errors.py). Messages may name a backend URL only
through ``core.redact`` (no credentials).
"""

from __future__ import annotations


class FeedstackError(Exception):
    """Base of every error feedstack raises on purpose."""


class ConfigError(FeedstackError):
    """The spec or a backend URL is invalid. The message names the key and the value."""


class InputError(FeedstackError):
    """The caller's input cannot be used at all (unreadable file, bad option value)."""


class Refused(FeedstackError):
    """The caller is not allowed to do this, or not now (authentication, scope, rate limit)."""


class DataError(FeedstackError):
    """Stored data of our own is corrupt or incompatible (a cache entry, a model, a feature
    row); the caller did nothing wrong."""


class BackendUnavailable(FeedstackError):
    """A backend (Redis, PostgreSQL, a file store) cannot be reached or refused the operation."""


class NotSupported(FeedstackError):
    """An optional capability that this backend does not implement."""
