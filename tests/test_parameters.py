"""Query parameters, tokens, ids and headers parsed strictly: the cases the byte-level fuzzing (tests/test_bytes.py)
found, each a 4xx in the JSON contract, sent as raw bytes to the app on a real socket."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN


async def raw_exchange(client: TestClient, request: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def get(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: x", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


OPERATOR = b"Authorization: Bearer " + OPERATOR_TOKEN.encode()


@pytest.mark.parametrize(
    "query",
    [
        b"hours=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        b"hours=%D9%A3",  # Arabic-Indic three
        b"hours=" + b"1" * 5000,  # over int()'s digit limit
        b"hours=%EF%BC%91",  # fullwidth one
        b"hours=+1",
        b"hours=%FF",
    ],
)
async def test_numeric_query_parameters_are_ascii_digits_only(pg_client: TestClient, query: bytes) -> None:
    status, body = await raw_exchange(pg_client, get(b"/stats?" + query, OPERATOR))
    assert status == 422
    assert body["fields"] == [{"field": "hours", "problem": "must be an integer between 1 and 744 (ASCII digits)"}]
    status, body = await raw_exchange(pg_client, get(b"/runs?" + query.replace(b"hours", b"limit"), OPERATOR))
    assert (status, body["error"]) == (422, "invalid_fields")


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff\xfe", b"Bearer " + OPERATOR_TOKEN.encode() + b"\x80", b"Bearer v1.\xc3\x28.1.x", b"\xff"],
)
async def test_tokens_that_are_not_ascii_are_401(pg_client: TestClient, authorization: bytes) -> None:
    status, body = await raw_exchange(pg_client, get(b"/stats", b"Authorization: " + authorization))
    assert (status, body["error"]) == (401, "unauthorized")


async def test_ids_in_the_path_are_ascii_hex_only(pg_client: TestClient) -> None:
    arabic_zeros = b"%D9%A0" * 32  # uuid.UUID() would take these as a UUID of zeros
    status, body = await raw_exchange(pg_client, get(b"/runs/" + arabic_zeros, OPERATOR))
    assert (status, body["error"]) == (400, "bad_request")
    status, _ = await raw_exchange(pg_client, get(b"/runs/urn:uuid:00000000-0000-0000-0000-000000000000", OPERATOR))
    assert status == 400


@pytest.mark.parametrize(("expect", "status"), [(b"\x80", 417), (b"something-else", 417)])
async def test_an_expectation_other_than_100_continue_is_417_in_json(
    pg_client: TestClient, expect: bytes, status: int
) -> None:
    answer_status, body = await raw_exchange(pg_client, get(b"/healthz", b"Expect: " + expect))
    assert (answer_status, body["error"]) == (status, "expectation_failed")
