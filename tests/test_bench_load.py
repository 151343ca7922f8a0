"""The bench's load driver (bench.load) with real wrk against a loopback server that records
what it receives: every request carries the Host header (nginx, in front of every production
bundle, answers a request without one with 400, so a bench run counted every answer as failed),
and the spec's method, path, headers and body; a window of a fraction of seconds runs (wrk 4.1
takes whole seconds only); a RAGFlow error envelope counts as a failure."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load import RequestSpec, run_load

WRK = shutil.which("wrk")
# a spec of each kind the benchmarks send: a JSON POST with a key, and a plain GET
SPECS = [
    RequestSpec(
        "POST",
        "/api/v1/retrieval",
        body='{"question": "téléphone \\"quoted\\""}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer k-1"},
    ),
    RequestSpec("GET", "/v1/system/ping"),
]
# what the server received: method, path, Host, Authorization, body
SEEN: list[tuple[str, str, str | None, str | None, str]] = []
SEEN_LOCK = threading.Lock()


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with RAGFlow's success envelope (an error one under /error) over
    keep-alive HTTP/1.1, and records its request line, headers and body."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        with SEEN_LOCK:
            SEEN.append(
                (self.command, self.path, self.headers.get("Host"),
                 self.headers.get("Authorization"), body)
            )  # fmt: skip
        code = 102 if self.path.startswith("/error") else 0
        data = f'{{"code": {code}, "data": true}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    if WRK is None:
        pytest.fail("wrk is not installed: run `make system-deps` (as root)")
    SEEN.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_every_request_wrk_sends_carries_the_host_and_the_spec(server: str) -> None:
    # a window of a fraction of seconds, as bench.retrieval_scale sizes them
    result = run_load(server, SPECS, connections=2, duration_s=1.5, driver="wrk")
    assert result.driver == "wrk"
    assert result.requests > 0 and result.failed == 0, result
    host = server.removeprefix("http://")
    seen = list(SEEN)
    assert len(seen) >= result.requests
    assert {h for _, _, h, _, _ in seen} == {host}
    post, get = SPECS
    assert {(m, p, a, b) for m, p, _, a, b in seen} == {
        (post.method, post.path, "Bearer k-1", post.body),
        (get.method, get.path, None, ""),
    }


def test_an_error_envelope_counts_as_a_failed_request(server: str) -> None:
    result = run_load(server, [RequestSpec("GET", "/error")], 1, 1, driver="wrk")
    assert result.requests > 0
    assert result.errors == {"body": result.requests}
    assert result.ok == 0
