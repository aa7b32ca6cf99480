"""Device tokens: HMAC-signed, carrying the device id and an expiry, verified without a database round trip.

Format: `v1.<device uuid hex>.<expiry unix seconds>.<base64url HMAC-SHA256>`. The signature covers a
domain-separation prefix, so a signature made for anything else with the same key never verifies here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
import uuid
from dataclasses import dataclass
from hashlib import sha256

from app.errors import Unauthorized

_VERSION = "v1"
_DOMAIN = b"fleetbed.device-token."
_MAX_TOKEN_CHARS = 128
# Any bearer token: a device token, or an operator token of the operator's choosing.
MAX_BEARER_CHARS = 1024
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class DeviceToken:
    token: str
    device_id: uuid.UUID
    expires_at: int


def _signature(secret: bytes, device_hex: str, expires_at: int) -> bytes:
    message = _DOMAIN + f"{_VERSION}.{device_hex}.{expires_at}".encode()
    return hmac.new(secret, message, sha256).digest()


def issue_device_token(secret: bytes, device_id: uuid.UUID, ttl_s: int, now: float | None = None) -> DeviceToken:
    expires_at = int(now if now is not None else time.time()) + ttl_s
    signature = _signature(secret, device_id.hex, expires_at)
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return DeviceToken(f"{_VERSION}.{device_id.hex}.{expires_at}.{encoded}", device_id, expires_at)


def verify_device_token(secret: bytes, token: str, now: float | None = None) -> uuid.UUID:
    """The token's device id, or `Unauthorized` saying why (never revealing the expected value)."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise Unauthorized("malformed device token; log in again with POST /login")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _VERSION:
        raise Unauthorized("malformed device token; log in again with POST /login")
    _, device_hex, expiry_text, encoded = parts
    try:
        device_id = uuid.UUID(hex=device_hex)
        expires_at = int(expiry_text)
        given = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, binascii.Error):
        raise Unauthorized("malformed device token; log in again with POST /login") from None
    if device_id.hex != device_hex or str(expires_at) != expiry_text:
        raise Unauthorized("malformed device token; log in again with POST /login")
    if not hmac.compare_digest(given, _signature(secret, device_hex, expires_at)):
        raise Unauthorized("invalid device token signature; log in again with POST /login")
    if expires_at <= (now if now is not None else time.time()):
        raise Unauthorized("device token expired; log in again with POST /login")
    return device_id


def bearer_token(authorization: str | None) -> str:
    """The token from an `Authorization: Bearer ...` header, or `Unauthorized`.

    A token is visible ASCII and at most `MAX_BEARER_CHARS` long; anything else (bytes that are not UTF-8 arrive
    here as lone surrogates) is refused before it is compared or parsed.
    """
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization must use the Bearer scheme: 'Authorization: Bearer <token>'")
    token = value.strip()
    if not is_bearer_token(token):
        raise Unauthorized(
            f"a bearer token is at most {MAX_BEARER_CHARS} visible ASCII characters; "
            "devices log in with POST /login, operators use the operator token"
        )
    return token


def is_bearer_token(text: str) -> bool:
    return len(text) <= MAX_BEARER_CHARS and _VISIBLE_ASCII.fullmatch(text) is not None


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (any text: lone surrogates are compared, not raised on)."""
    return hmac.compare_digest(given.encode(errors="surrogatepass"), expected.encode(errors="surrogatepass"))


class TokenVerifier:
    """Verifies device tokens, remembering the ones already verified so a device's polls skip the HMAC.

    Only tokens whose signature checked out are remembered; expiry is checked on every use.
    """

    def __init__(self, secret: bytes, max_entries: int = 200_000) -> None:
        self._secret = secret
        self._max_entries = max_entries
        self._verified: dict[str, tuple[uuid.UUID, int]] = {}

    def verify(self, token: str, now: float | None = None) -> uuid.UUID:
        known = self._verified.get(token)
        if known is not None:
            device_id, expires_at = known
            if expires_at > (now if now is not None else time.time()):
                return device_id
            del self._verified[token]
        device_id = verify_device_token(self._secret, token, now)
        if len(self._verified) >= self._max_entries:
            self._verified.clear()  # crude but bounded; the next polls refill it
        self._verified[token] = (device_id, int(token.split(".")[2]))
        return device_id
