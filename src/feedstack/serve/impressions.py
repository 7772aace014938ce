"""The impression event of a served feed: request id, user, the served items in order (position =
index), the model version and, under a running A/B test, the experiment and the user's arm. Its
event id is derived from the request id, so a retried write never logs a list twice. The serving
process queues it to its writer thread (serve/intake.py), off the request's path; a click's
request id names the request it came from, which is how an experiment's clicks find their arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson


def impression_payload(
    request_id: str,
    user_id: str,
    items: Sequence[str],
    model_version: str,
    at: datetime,
    experiment: str | None = None,
    arm: str | None = None,
) -> bytes:
    doc: dict[str, Any] = {
        "type": "impression",
        "event_id": f"imp-{request_id}",
        "event_time": at.isoformat(),
        "request_id": request_id,
        "user_id": user_id,
        "item_ids": list(items),
        "model_version": model_version,
    }
    if experiment is not None:
        doc["experiment"] = experiment
        doc["arm"] = arm
    return orjson.dumps(doc)
