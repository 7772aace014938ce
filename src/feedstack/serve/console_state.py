"""The console's slow-moving panels, read from the project folder: the rollout state and its
decisions (registry/runner.py), running experiments with their lift and interval
(registry/experiment.py, re-analysed at most every ``experiments_ttl_s``: it reads the log), and
the lineage of the models being served (their ``model.json``: data hashes, event windows,
feature and code versions, offline metrics). Everything is read-only."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec

LINEAGE_KEYS = (
    "version",
    "kind",
    "created_at",
    "trained_at",
    "training_rows_hash",
    "log_hash",
    "features_version",
    "windows",
    "selected",
)
DECISIONS_SHOWN = 20


class ConsoleState:
    def __init__(
        self,
        project: Path | None,
        spec: Spec,
        versions: Callable[[], Mapping[str, str]] = dict,
        *,
        experiments_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project, self.spec, self.versions = project, spec, versions
        self.ttl_s, self.clock = experiments_ttl_s, clock
        self._experiments: tuple[float, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    def to_json(self) -> dict[str, Any]:
        serving = dict(self.versions())
        out: dict[str, Any] = {"serving": serving, "project": self.project is not None}
        if self.project is None:
            return out | {"rollout": None, "decisions": [], "experiments": [], "lineage": {}}
        out["rollout"] = _guard(self._rollout)
        out["decisions"] = _guard(self._decisions) or []
        out["experiments"] = _guard(self._experiments_cached) or []
        out["lineage"] = {arm: self._lineage(v) for arm, v in serving.items()}
        return out

    def _rollout(self) -> dict[str, Any] | None:
        from dataclasses import asdict

        from feedstack.registry.state import load_rollout

        assert self.project is not None
        state = load_rollout(self.project)
        return None if state is None else asdict(state)

    def _decisions(self) -> list[dict[str, Any]]:
        from feedstack.registry.runner import read_decisions

        assert self.project is not None
        return read_decisions(self.project)[-DECISIONS_SHOWN:]

    def _experiments_cached(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self.clock()
            if self._experiments is None or now - self._experiments[0] >= self.ttl_s:
                self._experiments = (now, self._analyse())
            return self._experiments[1]

    def _analyse(self) -> list[dict[str, Any]]:
        from feedstack.registry.experiment import (
            ExposureLog,
            analyze,
            list_experiments,
            outcomes_from_events,
        )
        from feedstack.storage.eventlog import iter_log, open_event_log

        assert self.project is not None
        running = [e for e in list_experiments(self.project) if e.running]
        if not running:
            return []
        out = []
        log = open_event_log(self.spec.backends.event_log, self.project)
        try:
            for exp in running:
                exposures = ExposureLog(self.project, exp.name).read()
                events = (rec.event for rec in iter_log(log))
                try:
                    doc = analyze(exp, outcomes_from_events(exp, exposures, events), self.spec)
                except Exception as exc:  # e.g. an arm with no data yet
                    doc = {"experiment": exp.name, "running": True, "note": str(exc)}
                out.append(doc)
        finally:
            log.close()
        return out

    def _lineage(self, version: str) -> dict[str, Any]:
        assert self.project is not None
        path = self.project / "models" / version / "model.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"version": version, "note": "no model.json in the project"}
        out = {k: meta[k] for k in LINEAGE_KEYS if k in meta}
        metrics = meta.get("metrics")
        if isinstance(metrics, dict):
            out["metrics"] = {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in metrics.items()
                if isinstance(v, int | float | str | None)
            }
        return {"version": version} | out


def _guard(fn: Callable[[], Any]) -> Any:
    """A panel that cannot be read says why instead of failing the whole page."""
    try:
        return fn()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
