"""Any bytes, the way a hostile client sends them: property-based tests (hypothesis) write raw requests to a real
`fleetbed serve` over a socket (no client library in between to normalise them) and check that nothing is a 5xx.

Every answer is < 500, and every error answer is the JSON error contract: those of the handlers, and those of
aiohttp's HTTP parser to bytes that are not HTTP at all (`bad_http`, before any handler runs). Random bytes go into the
path, the query string, every header (Authorization above all, with and without a real token) and the body of
every route; numeric parameters also get other scripts' digits and thousands of digits.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import tempfile
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import postgres as pg
from tests.support.processes import free_port, read_output, running_fleetbed

pytestmark = pytest.mark.slow

OPERATOR_TOKEN = "operator-token-for-byte-fuzzing-0123456789"
CASES = Counter[str]()
REFUSED_BY_PARSER = Counter[str]()  # bytes that are not HTTP: refused by aiohttp's parser before any handler
FUZZ = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)  # fmt: skip

ROUTES: list[tuple[bytes, bytes]] = [
    (b"POST", b"/login"),
    (b"GET", b"/command"),
    (b"POST", b"/measurement"),
    (b"GET", b"/stats"),
    (b"PUT", b"/devices/{}/command"),
    (b"DELETE", b"/devices/{}/command"),
    (b"POST", b"/runs"),
    (b"GET", b"/runs"),
    (b"GET", b"/runs/{}"),
    (b"POST", b"/runs/{}/snapshots"),
    (b"POST", b"/runs/{}/finish"),
    (b"GET", b"/healthz"),
    (b"GET", b"/readyz"),
    (b"GET", b"/metrics"),
    (b"GET", b"/openapi.json"),
]


@dataclass(frozen=True)
class Service:
    port: int
    device_token: str


@pytest.fixture(scope="module")
def service(postgres_server: str) -> Iterator[Service]:
    url = asyncio.run(pg.fresh_database(postgres_server))
    port = free_port()
    env = {
        "FLEETBED_DATABASE_URL": url,
        "FLEETBED_DATA_DIR": tempfile.mkdtemp(),
        "FLEETBED_PORT": str(port),
        "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    try:
        with running_fleetbed(["serve"], env, port) as process:
            with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/login", method="POST")) as r:
                token = orjson.loads(r.read())["token"]
            yield Service(port, token)
            process.terminate()
            process.wait(30)
            log = read_output(process)
        assert "Traceback" not in log, f"an unexpected error was logged:\n{log[-4000:]}"
        print(
            f"byte-level cases sent: {sum(CASES.values())} ({dict(CASES)}); "
            f"refused by the HTTP parser: {dict(REFUSED_BY_PARSER)}"
        )
    finally:
        asyncio.run(pg.drop_database(postgres_server, url))


def exchange(port: int, request: bytes) -> bytes:
    """Send one raw request on a fresh connection; what came back until the server closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = bytearray()
        while chunk := connection.recv(65536):
            received += chunk
    return bytes(received)


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def check(service: Service, kind: str, request: bytes) -> None:
    """The one property: an answer below 500, and the JSON error contract for every answer a handler gave."""
    CASES[kind] += 1
    answer = exchange(service.port, request)
    match = _STATUS_LINE.match(answer)
    assert match is not None, f"no HTTP answer to {request[:300]!r}: {answer[:300]!r}"
    status = int(match[1])
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status < 500, f"{status} for {request[:500]!r}: {body[:300]!r}"
    if status >= 400:
        assert b"content-type: application/json" in head.lower(), f"{status} for {request[:500]!r}: {answer[:400]!r}"
        document = orjson.loads(body)
        assert isinstance(document["error"], str)
        assert isinstance(document["message"], str)
        if document["error"] == "bad_http":
            REFUSED_BY_PARSER[kind] += 1


@pytest.mark.parametrize(
    ("request_", "found"),
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), "method", id="a-tls-hello"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", "header", id="a-header-without-colon"),
        pytest.param(b"POST /login HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{}", "Content-Length",
                     id="two-lengths"),
        pytest.param(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", "more than 8190 bytes",
                     id="a-line-over-the-limit"),
    ],
)  # fmt: skip
def test_bytes_that_are_not_http_get_the_json_contract(service: Service, request_: bytes, found: str) -> None:
    answer = exchange(service.port, request_)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", head), answer[:300]
    assert b"content-type: application/json" in head.lower(), answer[:300]
    document = orjson.loads(body)
    assert document["error"] == "bad_http", document
    assert found.lower() in document["message"].lower(), document
    assert "send an HTTP/1.1 request" in document["message"], document


