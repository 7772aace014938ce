"""Run a benchmark body in a fresh Python process and measure it: wall seconds and peak memory.

Peak memory is the child's own high-water mark (``VmHWM`` of /proc/self/status, read by the
child at its end): everything the body touched, the interpreter included, nothing of the parent.
``ru_maxrss`` from ``wait4`` is only the fallback where /proc is missing: Linux carries the
maximum across fork+exec, so a large parent (``bench all`` after the ingest benchmark) inflated
it to the parent's size.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson

_PRELUDE = """
import sys, orjson
def _peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
ARGS = orjson.loads(sys.argv[1])
RESULT = None
"""
_EPILOGUE = """
sys.stdout.buffer.write(orjson.dumps({"result": RESULT, "peak_kb": _peak_kb()}))
"""


def run_child(body: str, args: Any = None) -> tuple[Any, float, float]:
    """Run ``body`` (Python source that reads ``ARGS`` and sets ``RESULT``, both JSON values)
    in a new interpreter; returns ``(RESULT, wall seconds, peak RSS in MB)``."""
    import os

    code = _PRELUDE + body + _EPILOGUE
    began = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, orjson.dumps(args).decode()],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert proc.stdout is not None
        with proc.stdout:
            stdout = proc.stdout.read()
        # wait4, not Popen.wait: it returns this child's own resource usage (the fallback).
        _, status, usage = os.wait4(proc.pid, 0)
        # Tell Popen the child is reaped (else it warns that it is "still running").
        proc.returncode = code_ = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        if code_ != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"benchmark child failed (exit {code_}): {' | '.join(tail)}")
    doc: dict[str, Any] = orjson.loads(stdout)
    if doc["peak_kb"]:
        return doc["result"], wall, round(doc["peak_kb"] / 1024, 1)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return doc["result"], wall, round(usage.ru_maxrss * scale / 2**20, 1)
