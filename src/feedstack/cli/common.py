"""What every command shares: project location, JSON output, error -> exit code mapping.

Exit codes: 0 ok, 1 failure (a backend down, a stage that failed), 2 bad input or usage
(ConfigError, InputError, typer's own usage errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from feedstack.core.errors import ConfigError, FeedstackError, InputError
from feedstack.core.redact import redact_text
from feedstack.storage.measurements import Kind

# Human output goes to stderr so that --json keeps stdout machine-readable.
console = Console(stderr=True)

T = TypeVar("T")

ProjectOption = typer.Option(
    None,
    "--project",
    "-p",
    help="Project folder with feedstack.yaml (default: $FEEDSTACK_PROJECT or the current one).",
)
JsonOption = typer.Option(False, "--json", help="Print a machine-readable JSON result on stdout.")
EngineOption = typer.Option(
    None,
    "--engine",
    help="Batch engine: local (this process), local[N] (Spark on N cores) or "
    "spark://host:port (default: the spec's engine).",
)


def project_dir(project: Path | None) -> Path:
    if project is not None:
        return project
    env = os.environ.get("FEEDSTACK_PROJECT")
    return Path(env) if env else Path.cwd()


def emit_json(obj: Any) -> None:
    """``obj`` as JSON on stdout; any backend URL in it is shown without its password."""
    text = orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    sys.stdout.buffer.write(redact_text(text).encode() + b"\n")
    sys.stdout.flush()


@contextmanager
def cli_errors() -> Iterator[None]:
    """Translate feedstack errors into a one-line message and the documented exit code."""
    try:
        yield
    except (ConfigError, InputError) as exc:
        console.print(f"[red]error:[/red] {_shown(exc)}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    except FeedstackError as exc:
        console.print(f"[red]failed:[/red] {_shown(exc)}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _shown(exc: BaseException) -> str:
    """The message, redacted (a backend URL in a foreign message may hold a password) and with
    rich markup escaped (a bracket in a value is text)."""
    return escape(redact_text(str(exc)))


def run_cli(fn: Callable[[], T]) -> T:
    with cli_errors():
        return fn()


def record_measurement(
    kind: Kind, result: dict[str, Any], project: Path | None, as_json: bool
) -> dict[str, Any]:
    """Save a benchmark or evaluation result in the project's measurements/ and show it."""
    from feedstack.storage import measurements

    rec = measurements.record(kind, result)
    path = measurements.save(project_dir(project) / "measurements", rec)
    if as_json:
        emit_json(result)
    else:
        console.print_json(redact_text(orjson.dumps(result).decode()))
        console.print(f"recorded in {path}")
    return rec
