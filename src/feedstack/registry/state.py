"""Which model versions serve and how traffic splits between them (PROJECT/registry/rollout.json).

Written by the rollout runner (``feedstack deploy`` / ``feedstack rollout ...``), read by every
serving replica at start and on reload. A version is a model folder name under PROJECT/models/.
The file is replaced atomically (write, fsync, rename): a replica reads the old state or the new,
never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from feedstack.core.errors import InputError

STATE_FILE = Path("registry") / "rollout.json"


@dataclass(frozen=True)
class RolloutState:
    champion: str
    challenger: str | None = None
    canary_share: float = 0.0  # 0..1 of users (registry/assignment.py in_canary)
    salt: str = "canary"
    updated_at: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_share <= 1.0:
            raise InputError(f"canary_share: must be in [0, 1], got {self.canary_share}")
        if self.challenger is None and self.canary_share > 0:
            raise InputError(f"canary_share: {self.canary_share} with no challenger")


def load_rollout(project: Path) -> RolloutState | None:
    """The current state, or None when nothing was deployed yet (serve the newest model)."""
    path = project / STATE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable rollout state ({exc})") from None
    try:
        return RolloutState(**doc)
    except TypeError as exc:
        raise InputError(f"{path}: bad rollout state ({exc})") from None


def save_rollout(project: Path, state: RolloutState) -> Path:
    path = project / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = asdict(state)
    doc["updated_at"] = state.updated_at or datetime.now(UTC).isoformat()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
