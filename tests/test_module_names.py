"""No module of ours shadows the standard library, and the dev server runs as a script.

``python api/ragflow_server.py`` puts ``api/`` first on sys.path, so a module there named like
a standard-library one (``api/queue.py`` did) replaces it for every import in the process:
debugpy's ``import queue`` then found ours and the server crashed ("module name conflict")."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any, BinaryIO

from support.waiting import wait_for
from test_api_devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "supervise", "renderer", "shared", "bench")


def _module_names(folder: Path) -> dict[str, Path]:
    """Every module and package name a script in ``folder`` (or below) could import bare."""
    names: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.suffix == ".py":
            names.setdefault(path.stem, path)
        elif path.is_dir() and (path / "__init__.py").exists():
            names.setdefault(path.name, path)
    return names


def test_no_module_is_named_like_a_standard_library_module() -> None:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        found.update(_module_names(ROOT / package))
    found.update({p.stem: p for p in ROOT.glob("*.py")})
    found.update({p.name: p for p in ROOT.iterdir() if (p / "__init__.py").exists()})
    assert len(found) > 50  # the walk saw the code base
    clashes = {
        name: str(path.relative_to(ROOT))
        for name, path in found.items()
        if name in sys.stdlib_module_names
    }
    assert clashes == {}, f"rename these modules, they shadow the standard library: {clashes}"


def _dap_message(stream: BinaryIO) -> dict[str, Any]:
    """One Debug Adapter Protocol message: header lines, a blank line, Content-Length bytes
    (each read bounded by the socket's timeout)."""
    length = None
    for _ in range(10):  # a DAP header has one or two lines
        line = stream.readline(1024)
        if not line:
            raise AssertionError("debugpy closed the connection")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    assert length is not None, "a DAP message without Content-Length"
    message: dict[str, Any] = json.loads(stream.read(length))
    return message


def test_the_dev_server_run_as_a_script_accepts_a_debugger(tmp_path: Path) -> None:
    """``python api/ragflow_server.py --debug`` with RAGFLOW_DEBUGPY_LISTEN: the serving child
    starts debugpy, and a debugger completes the protocol's initialize handshake with it."""
    server = DevServer(
        tmp_path,
        "api/ragflow_server.py",
        "--debug",
        RAGFLOW_DEBUGPY_LISTEN="127.0.0.1:0",  # debugpy binds a free port and logs it
    )
    try:
        wait_for(server.ready, timeout=60, what="the dev server run as a script")
        debug_port = server.debugpy_port()

        def connected() -> socket.socket | None:
            sock = socket.socket()
            sock.settimeout(5)
            if sock.connect_ex(("127.0.0.1", debug_port)) == 0:
                return sock
            sock.close()
            return None

        sock = wait_for(connected, timeout=30, what=f"debugpy on port {debug_port}")
        with sock:
            request = json.dumps(
                {
                    "seq": 1,
                    "type": "request",
                    "command": "initialize",
                    "arguments": {"clientID": "pytest", "adapterID": "debugpy"},
                }
            ).encode()
            sock.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(request), request))
            stream = sock.makefile("rb")
            for _ in range(20):  # events may come first; the answer is among the first few
                message = _dap_message(stream)
                if message.get("type") == "response":
                    break
            else:
                raise AssertionError("no response to initialize")
        assert message["command"] == "initialize" and message["success"] is True, message
        assert message["request_seq"] == 1
        assert "supportsConfigurationDoneRequest" in message["body"]  # a real adapter answered
    finally:
        server.stop()
    log = server.log.read_text()
    assert "module name conflict" not in log and "Traceback" not in log, log
