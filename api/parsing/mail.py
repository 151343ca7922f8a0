"""E-mail messages (.eml: RFC 5322 with MIME parts) -> sections, with the standard
library's ``email`` package."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage, Message

from api.parsing.chunker import Section
from api.parsing.limits import Limits
from api.parsing.parsers import ParseError, decode_text, html_sections, text_sections

HEADERS = ("Subject", "From", "To", "Cc", "Date")
MAX_DEPTH = 32


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except Exception:  # a malformed header is left out, not a reason to fail the message
        return ""


def _text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    data = raw if isinstance(raw, bytes) else b""
    charset = part.get_content_charset()
    if charset:
        try:
            return data.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name: guess as for a text file
            pass
    return decode_text(data)


def _preferred(parts: list[Message]) -> list[Message]:
    """Of a multipart/alternative: the plain text, else the HTML, else the richest part."""
    for wanted in ("text/plain", "text/html"):
        for part in parts:
            if part.get_content_type() == wanted:
                return [part]
    return parts[-1:]


def _leaves(part: Message, attachments: list[str], depth: int) -> Iterator[tuple[str, str]]:
    """``(content type, text)`` of each body part in order; attachment names collected."""
    if depth > MAX_DEPTH:
        raise ParseError(f"the e-mail nests MIME parts more than {MAX_DEPTH} deep; refusing it")
    content_type = part.get_content_type()
    filename = part.get_filename()
    if part.get_content_disposition() == "attachment":
        attachments.append(filename or content_type)
        return
    if part.is_multipart():  # multipart/* and message/rfc822 (a forwarded message)
        children = [child for child in part.get_payload() if isinstance(child, Message)]
        if content_type == "multipart/alternative":
            children = _preferred(children)
        for child in children:
            yield from _leaves(child, attachments, depth + 1)
        return
    if content_type in ("text/plain", "text/html"):
        yield content_type, _text(part)
    elif filename:
        attachments.append(filename)


def parse_eml(data: bytes, delimiter: str, limits: Limits) -> Iterator[Section]:
    """The headers (subject, from, to, cc, date), then each body part (of alternatives the
    plain text; HTML as its blocks) split on the delimiters, then the attachments' names."""
    try:
        message: EmailMessage = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as exc:  # the parser is lenient; only pathological input gets here
        raise ParseError(f"the e-mail cannot be read ({type(exc).__name__}: {exc})") from None
    headers = [f"{name}: {value}" for name in HEADERS if (value := _header(message, name))]
    if headers:
        yield Section("\n".join(headers))
    attachments: list[str] = []
    try:
        leaves = list(_leaves(message, attachments, 0))
    except ParseError:
        raise
    except Exception as exc:  # malformed MIME structure or parameters
        raise ParseError(f"the e-mail cannot be read ({type(exc).__name__}: {exc})") from None
    for content_type, text in leaves:
        if content_type == "text/html":
            yield from html_sections(text)
        else:
            yield from text_sections(text, delimiter)
    if attachments:
        yield Section("Attachments: " + ", ".join(attachments))
