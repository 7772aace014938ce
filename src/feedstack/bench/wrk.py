"""Saturation runs with wrk (when ``which wrk`` finds it): a C load generator, closed loop.

wrk only drives a closed loop (each connection sends its next request when the last one
returned), so it serves the saturation search; the open-loop runs at a fixed rate stay with the
built-in generator (bench/loadgen.py), which schedules by time. The user mix is the same:
the request paths are written to a file that a Lua script cycles through, and the Lua ``done``
hook prints the summary as one JSON line.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson

from feedstack.bench.loadgen import user_mix
from feedstack.core.errors import BackendUnavailable

_SCRIPT = """
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local i = 0
local headers = {}
if "%(api_key)s" ~= "" then headers["X-API-Key"] = "%(api_key)s" end
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n@@{"requests":%%d,"errors":%%d,"duration_us":%%d,"p50_us":%%d,"p95_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(cfg: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """The closed-loop saturation run of ``cfg`` (bench/loadgen.py's keys) with wrk."""
    exe = wrk_path()
    if exe is None:
        raise BackendUnavailable("wrk is not installed")
    host, port = cfg["host"], int(cfg["port"])
    if cfg["target"] == "feed":
        mix = user_mix(list(cfg.get("users", [])), int(cfg.get("pool", 20_000)), cfg.get("seed", 0))
        paths = [f"/v1/feed/{r.user}?k={r.k}" for r in mix]
    else:
        paths = ["/v1/ping"]
    duration_s = max(1, math.ceil(float(cfg["duration_s"])))
    with tempfile.TemporaryDirectory(prefix="fs-wrk-") as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
        script = Path(tmp) / "mix.lua"
        key = str((cfg.get("api_keys") or [""])[0])  # wrk sends fixed requests: one key
        script.write_text(_SCRIPT % {"paths": paths_file, "api_key": key}, encoding="utf-8")
        warm = float(cfg.get("warmup_s", 1.0))
        base = [exe, "-t1", f"-c{int(cfg.get('concurrency', 32))}", "-s", str(script)]
        url = f"http://{host}:{port}"
        if warm > 0:
            subprocess.run(
                [*base, f"-d{max(1, math.ceil(warm))}s", url],
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        proc = subprocess.run(
            [*base, f"-d{duration_s}s", "--timeout", "10s", url],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    out = proc.stdout.decode(errors="replace")
    line = next((ln[2:] for ln in out.splitlines() if ln.startswith("@@")), None)
    if proc.returncode != 0 or line is None:
        raise BackendUnavailable(f"wrk failed: {proc.stderr.decode(errors='replace')[-300:]}")
    raw = orjson.loads(line)
    elapsed_s = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["errors"]
    return {
        "requests": raw["requests"],
        "ok": ok,
        "errors": raw["errors"],
        "rps": round(ok / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": raw["p50_us"] / 1000.0,
        "p95_ms": raw["p95_us"] / 1000.0,
        "p99_ms": raw["p99_us"] / 1000.0,
        "max_ms": raw["max_us"] / 1000.0,
        "elapsed_s": round(elapsed_s, 3),
        "concurrency": int(cfg.get("concurrency", 32)),
        "protocol": "http",
        "target": cfg["target"],
        "mode": "saturate",
    }
