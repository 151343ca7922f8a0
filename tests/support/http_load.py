"""A bounded HTTP load generator: looping client threads on loopback, counting every failure."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.failed


class LoadGenerator:
    """`clients` threads each GET `path` (with `headers`, e.g. the API key) in a loop until
    stopped or a bound is hit.

    A fresh connection per request, so every request goes through accept(): refused or reset
    connections while no server holds the socket show up as failures.
    """

    def __init__(
        self,
        port: int,
        path: str = "/v1/system/ping",
        clients: int = 4,
        max_seconds: float = 60.0,
        max_requests: int = 200_000,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.headers = dict(headers or {})
        self.path = path
        self.clients = clients
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _one_request(self) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                # the body tells whose answer it is (nginx's, Gunicorn's or the application's)
                return f"HTTP {response.status}: {body[:160]!r}"
            return None
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            error = self._one_request()
            with self._lock:
                if error is None:
                    self.result.ok += 1
                else:
                    self.result.failed += 1
                    if len(self.result.errors) < 20:
                        self.result.errors.append(error)
                if self.result.total >= self.max_requests:
                    return

    def __enter__(self) -> LoadGenerator:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._loop, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def ok_count(self) -> int:
        with self._lock:
            return self.result.ok

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.result

    def __exit__(self, *exc: object) -> None:
        self.stop()
