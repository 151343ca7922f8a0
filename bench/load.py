"""Load driver: wrk (Debian package) with a generated Lua script, or bench.loadgen without wrk.

Load always comes from a separate process, on loopback, for a bounded duration. A response counts
as good only when it is HTTP 200 and its body carries no RAGFlow error code (the API answers errors
with HTTP 200 and `"code": N`), and it contains the spec's `expect` text when one is given.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO_ROOT

# Lua pattern (wrk) and regular expression (loadgen) for an error envelope: "code": N with N != 0.
LUA_ERROR_PATTERN = '"code"%s*:%s*[1-9]'
REGEX_ERROR_PATTERN = rb'"code"\s*:\s*[1-9]'
_WRK_MARK = "WRKJSON "


@dataclass(frozen=True)
class RequestSpec:
    """One request of a load mix. The driver cycles through the specs of a mix in order."""

    method: str
    path: str
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    expect: str = ""


@dataclass
class LoadResult:
    driver: str
    connections: int
    duration_s: float
    requests: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    # Wall-clock times (time.time()) of failed requests; only bench.loadgen records them.
    failures_at: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def ok(self) -> int:
        """Good responses: `requests` counts responses, connection failures are only errors."""
        return self.requests - self.errors.get("status", 0) - self.errors.get("body", 0)

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("failures_at")
        data.update(failed=self.failed, ok=self.ok, rps=round(self.rps, 1))
        return data


def summarise(results: Sequence[LoadResult]) -> dict[str, Any]:
    """One cell of interleaved rounds: median throughput and latencies, every failure, each run."""
    return {
        "rps": statistics.median(r.rps for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "failed": sum(r.failed for r in results),
        "runs": [r.as_dict() for r in results],
    }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    """A Lua string literal for `text` (UTF-8 bytes; anything but plain ASCII as \\ddd)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '\\"' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(specs: list[RequestSpec]) -> str:
    """A wrk Lua script that cycles through `specs` and checks every response body. The
    requests are formatted in ``init``: wrk sets its Host header (from the URL) only then, and a
    request formatted before carries none, which nginx answers with 400."""
    lines = ["local reqs = {}", "local expects = {}", "function format_requests()"]
    for spec in specs:
        headers = (
            "{"
            + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items())
            + "}"
        )
        body = _lua_string(spec.body) if spec.body else "nil"
        lines.append(
            f"  table.insert(reqs, wrk.format({_lua_string(spec.method)}, "
            f"{_lua_string(spec.path)}, {headers}, {body}))"
        )
        lines.append(f"  table.insert(expects, {_lua_string(spec.expect)})")
    lines.append("end")
    lines.append(f"local error_pattern = {_lua_string(LUA_ERROR_PATTERN)}")
    lines.append(
        """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) i = 0; bad_status = 0; bad_body = 0; format_requests() end
function request()
  i = i + 1
  return reqs[((i - 1) % #reqs) + 1]
end
-- Responses on one connection arrive in order, but wrk does not say which request a response
-- answers; a body check that holds for every spec of the mix is applied instead.
function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif body == nil or string.find(body, error_pattern) then
    bad_body = bad_body + 1
  elseif #reqs == 1 and expects[1] ~= "" and not string.find(body, expects[1], 1, true) then
    bad_body = bad_body + 1
  end
end
function done(summary, latency, requests)
  local s, b = 0, 0
  for _, t in ipairs(threads) do s = s + t:get("bad_status"); b = b + t:get("bad_body") end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"timeout": %d, "status": %d, "body": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d, "mean_us": %.1f}\\n',
    MARK, summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, s, b,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
""".replace("MARK", _lua_string(_WRK_MARK))
    )
    return "\n".join(lines) + "\n"


def _wrk_result(stdout: str, connections: int) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(_WRK_MARK):
            raw = json.loads(line[len(_WRK_MARK) :])
            errors = {k: int(raw[k]) for k in ("connect", "read", "write", "timeout", "status")}
            errors["body"] = int(raw["body"])
            return LoadResult(
                driver="wrk",
                connections=connections,
                duration_s=raw["duration_us"] / 1e6,
                requests=int(raw["requests"]),
                errors={k: v for k, v in errors.items() if v},
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                mean_ms=raw["mean_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no result line; its output was:\n{stdout}")


class LoadRun:
    """One load process running in the background: `LoadRun(...).result()` waits for it."""

    def __init__(
        self,
        base_url: str,
        specs: list[RequestSpec],
        connections: int,
        duration_s: float,
        *,
        driver: str = "auto",
        timeout_s: float = 10.0,
    ) -> None:
        if driver == "auto":
            driver = "wrk" if wrk_available() else "loadgen"
        self.driver = driver
        self.connections = connections
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-load-")
        tmp = Path(self._tmp.name)
        if driver == "wrk":
            script = tmp / "mix.lua"
            script.write_text(wrk_script(specs))
            threads = max(1, min(2, connections))
            argv = [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{math.ceil(duration_s)}s",  # whole seconds: wrk 4.1 takes no fraction
                f"--timeout={math.ceil(timeout_s)}s",
                "-s",
                str(script),
                base_url,
            ]
        elif driver == "loadgen":
            spec_file = tmp / "specs.json"
            spec_file.write_text(json.dumps([asdict(s) for s in specs]))
            argv = [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--url",
                base_url,
                "--specs",
                str(spec_file),
                "--connections",
                str(connections),
                "--duration",
                f"{duration_s:g}",
                "--timeout",
                f"{timeout_s:g}",
            ]
        else:
            raise ValueError(f"unknown load driver {driver!r}: use auto, wrk or loadgen")
        self._deadline_s = duration_s + timeout_s + 30
        self._proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self) -> LoadResult:
        try:
            stdout, stderr = self._proc.communicate(timeout=self._deadline_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise RuntimeError(
                f"{self.driver} did not finish in {self._deadline_s:.0f} s"
            ) from None
        finally:
            self._tmp.cleanup()
        if self._proc.returncode != 0:
            raise RuntimeError(f"{self.driver} exited {self._proc.returncode}: {stderr.strip()}")
        if self.driver == "wrk":
            return _wrk_result(stdout, self.connections)
        return LoadResult(**json.loads(stdout))


def run_load(
    base_url: str,
    specs: list[RequestSpec],
    connections: int,
    duration_s: float,
    *,
    driver: str = "auto",
) -> LoadResult:
    """Drive `base_url` with `specs` from `connections` connections for `duration_s` seconds."""
    return LoadRun(base_url, specs, connections, duration_s, driver=driver).result()
