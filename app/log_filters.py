"""Logging that tells operators about the service, not about every malformed request a client sends.

aiohttp logs a full traceback at error level when a client sends bytes that are not HTTP (a NUL in a header,
a broken request line); the client already got its 400. Those records are dropped; everything else aiohttp logs
stays.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class DropClientProtocolErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


def quiet_client_protocol_errors() -> None:
    logging.getLogger("aiohttp.server").addFilter(DropClientProtocolErrors())
