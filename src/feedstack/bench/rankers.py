"""``feedstack bench rankers``: the ranker's backends side by side on the same 500-row blocks.

The project's newest ranker (the LightGBM text model it serves) is scored by every backend that
is installed, on the same blocks, one thread, the backends taking turns block by block (so a
machine getting busier slows all alike):

- ``lightgbm``: ``Booster.predict`` as the Ranker calls it (the baseline);
- ``lightgbm_no_shape_check``: the same with ``predict_disable_shape_check`` (LightGBM's cheaper
  call; a 500-row block has no single-row fast path: that API scores one row per call);
- ``lleaves``: the forest compiled with LLVM in-process (models/rank/compiled.py: what serves);
- ``tl2cgen``: treelite's C code generator, compiled with gcc (installed with the dev extras).

Every backend's scores are compared with the baseline's: largest absolute difference and whether
each block's ranked order (score, ties by position) is identical. Compile time is measured
cold (no cache) and, for lleaves, from its cache.

Blocks: each feature's values are drawn around the model's own split thresholds (a random
threshold plus noise of the feature's threshold spread, 5 % missing), so the walks take every
branch the trees have; random uniform inputs would mostly take one side of each split.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.core.errors import ConfigError
from feedstack.models.rank.lgbm import Ranker

ROWS = 500


def _thresholds(booster: Any) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" in node:
            thr = node.get("threshold")
            if isinstance(thr, int | float):
                out.setdefault(int(node["split_feature"]), []).append(float(thr))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return out


def blocks_for(ranker: Ranker, n: int, seed: int, rows: int = ROWS) -> list[np.ndarray]:
    """``n`` blocks of ``rows`` x features around the model's thresholds (module docstring)."""
    rng = np.random.default_rng(seed)
    thr = _thresholds(ranker.booster)
    f = len(ranker.feature_names)
    out = []
    for _ in range(n):
        x = rng.normal(size=(rows, f))
        for j, values in thr.items():
            v = np.asarray(values)
            spread = float(v.std()) or max(abs(float(v.mean())), 1.0) * 0.1
            x[:, j] = rng.choice(v, rows) + rng.normal(0.0, spread, rows)
        x[rng.random(x.shape) < 0.05] = np.nan
        out.append(np.ascontiguousarray(x, dtype=np.float32))
    return out


def _order(scores: np.ndarray) -> np.ndarray:
    idx = np.arange(scores.size)
    return np.lexsort((idx, -scores))


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """treelite's native logger prints to file descriptor 1; ``--json`` owns stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _tl2cgen(ranker: Ranker, folder: Path) -> tuple[Callable[[np.ndarray], Any], float] | None:
    try:
        import tl2cgen
        import treelite
    except ImportError:
        return None
    began = time.perf_counter()
    model_file = folder / "model.txt"
    model_file.write_text(ranker.booster.model_to_string(), encoding="utf-8")
    model = treelite.frontend.load_lightgbm_model(str(model_file))
    lib = folder / "forest.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(lib), verbose=False)
    predictor = tl2cgen.Predictor(str(lib), nthread=1, verbose=False)
    seconds = time.perf_counter() - began

    def predict(x: np.ndarray) -> Any:
        return predictor.predict(tl2cgen.DMatrix(x, dtype="float32")).reshape(-1)

    return predict, seconds


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def newest_ranker(project: Path) -> tuple[str, Ranker]:
    from feedstack.serve.models import newest_version

    version = newest_version(project)
    folder = project / "models" / version / "ranker"
    if not folder.is_dir():
        raise ConfigError(f"model {version} has no ranker folder {folder}")
    return version, Ranker.load(folder)


def run_ranker_bench(project: Path, blocks: int = 300, seed: int = 0) -> dict[str, Any]:
    version, ranker = newest_ranker(project)
    return {"model": version, **measure_backends(ranker, blocks, seed)}


def measure_backends(ranker: Ranker, blocks: int = 300, seed: int = 0) -> dict[str, Any]:
    """Every installed backend on the same ``blocks`` (see the module docstring)."""
    from feedstack.models.rank.compiled import CompiledRanker

    data = blocks_for(ranker, blocks, seed)
    booster = ranker.booster
    backends: dict[str, Callable[[np.ndarray], Any]] = {
        "lightgbm": lambda x: ranker.predict(x, num_threads=1),
        "lightgbm_no_shape_check": lambda x: booster.predict(
            x, num_threads=1, predict_disable_shape_check=True
        ),
    }
    compile_s: dict[str, float | None] = {"lightgbm": 0.0, "lightgbm_no_shape_check": 0.0}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="feedstack-rankers-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        compiled = CompiledRanker(ranker, folder / "cache")
        compile_s["lleaves"] = time.perf_counter() - began
        began = time.perf_counter()
        CompiledRanker(ranker, folder / "cache")
        compile_s["lleaves_from_cache"] = time.perf_counter() - began
        backends["lleaves"] = lambda x: compiled.predict(x, num_threads=1)
        for name, build in (("tl2cgen", _tl2cgen),):
            try:
                with _stdout_to_stderr():
                    got = build(ranker, folder)
            except Exception as exc:  # an optional comparison: say why it is missing
                notes[name] = f"failed: {type(exc).__name__}: {exc}"
                continue
            if got is None:
                notes[name] = "not installed"
                continue
            backends[name], compile_s[name] = got
        times: dict[str, list[float]] = {name: [] for name in backends}
        diff = dict.fromkeys(backends, 0.0)
        same_order = dict.fromkeys(backends, 0)
        for x in data[:20]:  # warm-up: first calls allocate
            for fn in backends.values():
                fn(x)
        for x in data:
            base = np.asarray(backends["lightgbm"](x), dtype=np.float64)
            for name, fn in backends.items():
                t = time.perf_counter()
                scores = fn(x)
                times[name].append((time.perf_counter() - t) * 1e6)
                s = np.asarray(scores, dtype=np.float32).astype(np.float64).reshape(-1)
                diff[name] = max(diff[name], float(np.max(np.abs(s - base))))
                same_order[name] += bool(np.array_equal(_order(s), _order(base)))
    base_p50 = float(np.median(times["lightgbm"]))
    result: dict[str, Any] = {
        "trees": booster.num_trees(),
        "features": len(ranker.feature_names),
        "rows_per_block": ROWS,
        "blocks": blocks,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "backends": {},
        "notes": notes,
    }
    for name, ts in times.items():
        arr = np.asarray(ts)
        p50 = float(np.median(arr))
        result["backends"][name] = {
            "p50_us": round(p50, 1),
            "p99_us": round(float(np.percentile(arr, 99)), 1),
            "speedup_vs_lightgbm": round(base_p50 / p50, 2) if p50 > 0 else None,
            "max_abs_diff": diff[name],
            "same_order_blocks": f"{same_order[name]}/{blocks}",
            "compile_s": _round(compile_s.get(name)),
        }
    result["backends"]["lleaves"]["compile_from_cache_s"] = _round(compile_s["lleaves_from_cache"])
    fastest = min(result["backends"], key=lambda n: result["backends"][n]["p50_us"])
    result["fastest"] = fastest
    return result
