"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json.

Every limit it publishes is read from where it is enforced: the measurement's in `app.limits`, each endpoint's own
in its handler module.
"""

from __future__ import annotations

from typing import Any

from app import __version__
from app.handlers.devices import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_TEXT_CHARS,
    MAX_SECRET_CHARS,
    MIN_SECRET_CHARS,
)
from app.handlers.operator import MAX_FLUSH_PERCENT, MAX_INTERVAL_S
from app.handlers.runs import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_NAME_CHARS
from app.handlers.stats import DEFAULT_HOURS, MAX_HOURS
from app.limits import DEFAULT_MAX_READING_AGE_S, MAX_BATCH_READINGS, MAX_FUTURE_S, NUMERIC_FIELDS

_MEASUREMENT_DESCRIPTIONS = {
    "time": f"When the reading was taken: RFC 3339 with an offset, at most {MAX_FUTURE_S // 60} minutes in the "
    f"future and at most FLEETBED_MAX_READING_AGE_S (default {DEFAULT_MAX_READING_AGE_S} s, "
    f"{DEFAULT_MAX_READING_AGE_S // 86400} days) old.",
    "charge_now": "Battery charge now, 0..charge_full.",
    "charge_full": "Battery charge when full (> 0).",
    "charge_rate": "Charge change per hour (negative while discharging).",
    "ambient_temp": "Air temperature around the device, degC.",
    "water_temp": "Water temperature, degC.",
    "water_level": "Fill level, percent of the tank (0..100).",
}


def _measurement_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "time": {"type": "string", "format": "date-time", "description": _MEASUREMENT_DESCRIPTIONS["time"]}
    }
    for name, (kind, low, high) in NUMERIC_FIELDS.items():
        properties[name] = {
            "type": "integer" if kind == "int" else "number",
            "minimum": low,
            "maximum": high,
            "description": _MEASUREMENT_DESCRIPTIONS[name],
        }
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


_METADATA = {
    "type": ["object", "null"],
    "maxProperties": MAX_METADATA_KEYS,
    "propertyNames": {"maxLength": MAX_METADATA_KEY_CHARS},
    "additionalProperties": {"type": ["string", "number", "boolean", "null"], "maxLength": MAX_METADATA_TEXT_CHARS},
}
_SECRET = {"type": "string", "minLength": MIN_SECRET_CHARS, "maxLength": MAX_SECRET_CHARS}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_AUTH_ERRORS = {
    "401": _error("No token, or a forged, tampered, truncated or expired one."),
    "403": _error("A valid token of the wrong role."),
}
_DB_ERRORS = {"503": _error("The database is unavailable or the service is shedding load; see Retry-After.")}
_BODY_ERRORS = {
    "400": _error("The body is not valid JSON or not the expected shape."),
    "413": _error("The body is over the size limit."),
    "415": _error("The body is not application/json."),
    "422": _error("Fields are missing, unknown or out of range; `fields` lists them."),
}
_COMMAND = {
    "type": "object",
    "required": ["charge", "fill", "flush", "interval_s"],
    "properties": {
        "charge": {"type": "boolean", "description": "Charge the battery during the next interval."},
        "fill": {"type": "boolean", "description": "Refill the tank."},
        "flush": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": MAX_FLUSH_PERCENT,
            "description": "Percent of the tank to drain, or null.",
        },
        "interval_s": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_INTERVAL_S,
            "description": "Seconds until the next poll.",
        },
    },
}
_DEVICE_ID_PARAM = {
    "name": "device_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


_RUN_ID_PARAM = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_RUN = {
    "type": "object",
    "required": ["id", "name", "started_at", "finished_at", "status", "config", "summary"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "status": {"type": "string", "enum": ["running", "passed", "failed", "finished", "aborted"]},
        "config": {"type": "object", "description": "The load generator's settings, as it sent them."},
        "summary": {"type": ["object", "null"], "description": "Totals and the SLO verdict, sent at the end."},
    },
}
_RUN_ERRORS = {**_AUTH_ERRORS, **_DB_ERRORS}
_RUNS_PATHS: dict[str, Any] = {
    "/runs": {
        "post": {
            "summary": "Register a load-test run (the Locust master does at test start).",
            "security": [{"operator": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
                                "config": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {"201": _ok("The new run.", _RUN), **_BODY_ERRORS, **_RUN_ERRORS},
        },
        "get": {
            "summary": "Runs, newest first, with their snapshot counts.",
            "security": [{"operator": []}],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIST_LIMIT,
                        "default": DEFAULT_LIST_LIMIT,
                    },
                }
            ],
            "responses": {
                "200": _ok("Runs.", {"type": "object", "properties": {"runs": {"type": "array", "items": _RUN}}}),
                "422": _error(f"limit is not an integer between 1 and {MAX_LIST_LIMIT} (ASCII digits)."),
                **_RUN_ERRORS,
            },
        },
    },
    "/runs/{run_id}": {
        "get": {
            "summary": "One run with all its snapshots, oldest first.",
            "security": [{"operator": []}],
            "parameters": [_RUN_ID_PARAM],
            "responses": {
                "200": _ok("The run.", _RUN),
                "400": _error("The run id is not a UUID."),
                "404": _error("No such run."),
                **_RUN_ERRORS,
            },
        }
    },
    "/runs/{run_id}/snapshots": {
        "post": {
            "summary": "Store aggregated load-generator stats at a time (default now); the same time replaces.",
            "security": [{"operator": []}],
            "parameters": [_RUN_ID_PARAM],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["stats"],
                            "additionalProperties": False,
                            "properties": {
                                "time": {"type": "string", "format": "date-time"},
                                "stats": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _ok("Stored.", {"type": "object"}),
                **_BODY_ERRORS,
                "404": _error("No such run."),
                **_RUN_ERRORS,
            },
        }
    },
    "/runs/{run_id}/finish": {
        "post": {
            "summary": "Finish the run with its status and summary (a later call replaces them).",
            "security": [{"operator": []}],
            "parameters": [_RUN_ID_PARAM],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "status": {"type": "string", "enum": ["passed", "failed", "finished", "aborted"]},
                                "summary": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _ok("The finished run.", _RUN),
                **_BODY_ERRORS,
                "404": _error("No such run."),
                **_RUN_ERRORS,
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    measurement = {"$ref": "#/components/schemas/Measurement"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetbed device-data service",
            "version": __version__,
            "description": "Devices log in, poll for commands and post measurements; operators steer them.",
        },
        "components": {
            "securitySchemes": {
                "device": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Device token from POST /login.",
                },
                "operator": {"type": "http", "scheme": "bearer", "description": "FLEETBED_OPERATOR_TOKEN."},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "fields": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "problem"],
                                "properties": {"field": {"type": "string"}, "problem": {"type": "string"}},
                            },
                        },
                    },
                },
                "Measurement": _measurement_schema(),
                "Command": _COMMAND,
            },
        },
        "paths": {
            "/login": {
                "post": {
                    "summary": "Register the device if new and get a token.",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "device_id": {"type": ["string", "null"], "format": "uuid"},
                                        "device_secret": {
                                            **_SECRET,
                                            "type": ["string", "null"],
                                            "description": "The secret the device's first login returned; "
                                            "required on every later login of a registered device.",
                                        },
                                        "enroll_key": {"type": ["string", "null"]},
                                        "metadata": {
                                            **_METADATA,
                                            "description": "Replaced only at the first login or when the "
                                            "device proves itself with its secret.",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok(
                            "The device's token.",
                            {
                                "type": "object",
                                "required": ["device_id", "token", "expires_at", "created"],
                                "properties": {
                                    "device_id": {"type": "string", "format": "uuid"},
                                    "token": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                    "created": {"type": "boolean"},
                                    "device_secret": {
                                        **_SECRET,
                                        "description": "Returned once, when the device is given its secret (its "
                                        "first login); only its hash is stored. Keep it: later logins need it.",
                                    },
                                },
                            },
                        ),
                        **_BODY_ERRORS,
                        "401": _error(
                            "The fleet is closed and no enrolment key was sent, or the device is registered and "
                            "the device_secret is missing or wrong."
                        ),
                        "403": _error(
                            "Wrong enrolment key, or enrolment is closed (the service listens beyond loopback "
                            "without FLEETBED_ENROLL_KEY) and the device is new."
                        ),
                        "429": _error("Too many logins from this client address; see Retry-After."),
                        **_DB_ERRORS,
                    },
                }
            },
            "/command": {
                "get": {
                    "summary": "What the device should do for the next interval.",
                    "security": [{"device": []}],
                    "responses": {
                        "200": _ok(
                            "The device's standing command, or the fleet default.",
                            {"$ref": "#/components/schemas/Command"},
                        ),
                        **_AUTH_ERRORS,
                        **_DB_ERRORS,
                    },
                }
            },
            "/measurement": {
                "post": {
                    "summary": f"Store one reading or an array of up to {MAX_BATCH_READINGS}; 201 only once committed.",
                    "security": [{"device": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        measurement,
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": MAX_BATCH_READINGS,
                                            "items": measurement,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _ok(
                            "Committed. A repeated (device, time) counts as accepted and as a duplicate.",
                            {
                                "type": "object",
                                "required": ["accepted", "duplicates"],
                                "properties": {
                                    "accepted": {"type": "integer", "minimum": 1},
                                    "duplicates": {"type": "integer", "minimum": 0},
                                },
                            },
                        ),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        **_DB_ERRORS,
                    },
                }
            },
            "/stats": {
                "get": {
                    "summary": "Fleet totals from each device's latest reading; hourly water-temperature statistics.",
                    "security": [{"device": []}, {"operator": []}],
                    "parameters": [
                        {
                            "name": "hours",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_HOURS,
                                "default": DEFAULT_HOURS,
                            },
                        }
                    ],
                    "responses": {
                        "200": _ok(
                            "Statistics.",
                            {
                                "type": "object",
                                "required": [
                                    "measurements",
                                    "devices",
                                    "reporting_devices",
                                    "total_battery_charge",
                                    "total_water_volume",
                                    "mean_water_temp_by_hour",
                                    "as_of",
                                ],
                                "properties": {
                                    "measurements": {"type": "integer"},
                                    "devices": {"type": "integer"},
                                    "reporting_devices": {"type": "integer"},
                                    "total_battery_charge": {"type": "integer"},
                                    "total_water_volume": {"type": "integer"},
                                    "mean_water_temp_by_hour": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["hour", "readings", "mean", "stddev"],
                                            "properties": {
                                                "hour": {"type": "string", "format": "date-time"},
                                                "readings": {"type": "integer"},
                                                "mean": {"type": "number"},
                                                "stddev": {"type": ["number", "null"]},
                                            },
                                        },
                                    },
                                    "as_of": {"type": "string", "format": "date-time"},
                                },
                            },
                        ),
                        "401": _AUTH_ERRORS["401"],
                        "422": _error("hours out of range."),
                        **_DB_ERRORS,
                    },
                }
            },
            "/devices/{device_id}/command": {
                "put": {
                    "summary": "Set the device's standing command (fields left out take the fleet default).",
                    "security": [{"operator": []}],
                    "parameters": [_DEVICE_ID_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {**_COMMAND, "required": [], "additionalProperties": False}}
                        },
                    },
                    "responses": {
                        "200": _ok("The stored command.", {"$ref": "#/components/schemas/Command"}),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        "404": _error("No such device."),
                        **_DB_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Remove the standing command; the device gets the fleet default again.",
                    "security": [{"operator": []}],
                    "parameters": [_DEVICE_ID_PARAM],
                    "responses": {
                        "200": _ok("The fleet default the device now gets.", {"$ref": "#/components/schemas/Command"}),
                        "400": _error("The device id is not a UUID."),
                        **_AUTH_ERRORS,
                        "404": _error("No such device."),
                        **_DB_ERRORS,
                    },
                },
            },
            "/devices/{device_id}/metadata": {
                "put": {
                    "summary": "Replace the device's metadata (the operator; devices change theirs at login).",
                    "security": [{"operator": []}],
                    "parameters": [_DEVICE_ID_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {**_METADATA, "type": "object"}}},
                    },
                    "responses": {
                        "200": _ok(
                            "The stored metadata.",
                            {
                                "type": "object",
                                "required": ["device_id", "metadata"],
                                "properties": {
                                    "device_id": {"type": "string", "format": "uuid"},
                                    "metadata": {"type": "object"},
                                },
                            },
                        ),
                        **_BODY_ERRORS,
                        **_AUTH_ERRORS,
                        "404": _error("No such device."),
                        **_DB_ERRORS,
                    },
                }
            },
            "/devices/{device_id}/secret": {
                "delete": {
                    "summary": "Forget the device's secret: its next login is given a new one.",
                    "security": [{"operator": []}],
                    "parameters": [_DEVICE_ID_PARAM],
                    "responses": {
                        "200": _ok("The secret is forgotten.", {"type": "object"}),
                        "400": _error("The device id is not a UUID."),
                        **_AUTH_ERRORS,
                        "404": _error("No such device."),
                        **_DB_ERRORS,
                    },
                }
            },
            **_RUNS_PATHS,
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition.",
                    "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {}}}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive.",
                    "responses": {"200": _ok("Alive.", {"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The database answers and migrations are current.",
                    "responses": {
                        "200": _ok("Ready.", {"type": "object"}),
                        "503": _ok("Not ready; `reason` says why.", {"type": "object"}),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})},
                }
            },
        },
    }