def request_bytes(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method in (b"POST", b"PUT"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# Bytes that stay inside one header line or one request target (no CR, LF; NUL and all the rest allowed).
line_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# Bytes an HTTP parser lets through in a header value: no control characters, anything from 0x80 up (not UTF-8).
value_bytes = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F))
header_values = st.one_of(value_bytes, value_bytes, line_bytes)
# Numbers as clients get them wrong: other scripts' digits, superscripts, signs, thousands of digits.
odd_numbers = st.one_of(
    st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=12),
    st.text("0123456789", min_size=10, max_size=6000),
    st.text("0123456789+-_. eE", max_size=12),
    st.text(max_size=20),
).map(lambda text: urllib.parse.quote(text, safe="").encode())
segment = st.one_of(
    line_bytes.map(lambda b: urllib.parse.quote_from_bytes(b, safe="").encode()),
    line_bytes.map(lambda b: b.replace(b" ", b"")),
    st.uuids().map(lambda u: str(u).encode()),
)


def tokens(service: Service) -> st.SearchStrategy[bytes]:
    real = [service.device_token.encode(), OPERATOR_TOKEN.encode()]
    return st.one_of(
        st.sampled_from(real),
        st.tuples(st.sampled_from(real), header_values).map(lambda pair: pair[0] + pair[1]),
        header_values,
    )


def authorization(service: Service) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.one_of(
        st.just([]),
        tokens(service).map(lambda token: [(b"Authorization", b"Bearer " + token)]),
        header_values.map(lambda value: [(b"Authorization", value)]),
    )


@given(data=st.data())
@FUZZ
def test_paths_and_query_strings(service: Service, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(ROUTES))
    path = template.replace(b"{}", data.draw(segment)) if b"{}" in template else template
    query = data.draw(
        st.one_of(
            st.just(b""),
            odd_numbers.map(lambda n: b"?hours=" + n + b"&limit=" + n),
            segment.map(lambda q: b"?" + q),
            st.tuples(segment, segment).map(lambda kv: b"?" + kv[0] + b"=" + kv[1]),
        )
    )
    if data.draw(st.booleans()):
        path = data.draw(segment.map(lambda s: b"/" + s))
    headers = data.draw(authorization(service))
    body = b"{}" if method in (b"POST", b"PUT") else b""
    check(service, "path and query", request_bytes(method, path + query, headers, body))


@given(data=st.data())
@FUZZ
def test_headers(service: Service, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(ROUTES))
    path = template.replace(b"{}", str(data.draw(st.uuids())).encode())
    headers = data.draw(authorization(service))
    names = st.one_of(
        st.sampled_from([b"Content-Type", b"Accept", b"Authorization", b"Content-Encoding", b"Transfer-Encoding",
                         b"Cookie", b"X-Forwarded-For", b"Expect", b"Connection", b"Upgrade"]),
        st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=20).map(str.encode),
        st.binary(min_size=1, max_size=20).filter(lambda b: b":" not in b and b"\r" not in b and b"\n" not in b),
    )  # fmt: skip
    headers += data.draw(st.lists(st.tuples(names, header_values), max_size=4))
    body = b'{"charge": true}' if method in (b"POST", b"PUT") else b""
    check(service, "headers", request_bytes(method, path, headers, body))


@given(data=st.data())
@FUZZ
def test_bodies(service: Service, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from([r for r in ROUTES if r[0] in (b"POST", b"PUT")]))
    path = template.replace(b"{}", str(data.draw(st.uuids())).encode())
    token = data.draw(st.sampled_from([service.device_token, OPERATOR_TOKEN])).encode()
    content_type = data.draw(st.sampled_from([b"application/json", b"application/json; charset=latin-1", b""]))
    text = st.text(max_size=30)
    json_like = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | text | odd_numbers.map(bytes.decode),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode())  # the standard library writes NaN and integers of any size
    body = data.draw(
        st.one_of(
            st.binary(max_size=300),
            json_like,
            st.tuples(json_like, st.binary(max_size=8), st.integers(0, 300)).map(
                lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
            ),
        )
    )
    headers = [(b"Authorization", b"Bearer " + token)]
    if content_type:
        headers.append((b"Content-Type", content_type))
    check(service, "bodies", request_bytes(method, path, headers, body))
