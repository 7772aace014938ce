"""The real ``feast`` CLI on a generated repo (``feast apply`` and friends), in a subprocess:
``feast apply`` chdirs, imports the repo's .py files as top-level modules and prints on stdout,
none of which belongs in our process. Its output is redacted (Feast may echo a connection
string with a password)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from feedstack.core.errors import BackendUnavailable
from feedstack.core.redact import redact_text
from feedstack.features.feast_repo import FeastRepo, generate_repo

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _feast_cmd(repo: FeastRepo, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "feast.cli.cli", "-c", str(repo.path), *args]


def _check(args: Sequence[str], code: int, out: str, err: str) -> str:
    """``out`` without terminal colors, or BackendUnavailable with the tail of the output."""
    # Feast may echo its config (the Redis connection string holds the password): redacted.
    out, err = redact_text(_ANSI.sub("", out)), redact_text(_ANSI.sub("", err))
    if code != 0:
        tail = (err or out).strip().splitlines()[-15:]
        raise BackendUnavailable(
            f"`feast {' '.join(args)}` failed (exit {code}):\n" + "\n".join(tail)
        )
    return out


def feast_cli(repo: FeastRepo, *args: str, timeout_s: float = 600.0) -> str:
    """Run the real ``feast -c <repo> ARGS`` (same interpreter); returns its stdout.
    A subprocess because ``feast apply`` chdirs, imports the repo's .py files as top-level
    modules and prints on stdout: none of that belongs in our process."""
    try:
        proc = subprocess.run(
            _feast_cmd(repo, args), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable(f"`feast {' '.join(args)}` timed out after {timeout_s} s") from exc
    return _check(args, proc.returncode, proc.stdout, proc.stderr)


def apply_repos(repos: Sequence[FeastRepo], timeout_s: float = 600.0) -> list[dict[str, Any]]:
    """Generate each repo from the definitions and run the real ``feast apply`` on it; several
    repos apply in parallel (each apply is mostly the 4-6 s import of feast)."""
    changed = [generate_repo(r) for r in repos]
    procs = [
        subprocess.Popen(
            _feast_cmd(r, ["apply"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for r in repos
    ]
    results = []
    try:
        for repo, proc, files in zip(repos, procs, changed, strict=True):
            try:
                out, err = proc.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise BackendUnavailable(f"`feast apply` timed out after {timeout_s} s") from exc
            _check(["apply"], proc.returncode, out, err)
            results.append(
                {
                    "repo": str(repo.path),
                    "project": repo.project,
                    "online_store": repo.online_kind,
                    "generated": [str(p) for p in files],
                    "feast_output": redact_text(out).strip().splitlines(),
                }
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def apply_repo(repo: FeastRepo) -> dict[str, Any]:
    """Generate the repo from the definitions and run ``feast apply`` on it."""
    return apply_repos([repo])[0]
