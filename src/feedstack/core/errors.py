"""The one exception tree of feedstack.

    FeedstackError                 base; never raised itself
    ├── ConfigError                feedstack.yaml or a backend URL is wrong (names key and value)
    ├── InputError                 user input cannot be used at all (a file that cannot be read,
    │                              a bad CLI value); per-event problems are *rejections*, not errors
    ├── BackendUnavailable         a store or server cannot be reached; callers degrade, never lose
    │                              acknowledged data
    └── NotSupported               an optional capability a backend does not offer

The CLI maps ConfigError and InputError to exit code 2, every other FeedstackError to 1.
"""

from __future__ import annotations


class FeedstackError(Exception):
    """Base of every error feedstack raises on purpose."""


class ConfigError(FeedstackError):
    """The spec or a backend URL is invalid. The message names the key and the value."""


class InputError(FeedstackError):
    """Input that cannot be used at all (unreadable file, bad option value)."""


class BackendUnavailable(FeedstackError):
    """A backend (Redis, PostgreSQL, a file store) cannot be reached or refused the operation."""


class NotSupported(FeedstackError):
    """An optional capability that this backend does not implement."""
