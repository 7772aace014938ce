"""``feedstack experiment status``'s result: an experiment analysed from the project's event log.

Exposures are the impressions the servers logged under the experiment (serve/experiments.py) plus
any exposure file a simulation wrote; outcomes are the clicks and dwell joined to them by request
id (registry/experiment.py). The demo's live A/B (demo/abtest.py) reads the same function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedstack.core.spec import load_spec
from feedstack.registry.experiment import ExposureLog, analyze, load_experiment, served_outcomes
from feedstack.storage.eventlog import iter_log, open_event_log


def experiment_status(root: Path, name: str) -> dict[str, Any]:
    spec = load_spec(root)
    exp = load_experiment(root, name)
    logged = ExposureLog(root, name).read()
    log = open_event_log(spec.backends.event_log, root)
    try:
        exposures, outcomes = served_outcomes(exp, (rec.event for rec in iter_log(log)), logged)
    finally:
        log.close()
    result = analyze(exp, outcomes, spec)
    result["exposures"] = len(exposures)
    result["exposures_served"] = len(exposures) - len(logged)
    return result
