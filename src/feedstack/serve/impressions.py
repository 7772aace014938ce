"""The impression event of a served feed: request id, user, the served items in order (position =
index) and the model version. Its event id is derived from the request id, so a retried write
never logs a list twice. The serving process queues it to its writer thread (serve/intake.py),
off the request's path; a click's request id names the request it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson


def impression_payload(
    request_id: str, user_id: str, items: Sequence[str], model_version: str, at: datetime
) -> bytes:
    return orjson.dumps(
        {
            "type": "impression",
            "event_id": f"imp-{request_id}",
            "event_time": at.isoformat(),
            "request_id": request_id,
            "user_id": user_id,
            "item_ids": list(items),
            "model_version": model_version,
        }
    )
