"""Who is calling: a device (by its token) or the operator (by the operator token)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web

from app.errors import Forbidden, Unauthorized
from app.keys import TOKENS
from app.settings import Settings
from app.tokens import bearer_token, tokens_equal


@dataclass(frozen=True)
class Caller:
    """A device (device_id set) or the operator (device_id None)."""

    device_id: uuid.UUID | None

    @property
    def is_operator(self) -> bool:
        return self.device_id is None


def identify(request: web.Request, settings: Settings) -> Caller:
    token = bearer_token(request.headers.get("Authorization"))
    if tokens_equal(token, settings.operator_token):
        return Caller(device_id=None)
    if not token.startswith("v1."):
        raise Unauthorized("unknown token; devices log in with POST /login, operators use the operator token")
    return Caller(device_id=request.app[TOKENS].verify(token))


def require_device(request: web.Request, settings: Settings) -> uuid.UUID:
    caller = identify(request, settings)
    if caller.device_id is None:
        raise Forbidden("this endpoint is for devices; use a device token from POST /login")
    return caller.device_id


def require_operator(request: web.Request, settings: Settings) -> None:
    caller = identify(request, settings)
    if not caller.is_operator:
        raise Forbidden("this endpoint is for operators; use the operator token (FLEETBED_OPERATOR_TOKEN)")
