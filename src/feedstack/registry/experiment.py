"""A/B tests: arms with stable assignment, exposure logging, and the analysis of CTR and dwell.

    PROJECT/registry/experiments/<name>.json              the experiment (arms, shares, salt, times)
    PROJECT/registry/experiments/<name>.exposures.jsonl   one line per served request in it

An arm is a ranker version or a serving setting (free-form ``settings``, e.g. ``policy: popular``).
Users are assigned by a hash of (experiment salt, user id) (registry/assignment.py): a user sees
one arm for the whole experiment, and a new experiment (new salt) reshuffles everyone. At most one
experiment runs at a time; ``feedstack serve`` serves it (serve/experiments.py) and logs the
experiment and arm with each impression, which are its exposures. Simulations log exposures to a
file instead. The analysis joins exposures to the impressions, clicks and dwell of the event log
by request id and aggregates per user (the randomization unit).

The analysis (``analyze``) is pure: per arm CTR and dwell per click; each arm's relative CTR lift
over the first arm (the control) with a delta-method interval (registry/stats.py), Bonferroni-
adjusted when there are several treatment arms (Dunn, JASA 1961); the users per arm needed to
detect the spec's ``kpi.ctr_lift_min``; and the sample-ratio-mismatch check.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.events import Click, Dwell, Event, Impression
from feedstack.core.spec import Spec
from feedstack.registry.assignment import arm_of
from feedstack.registry.jsonl import append_jsonl, read_jsonl
from feedstack.registry.stats import (
    RatioMoments,
    ratio_metric_n,
    relative_lift,
    sample_ratio,
    two_proportion_n,
)

EXPERIMENTS_DIR = Path("registry") / "experiments"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Arm:
    name: str
    version: str  # ranker version (model folder) or a label of the setting under test
    share: float  # 0..1
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    salt: str
    started_at: str
    stopped_at: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InputError(f"experiment name: use a-z, 0-9, '_' or '-', got {self.name!r}")
        names = [a.name for a in self.arms]
        if len(self.arms) < 2 or len(set(names)) != len(names):
            raise InputError(f"arms: need >= 2 arms with distinct names, got {names}")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > 1e-9 or any(a.share <= 0 for a in self.arms):
            raise InputError(f"arm shares: must be positive and sum to 1, got {self.shares}")

    @property
    def shares(self) -> dict[str, float]:
        return {a.name: a.share for a in self.arms}

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def assign(self, user_id: str) -> Arm:
        """The user's arm, the same on every request and replica."""
        name = arm_of(user_id, self.salt, self.shares)
        return next(a for a in self.arms if a.name == name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Experiment:
        try:
            arms = tuple(Arm(**a) for a in doc["arms"])
            return cls(doc["name"], arms, doc["salt"], doc["started_at"], doc.get("stopped_at"))
        except (KeyError, TypeError) as exc:
            raise InputError(f"experiment: malformed record ({exc})") from None


def equal_arms(versions: Sequence[str]) -> tuple[Arm, ...]:
    """Arms named control, b, c, ... over ``versions`` with equal shares."""
    names = ["control", *[chr(ord("b") + i) for i in range(len(versions) - 1)]]
    return tuple(Arm(n, v, 1.0 / len(versions)) for n, v in zip(names, versions, strict=True))


# --- storage --------------------------------------------------------------------------------
def _path(project: Path, name: str, suffix: str = ".json") -> Path:
    if not _NAME.match(name):
        raise InputError(f"experiment name: use a-z, 0-9, '_' or '-', got {name!r}")
    return project / EXPERIMENTS_DIR / f"{name}{suffix}"


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def start_experiment(
    project: Path, name: str, arms: Sequence[Arm], now: datetime, salt: str | None = None
) -> Experiment:
    path = _path(project, name)
    if path.exists():
        raise InputError(f"experiment {name!r} exists already ({path}); pick another name")
    running = running_experiment(project)
    if running is not None:
        raise InputError(
            f"experiment {running.name!r} is running; stop it first (feedstack experiment stop)"
        )
    exp = Experiment(name, tuple(arms), salt or f"exp:{name}", now.isoformat())
    _write(path, exp.to_json())
    return exp


def load_experiment(project: Path, name: str) -> Experiment:
    path = _path(project, name)
    try:
        return Experiment.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InputError(f"experiment {name!r}: not found under {path.parent}") from None
    except ValueError as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None


def list_experiments(project: Path) -> list[Experiment]:
    folder = project / EXPERIMENTS_DIR
    if not folder.is_dir():
        return []
    return [load_experiment(project, p.stem) for p in sorted(folder.glob("*.json"))]


def running_experiment(project: Path) -> Experiment | None:
    """The experiment the servers serve: the one not stopped (start refuses a second)."""
    running = [e for e in list_experiments(project) if e.running]
    if len(running) > 1:  # written by hand: refuse rather than pick one
        names = [e.name for e in running]
        raise InputError(f"experiments {names} all running; stop all but one")
    return running[0] if running else None


def stop_experiment(project: Path, name: str, now: datetime) -> Experiment:
    exp = load_experiment(project, name)
    if not exp.running:
        raise InputError(f"experiment {name!r}: stopped already at {exp.stopped_at}")
    exp = replace(exp, stopped_at=now.isoformat())
    _write(_path(project, name), exp.to_json())
    return exp


@dataclass(frozen=True)
class Exposure:
    request_id: str
    user_id: str
    arm: str
    time: str


class ExposureLog:
    """Append-only JSONL of exposures; a batch is flushed and fsynced before ``log`` returns."""

    def __init__(self, project: Path, name: str) -> None:
        self.path = _path(project, name, ".exposures.jsonl")

    def log(self, exposures: Iterable[Exposure]) -> int:
        return append_jsonl(self.path, (asdict(e) for e in exposures))

    def read(self) -> list[Exposure]:
        out = []
        for doc in read_jsonl(self.path):
            try:
                out.append(Exposure(**doc))
            except TypeError:
                continue
        return out


def exposures_from_impressions(name: str, events: Iterable[Event]) -> list[Exposure]:
    """The exposures the server logged with its impressions (``experiment == name``)."""
    return [
        Exposure(ev.request_id, ev.user_id, ev.arm, ev.event_time.isoformat())
        for ev in events
        if isinstance(ev, Impression) and ev.experiment == name and ev.arm is not None
    ]


def served_outcomes(
    exp: Experiment, events: Iterable[Event], logged: Sequence[Exposure] = ()
) -> tuple[list[Exposure], dict[str, ArmOutcome]]:
    """Exposures (the impressions served under ``exp``, plus ``logged`` ones from a file) and
    the per-arm outcomes, in one pass over the event log (only impressions and events with a
    request id are kept)."""
    kept = [
        ev
        for ev in events
        if isinstance(ev, Impression | Click | Dwell) and getattr(ev, "request_id", None)
    ]
    exposures = [*logged, *exposures_from_impressions(exp.name, kept)]
    return exposures, outcomes_from_events(exp, exposures, kept)


# --- analysis -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmOutcome:
    """Per-user sums of one arm: clicks over impressions, plus requests and dwell."""

    ctr: RatioMoments
    requests: int
    dwell_ms: float
    exposed_users: int | None = None  # users logged as exposed (SRM counts these); None: ctr.n

    @classmethod
    def of(
        cls,
        clicks: npt.ArrayLike,
        impressions: npt.ArrayLike,
        requests: int,
        dwell_ms: float,
        exposed_users: int | None = None,
    ) -> ArmOutcome:
        return cls(RatioMoments.of(clicks, impressions), requests, dwell_ms, exposed_users)

    @property
    def users(self) -> int:
        return self.ctr.n if self.exposed_users is None else self.exposed_users


def outcomes_from_events(
    exp: Experiment, exposures: Sequence[Exposure], events: Iterable[Event]
) -> dict[str, ArmOutcome]:
    """Join exposures to impressions, clicks and dwell by request id; sum per user and arm."""
    arm_of_request = {e.request_id: e.arm for e in exposures}
    per_user: dict[tuple[str, str], list[float]] = {}  # (arm, user) -> [clicks, impressions]
    requests = dict.fromkeys(exp.shares, 0)
    dwell = dict.fromkeys(exp.shares, 0.0)
    for e in exposures:
        per_user.setdefault((e.arm, e.user_id), [0.0, 0.0])
    for ev in events:
        rid = getattr(ev, "request_id", None)
        arm = arm_of_request.get(rid) if rid is not None else None
        if arm is None or arm not in requests:
            continue
        cell = per_user.setdefault((arm, ev.user_id), [0.0, 0.0])  # type: ignore[union-attr]
        if isinstance(ev, Impression):
            cell[1] += len(ev.item_ids)
            requests[arm] += 1
        elif isinstance(ev, Click):
            cell[0] += 1
        elif isinstance(ev, Dwell):
            dwell[arm] += ev.dwell_ms
    out = {}
    for arm in exp.shares:
        cells = np.array([v for (a, _), v in per_user.items() if a == arm and v[1] > 0])
        cells = cells.reshape(-1, 2)
        exposed = len({e.user_id for e in exposures if e.arm == arm})
        out[arm] = ArmOutcome.of(cells[:, 0], cells[:, 1], requests[arm], dwell[arm], exposed)
    return out


def analyze(exp: Experiment, outcomes: Mapping[str, ArmOutcome], spec: Spec) -> dict[str, Any]:
    """Per-arm CTR and dwell, lift over control with an interval, sample-size guidance, SRM."""
    r = spec.registry
    arms = [a.name for a in exp.arms]
    missing = [a for a in arms if a not in outcomes]
    if missing:
        raise InputError(f"outcomes: no data for arms {missing}")
    control = outcomes[arms[0]]
    # Several treatment arms each compared with control: Bonferroni keeps the family-wise level.
    comparisons = len(arms) - 1
    level = 1 - r.experiment_alpha / comparisons
    target = spec.kpi.ctr_lift_min
    per_arm: dict[str, Any] = {}
    for arm in exp.arms:
        o = outcomes[arm.name]
        row: dict[str, Any] = {
            "version": arm.version,
            "share": arm.share,
            "users": o.users,
            "users_with_impressions": o.ctr.n,
            "requests": o.requests,
            "impressions": o.ctr.sy,
            "clicks": o.ctr.sx,
            "ctr": o.ctr.ratio,
            "dwell_s_per_click": o.dwell_ms / 1000 / o.ctr.sx if o.ctr.sx else None,
        }
        if arm.name != arms[0]:
            lift = relative_lift(control.ctr, o.ctr, level)
            row["lift"] = _clean(lift.to_json())
            row["significant"] = lift.p_value < r.experiment_alpha / comparisons
        per_arm[arm.name] = row
    guidance: dict[str, Any] = {"target_relative_lift": target, "alpha": r.experiment_alpha}
    guidance["power"] = r.experiment_power
    if 0 < control.ctr.ratio < 1 and target != 0:
        guidance["impressions_per_arm_two_proportion"] = two_proportion_n(
            control.ctr.ratio, target, r.experiment_alpha / comparisons, r.experiment_power
        )
    if control.ctr.n >= 2 and control.ctr.ratio > 0 and target != 0:
        need = ratio_metric_n(
            control.ctr, target, r.experiment_alpha / comparisons, r.experiment_power
        )
        have = min(outcomes[a].ctr.n for a in arms)
        guidance["users_per_arm"] = need
        guidance["users_per_arm_now"] = have
        guidance["enough"] = have >= need
    # Twice: on exposed users (is assignment healthy?) and on the users the analysis counts,
    # those with logged impressions (does every arm's logging arrive?).
    shares = [exp.shares[a] for a in arms]
    srm = sample_ratio([outcomes[a].users for a in arms], shares, r.srm_p_value)
    analyzed = sample_ratio([outcomes[a].ctr.n for a in arms], shares, r.srm_p_value)
    return {
        "experiment": exp.name,
        "running": exp.running,
        "started_at": exp.started_at,
        "stopped_at": exp.stopped_at,
        "control": arms[0],
        "interval_level": level,
        "arms": per_arm,
        "sample_size": guidance,
        "srm": {
            "users": list(srm.counts),
            "expected": list(srm.expected),
            "chi2": srm.chi2,
            "p_value": srm.p_value,
            "mismatch": srm.mismatch or analyzed.mismatch,
            "threshold": r.srm_p_value,
            "analyzed_users": list(analyzed.counts),
            "analyzed_p_value": analyzed.p_value,
        },
    }


def _clean(doc: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if np.isfinite(v) else None) for k, v in doc.items()}
