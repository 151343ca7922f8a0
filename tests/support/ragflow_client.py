"""Minimal HTTP helpers for the real app in lifecycle tests (stdlib, loopback only)."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any

API_KEY = "lifecycle-test-key"


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return json.loads(response.read())
    finally:
        conn.close()


def create_dataset(port: int, parser_config: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"name": f"lifecycle-{uuid.uuid4().hex[:8]}"}
    if parser_config is not None:
        body["parser_config"] = parser_config
    answer = call(port, "POST", "/api/v1/datasets", body)
    if answer.get("code") != 0:
        raise AssertionError(f"dataset creation failed: {answer}")
    return str(answer["data"]["id"])


def multipart(files: dict[str, bytes]) -> tuple[str, bytes]:
    """A multipart/form-data body with one `file` part per file: (boundary, body)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, content in files.items():
        head = f'Content-Disposition: form-data; name="file"; filename="{name}"'
        body += f"--{boundary}\r\n{head}\r\nContent-Type: text/plain\r\n\r\n".encode()
        body += content + b"\r\n"
    return boundary, body + f"--{boundary}--\r\n".encode()


def slow_upload(port: int, dataset_id: str, seconds: float, size: int = 256 * 1024) -> Any:
    """Upload a text file whose body trickles in over `seconds` (a slow client): the request is in
    flight in a worker for that long. Returns the decoded JSON answer."""
    content = (b"lifecycle test line for a slow upload\n" * (size // 38 + 1))[:size]
    boundary, body = multipart({"slow.txt": content})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("POST", f"/api/v1/datasets/{dataset_id}/documents")
        conn.putheader("Authorization", f"Bearer {API_KEY}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        pieces = 20
        step = len(body) // pieces + 1
        for index in range(pieces):
            conn.send(body[index * step : (index + 1) * step])
            time.sleep(seconds / pieces)  # pacing of the slow client, not a wait for readiness
        response = conn.getresponse()
        return json.loads(response.read())
    finally:
        conn.close()


def upload(port: int, dataset_id: str, files: dict[str, bytes]) -> list[str]:
    """Upload files in one multipart request; return the new document ids."""
    boundary, body = multipart(files)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST",
            f"/api/v1/datasets/{dataset_id}/documents",
            body=body,
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    if answer.get("code") != 0:
        raise AssertionError(f"upload failed: {answer}")
    return [str(doc["id"]) for doc in answer["data"]]


def start_parsing(port: int, dataset_id: str, document_ids: list[str]) -> None:
    answer = call(
        port, "POST", f"/api/v1/datasets/{dataset_id}/chunks", {"document_ids": document_ids}
    )
    if answer.get("code") != 0:
        raise AssertionError(f"parse request failed: {answer}")
