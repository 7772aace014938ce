"""The event bodies in the OpenAPI schema: ``POST /v1/events`` reads its body itself (bounded,
streamed, split without a model), so FastAPI cannot infer it; this describes it from the one
event schema (core/events.py), so clients and schema fuzzers see every event type and field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from feedstack.core.events import EVENT_ADAPTER

REF = "#/components/schemas/{model}"


def event_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the schema of one event, the component schemas it refers to)."""
    schema = EVENT_ADAPTER.json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return schema, defs


def events_request_body(max_events: int) -> dict[str, Any]:
    event, _ = event_schemas()
    array = {"type": "array", "items": event, "minItems": 1, "maxItems": max_events}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        array,
                        {
                            "type": "object",
                            "properties": {"events": array},
                            "required": ["events"],
                            "additionalProperties": False,
                        },
                    ]
                }
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one JSON event per line"}
            },
        },
    }


def install(app: FastAPI, max_events: int) -> None:
    """Make ``app.openapi()`` include the events body and the event component schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _, defs = event_schemas()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
            doc["components"]["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            }
            post = doc["paths"]["/v1/events"]["post"]
            post["requestBody"] = events_request_body(max_events)
            post["security"] = [{"ApiKey": []}]
            doc["paths"]["/v1/feed/{user_id}"]["get"]["security"] = [{"ApiKey": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
