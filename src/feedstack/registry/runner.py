"""The thin runner of a rollout: applies the controller's decisions to the rollout state and
logs every decision with the numbers that drove it.

    PROJECT/registry/rollout.json      RolloutState, read by every serving replica (state.py)
    PROJECT/registry/decisions.jsonl   one JSON line per decision, appended and fsynced

The step in progress (when it began, how many canary requests had been served then) is read back
from the log, so the runner keeps no state of its own and any process can take the next step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from feedstack.core.errors import InputError
from feedstack.registry.jsonl import append_jsonl, read_jsonl
from feedstack.registry.rollout import (
    ArmObservation,
    Decision,
    RolloutPolicy,
    StepProgress,
    decide,
)
from feedstack.registry.state import RolloutState, load_rollout, save_rollout
from feedstack.registry.stats import RatioMoments

DECISIONS_FILE = Path("registry") / "decisions.jsonl"
_STEP_STARTS = ("deploy", "step_up")
_COUNTERS = ("requests", "clicks", "impressions")

OnDecision = Callable[[dict[str, Any]], None]


def read_decisions(project: Path) -> list[dict[str, Any]]:
    return read_jsonl(project / DECISIONS_FILE)


class RolloutRunner:
    def __init__(
        self,
        project: Path,
        policy: RolloutPolicy,
        on_decision: OnDecision | None = None,
    ) -> None:
        self.project = project
        self.policy = policy
        self.on_decision = on_decision

    # --- commands ------------------------------------------------------------------------------
    def plan_deploy(
        self, challenger: str, share: float, now: datetime, champion: str | None = None
    ) -> RolloutState:
        """The state a deploy would write, checked; nothing is written."""
        current = load_rollout(self.project)
        champion = champion or (current.champion if current else None)
        if champion is None:
            raise InputError(
                "champion: none deployed yet; pass --champion VERSION or promote one first"
            )
        if current is not None and current.challenger not in (None, challenger):
            raise InputError(
                f"challenger: a canary of {current.challenger!r} is in progress; "
                "promote it or roll it back first"
            )
        if challenger == champion:
            raise InputError(f"challenger: {challenger!r} is already the champion")
        if not 0.0 < share < 1.0:
            raise InputError(f"canary share: must be in (0, 100) %, got {share * 100:g} %")
        return RolloutState(
            champion, challenger, share, salt=f"canary:{challenger}", updated_at=now.isoformat()
        )

    def deploy(
        self, challenger: str, share: float, now: datetime, champion: str | None = None
    ) -> RolloutState:
        """Start a canary: ``share`` (0..1) of users, chosen by a salt tied to the challenger
        (the same users stay in it as it grows), see the challenger."""
        state = self.plan_deploy(challenger, share, now, champion)
        self._apply(
            state,
            now,
            {"action": "deploy", "share": share, "reasons": ["deployed"], "numbers": {}},
        )
        return state

    def step(self, canary: ArmObservation, control: ArmObservation, now: datetime) -> Decision:
        """One look: decide on the observed arms (cumulative since deploy) and apply."""
        state = self._active()
        start = self._step_start(state)
        started = datetime.fromisoformat(start["time"])
        progress = StepProgress(
            state.canary_share,
            (now - started).total_seconds() / 60.0,
            canary.requests - int(start.get("canary_requests", 0)),
        )
        if not (canary.ctr_by_step and control.ctr_by_step):
            canary, control = self._with_steps(state, canary, control)
        decision = decide(self.policy, progress, canary, control)
        self._apply(self._next_state(state, decision, now), now, decision.to_json(), canary)
        return decision

    def promote(self, now: datetime, reason: str = "promoted by hand") -> RolloutState:
        state = self._active()
        decision = Decision("promote", 1.0, (reason,), {})
        new = self._next_state(state, decision, now)
        self._apply(new, now, decision.to_json())
        return new

    def rollback(self, now: datetime, reason: str = "rolled back by hand") -> RolloutState:
        state = self._active()
        decision = Decision("rollback", 0.0, (reason,), {})
        new = self._next_state(state, decision, now)
        self._apply(new, now, decision.to_json())
        return new

    def status(self) -> dict[str, Any]:
        state = load_rollout(self.project)
        decisions = read_decisions(self.project)
        return {
            "state": None if state is None else _state_json(state),
            "decisions": len(decisions),
            "last_decision": decisions[-1] if decisions else None,
            "steps_pct": [s * 100 for s in self.policy.steps],
        }

    # --- internals ------------------------------------------------------------------------------
    def _active(self) -> RolloutState:
        state = load_rollout(self.project)
        if state is None or state.challenger is None:
            raise InputError("rollout: no canary in progress (feedstack deploy VERSION --canary N)")
        return state

    def _step_start(self, state: RolloutState) -> dict[str, Any]:
        for rec in reversed(read_decisions(self.project)):
            if rec.get("challenger") == state.challenger and rec.get("action") in _STEP_STARTS:
                return dict(rec)
        raise InputError(f"{DECISIONS_FILE}: no deploy record for {state.challenger!r}")

    def _with_steps(
        self, state: RolloutState, canary: ArmObservation, control: ArmObservation
    ) -> tuple[ArmObservation, ArmObservation]:
        """Per-step CTR counters from cumulative ones: the counters logged at each step-up are
        the step boundaries (so CTR is compared step by step, see rollout.ctr_estimates)."""
        bounds: list[dict[str, Any]] = []
        for rec in read_decisions(self.project):
            if rec.get("challenger") != state.challenger:
                continue
            if rec.get("action") == "deploy":
                bounds = [{}]  # a redeploy starts over
            elif rec.get("action") == "step_up" and bounds:
                bounds.append(rec.get("numbers", {}))
        out = []
        for arm, obs in (("canary", canary), ("control", control)):
            now = {"requests": obs.requests, "clicks": obs.ctr.sx, "impressions": obs.ctr.sy}
            marks = [b.get(arm, {}) for b in bounds] + [now]
            steps = []
            for lo, hi in itertools.pairwise(marks):
                n, c, i = (float(hi[k]) - float(lo.get(k, 0)) for k in _COUNTERS)
                if min(n, c, i) < 0:
                    return canary, control  # counters were reset (a restart): pool instead
                steps.append(RatioMoments.from_totals(int(n), c, i))
            out.append(replace(obs, ctr_by_step=tuple(steps)))
        return out[0], out[1]

    @staticmethod
    def _next_state(state: RolloutState, decision: Decision, now: datetime) -> RolloutState:
        stamp = now.isoformat()
        if decision.action == "rollback":
            return RolloutState(state.champion, None, 0.0, state.salt, stamp)
        if decision.action == "promote":
            assert state.challenger is not None
            return RolloutState(state.challenger, None, 0.0, state.salt, stamp)
        return replace(state, canary_share=decision.share, updated_at=stamp)

    def _apply(
        self,
        state: RolloutState,
        now: datetime,
        decision: dict[str, Any],
        canary: ArmObservation | None = None,
    ) -> None:
        before = load_rollout(self.project)
        record = {
            "time": now.isoformat(),
            **decision,
            "champion": before.champion if before else state.champion,
            "challenger": (before.challenger if before else None) or state.challenger,
            "canary_requests": canary.requests if canary else 0,
        }
        # The decision is on disk before the state changes: a crash in between leaves a logged
        # decision to re-apply, never a state change nobody can explain.
        append_jsonl(self.project / DECISIONS_FILE, [record])
        if decision["action"] != "hold":
            save_rollout(self.project, state)
        if self.on_decision is not None:
            self.on_decision(record)


def _state_json(state: RolloutState) -> dict[str, Any]:
    return {
        "champion": state.champion,
        "challenger": state.challenger,
        "canary_share": state.canary_share,
        "canary_pct": round(state.canary_share * 100, 6),
        "salt": state.salt,
        "updated_at": state.updated_at,
    }
