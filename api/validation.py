"""Request parsing and field validation with RAGFlow's (pydantic-shaped) error messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request

from api import limits, text
from api.envelope import ApiError, argument_error

Check = Callable[[Any], Any]


class FieldError(ValueError):
    """One invalid value; ``loc`` is filled in by the enclosing object validator."""

    def __init__(self, message: str, value: Any, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.loc = loc


class ValidationFailed(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(format_errors(errors))
        self.errors = errors


def _show(value: Any) -> str:
    shown = str(value)
    return shown[:125] + "..." if len(shown) > 128 else shown


def format_errors(errors: list[FieldError]) -> str:
    return "\n".join(
        f"Field: <{'.'.join(e.loc)}> - Message: <{e.message}> - Value: <{_show(e.value)}>"
        for e in errors
    )


def read_json(request: Request, strict: bool = False) -> dict[str, Any]:
    """The request body as a JSON object.

    An empty body is ``{}``; with ``strict`` (the datasets' endpoints, as RAGFlow parses
    them) the content type is checked first, and an empty body is malformed JSON.

    The body, its nesting, its arrays and its strings are checked against api.limits before
    any handler sees them: a request over a limit, with invalid UTF-8 or with a lone
    surrogate escape gets a 101 naming the problem."""
    if strict and not request.is_json:
        raise _unsupported_type(request)
    raw = _body(request)
    if not raw.strip() and not strict:
        return {}
    if not request.is_json:
        raise _unsupported_type(request)
    try:
        payload = json.loads(raw)
    except RecursionError:
        raise argument_error(_too_deep()) from None
    except (ValueError, UnicodeDecodeError):
        raise argument_error(
            "Malformed JSON syntax: Missing commas/brackets or invalid encoding"
        ) from None
    check_json_limits(payload)
    if not payload:  # null, [], "", 0, false: RAGFlow's ``get_json() or {}``
        return {}
    if not isinstance(payload, dict):
        raise argument_error(
            f"Invalid request payload: expected object, got {type(payload).__name__}"
        )
    return payload


def _unsupported_type(request: Request) -> ApiError:
    return argument_error(
        f"Unsupported content type: Expected application/json, got {request.content_type}"
    )


def _body(request: Request) -> bytes:
    """The body, refused (101) when longer than JSON_BODY_BYTES or MAX_CONTENT_LENGTH."""
    lim = limits.JSON_BODY_BYTES
    limit, name = lim.value, lim.name
    if request.max_content_length is not None and request.max_content_length < limit:
        limit, name = request.max_content_length, "MAX_CONTENT_LENGTH"
    declared = request.content_length
    if declared is not None and declared > limit:
        raise argument_error(_too_large(f"is {declared} bytes", limit, name))
    # A body sent without a length (chunked) is read up to one byte over the limit:
    # Werkzeug stops quietly at a maximum, so that byte tells a longer body apart.
    request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise argument_error(_too_large("is larger", limit, name))
    return raw


def _too_large(size: str, limit: int, name: str) -> str:
    return f"The request body {size}; JSON requests accept at most {limit} bytes ({name})."


def _too_deep() -> str:
    lim = limits.JSON_DEPTH
    return f"The JSON body is nested deeper than {lim.value} levels ({lim.name})."


def _where(path: tuple[str | int, ...]) -> str:
    return ".".join(map(str, path)) or "the body"


def check_json_limits(payload: Any) -> None:
    """Raise a 101 when ``payload`` (parsed JSON) is nested deeper than JSON_DEPTH, has an
    array longer than LIST_ITEMS, or holds a string longer than STRING_CHARS or that is not
    valid Unicode (a lone surrogate such as "\\ud800", which cannot be stored or encoded)."""
    max_depth, max_items = limits.JSON_DEPTH.value, limits.LIST_ITEMS.value
    max_chars = limits.STRING_CHARS.value
    if isinstance(payload, str):
        _check_text(payload, ())
    if not isinstance(payload, dict | list):
        return
    # containers only, with their paths; numbers, booleans and ASCII strings cost one test
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(payload, ())]
    while stack:  # bounded: each parsed container is visited once
        value, path = stack.pop()
        if len(path) >= max_depth:
            raise argument_error(_too_deep())
        if isinstance(value, list):
            if len(value) > max_items:
                raise argument_error(
                    f"Field: <{_where(path)}> has {len(value)} items; at most {max_items}"
                    f" are accepted ({limits.LIST_ITEMS.name})."
                )
            items: Iterable[tuple[str | int, Any]] = enumerate(value)
        else:
            items = value.items()
            for key in value:
                if len(key) > max_chars or not key.isascii():
                    _check_text(key, (*path, "<key>"))
        for where, item in items:
            if isinstance(item, dict | list):
                stack.append((item, (*path, where)))
            elif type(item) is str and (len(item) > max_chars or not item.isascii()):
                _check_text(item, (*path, where))


def _check_text(value: str, path: tuple[str | int, ...]) -> None:
    lim = limits.STRING_CHARS
    if len(value) > lim.value:
        raise argument_error(
            f"Field: <{_where(path)}> is {len(value)} characters long; at most {lim.value}"
            f" are accepted ({lim.name})."
        )
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise argument_error(
            f"Field: <{_where(path)}> - Message: <Input is not valid Unicode: lone surrogate"
            f" U+{ord(bad):04X} at position {exc.start}>"
        ) from None


# --- field checks --------------------------------------------------------------------
# Each check carries the OpenAPI (JSON Schema) description of what it accepts, so a document
# derived from the checks (api.openapi) cannot drift from them.

_SCHEMA_ATTR = "json_schema"


def described(check: Check, schema: dict[str, Any]) -> Check:
    """``check``, carrying ``schema``: the OpenAPI description of what it accepts."""
    setattr(check, _SCHEMA_ATTR, schema)
    return check


def json_schema(check: Check) -> dict[str, Any]:
    """The OpenAPI schema of what ``check`` accepts ({} when it does not say)."""
    if isinstance(check, Schema):
        return check.json_schema()
    return dict(getattr(check, _SCHEMA_ATTR, {}))


def _bounded(kind: str, low: float | None, high: float | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def optional(check: Check) -> Check:
    def run(value: Any) -> Any:
        return None if value is None else check(value)

    return described(run, {**json_schema(check), "nullable": True})


def string(min_length: int = 0, max_length: int | None = None, strip: bool = False) -> Check:
    def run(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("Input should be a valid string", value)
        text = value.strip() if strip else value
        if len(text) < min_length:
            unit = "character" if min_length == 1 else "characters"
            raise FieldError(f"String should have at least {min_length} {unit}", value)
        if max_length is not None and len(text) > max_length:
            raise FieldError(f"String should have at most {max_length} characters", value)
        return text

    schema: dict[str, Any] = {"type": "string"}
    if min_length and not strip:
        schema["minLength"] = min_length
    if max_length is not None and not strip:
        schema["maxLength"] = max_length
    return described(run, schema)


def integer(ge: int | None = None, le: int | None = None) -> Check:
    def run(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError("Input should be a valid integer", value)
        _bounds(value, ge, le)
        return value

    return described(run, _bounded("integer", ge, le))


def number(ge: float | None = None, le: float | None = None) -> Check:
    def run(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError("Input should be a valid number", value)
        if value != value or value in (float("inf"), float("-inf")):
            raise FieldError("Input should be a finite number", value)
        _bounds(value, ge, le)
        return float(value)

    return described(run, _bounded("number", ge, le))


def _bounds(value: float, ge: float | None, le: float | None) -> None:
    if ge is not None and value < ge:
        raise FieldError(f"Input should be greater than or equal to {ge}", value)
    if le is not None and value > le:
        raise FieldError(f"Input should be less than or equal to {le}", value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError("Input should be a valid boolean", value)
    return value


boolean = described(_boolean, {"type": "boolean"})


def literal(*choices: str) -> Check:
    quoted = [f"'{c}'" for c in choices]
    shown = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def run(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise FieldError(f"Input should be {shown}", value)
        return value

    return described(run, {"type": "string", "enum": list(choices)})


def list_of(item: Check) -> Check:
    def run(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise FieldError("Input should be a valid list", value)
        out, errors = [], []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except FieldError as exc:
                errors.append(FieldError(exc.message, exc.value, (str(index), *exc.loc)))
            except ValidationFailed as exc:  # an object's errors, each with its place
                errors.extend(
                    FieldError(e.message, e.value, (str(index), *e.loc)) for e in exc.errors
                )
        if errors:
            raise ValidationFailed(errors)
        return out

    schema = {"type": "array", "items": json_schema(item), "maxItems": limits.LIST_ITEMS.value}
    return described(run, schema)


@dataclass(frozen=True)
class Schema:
    """An object whose known fields each have a check; unknown fields are rejected, or with
    ``ignore_unknown`` left out of the result (RAGFlow's handlers that read their body with
    ``req.get`` ignore what they do not read)."""

    fields: Mapping[str, Check]
    required: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    ignore_unknown: bool = False

    def __call__(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError("Input should be a valid dictionary", value)
        out: dict[str, Any] = {}
        errors: list[FieldError] = []
        for name in self.required - value.keys():
            errors.append(FieldError("Field required", value, (name,)))
        for name, raw in value.items():
            check = self.fields.get(name)
            if check is None:
                if not self.ignore_unknown:
                    errors.append(FieldError("Extra inputs are not permitted", raw, (str(name),)))
                continue
            try:
                out[name] = check(raw)
            except FieldError as exc:
                errors.append(FieldError(exc.message, exc.value, (name, *exc.loc)))
            except ValidationFailed as exc:
                errors.extend(FieldError(e.message, e.value, (name, *e.loc)) for e in exc.errors)
        if errors:
            raise ValidationFailed(errors)
        return out

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: json_schema(check) for name, check in self.fields.items()},
            "additionalProperties": self.ignore_unknown,
        }
        if self.required:
            schema["required"] = sorted(self.required)
        return schema


def validate(schema: Schema, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a request object; errors become one 101 envelope (one line per error)."""
    try:
        return schema(dict(payload))
    except ValidationFailed as exc:
        raise argument_error(str(exc)) from None


def uuid1_hex(value: Any) -> str:
    """``value`` as a UUID1's hex; any other value is ``Invalid UUID1 format`` (RAGFlow's check
    catches its own "Must be a UUID1 format" and answers that)."""
    try:
        parsed = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 1:
        raise FieldError("Invalid UUID1 format", value)
    return parsed.hex


def check_uuid1(value: str) -> str:
    """A path or query id: a valid UUID1 or 101 ``Invalid UUID1 format``."""
    try:
        return uuid1_hex(value)
    except FieldError as exc:
        raise argument_error(exc.message) from None


AVATAR_TYPES = ("image/jpeg", "image/png")


def avatar(value: Any) -> str:
    """RAGFlow's order: a comma first, then the ``data:`` prefix, then the MIME type."""
    text = str(string(max_length=65535)(value))
    if "," not in text:
        raise FieldError("Missing MIME prefix. Expected format: data:<mime>;base64,<data>", value)
    prefix = text.split(",", 1)[0]
    if not prefix.startswith("data:"):
        raise FieldError("Invalid MIME prefix format. Must start with 'data:'", value)
    if prefix[5:].split(";")[0] not in AVATAR_TYPES:
        raise FieldError(f"Unsupported MIME type. Allowed: {list(AVATAR_TYPES)}", value)
    return text


def embedding_model(value: Any) -> str:
    """``<model_name>@<provider>``, stripped first (RAGFlow's order of checks)."""
    text = str(string(max_length=255, strip=True)(value))
    if "@" not in text:
        raise FieldError(
            "Embedding model identifier must follow <model_name>@<provider> format", value
        )
    model, provider = text.split("@", 1)
    if not model or not provider:
        raise FieldError("Both model_name and provider must be non-empty strings", value)
    if not model.strip() or not provider.strip():
        raise FieldError("Model name and provider cannot be whitespace-only strings", value)
    return text


described(avatar, {"type": "string", "maxLength": 65535, "pattern": ","})
described(embedding_model, {"type": "string", "maxLength": 255, "pattern": "@"})


def query_int(
    args: Mapping[str, str],
    name: str,
    default: int,
    ge: int = 1,
    le: int = 1_000_000_000,
    blank_is_unset: bool = True,
) -> int:
    raw = args.get(name)
    if raw is None or (raw == "" and blank_is_unset):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise argument_error(
            f"Field: <{name}> - Message: <Input should be a valid integer, unable to parse "
            f"string as an integer> - Value: <{_show(raw)}>"
        ) from None
    if value < ge:
        raise argument_error(
            f"Field: <{name}> - Message: <Input should be greater than or equal to {ge}> "
            f"- Value: <{raw}>"
        )
    if value > le:
        raise argument_error(
            f"Field: <{name}> - Message: <Input should be less than or equal to {le}> "
            f"- Value: <{raw}>"
        )
    return value


def query_page_size(
    args: Mapping[str, str], default: int = 30, ge: int = 1, blank_is_unset: bool = True
) -> int:
    """A list's ``page_size`` query argument, at most PAGE_SIZE."""
    return query_int(
        args, "page_size", default, ge=ge, le=limits.PAGE_SIZE.value, blank_is_unset=blank_is_unset
    )


def query_list(args: MultiDict[str, str], name: str) -> list[str]:
    """Every value of a repeated query argument, at most LIST_ITEMS of them."""
    values = args.getlist(name)
    if len(values) > limits.LIST_ITEMS.value:
        raise argument_error(
            f"Field: <{name}> has {len(values)} items; at most {limits.LIST_ITEMS.value}"
            f" are accepted ({limits.LIST_ITEMS.name})."
        )
    return values


def query_bool(
    args: Mapping[str, str], name: str, default: bool, blank_is_unset: bool = True
) -> bool:
    raw = args.get(name)
    if raw is None or (raw == "" and blank_is_unset):
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on", "t", "y"):
        return True
    if value in ("false", "0", "no", "off", "f", "n"):
        return False
    raise argument_error(
        f"Field: <{name}> - Message: <Input should be a valid boolean, unable to interpret "
        f"input> - Value: <{_show(raw)}>"
    )


# --- names and search text ---------------------------------------------------------------

# Embeddings, overrides and isolates: they make a name display differently from its text
# ("invoice\u202efdp.exe" shows as "invoiceexe.pdf").
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def bidi_problem(value: str) -> str | None:
    """Why ``value`` cannot be a dataset or document name, or None."""
    found = sorted({f"U+{ord(ch):04X}" for ch in value if ch in BIDI_CONTROLS})
    if not found:
        return None
    return (
        f"Name must not contain bidirectional control characters ({', '.join(found)});"
        " they make a name display differently from what it is"
    )


def display_name(max_length: int) -> Check:
    """A dataset name: a non-blank string of at most ``max_length`` characters, stripped,
    without bidirectional control characters."""
    text_check = string(min_length=1, max_length=max_length, strip=True)

    def run(value: Any) -> str:
        checked = str(text_check(value))
        problem = bidi_problem(checked)
        if problem is not None:
            raise FieldError(problem, value)
        return checked

    return described(run, {"type": "string", "minLength": 1, "maxLength": max_length})


def search_text(field_name: str, value: str) -> list[str]:
    """The distinct terms of a retrieval question or chunk-list keywords (api.text.query_terms),
    or a 101 when the text is longer than QUERY_CHARS or has more than QUERY_TERMS terms."""
    chars, terms_limit = limits.QUERY_CHARS, limits.QUERY_TERMS
    if len(value) > chars.value:
        raise argument_error(
            f"Field: <{field_name}> is {len(value)} characters long; at most {chars.value}"
            f" are accepted ({chars.name})."
        )
    terms = text.query_terms(value)
    if len(terms) > terms_limit.value:
        raise argument_error(
            f"Field: <{field_name}> has {len(terms)} distinct search terms; at most"
            f" {terms_limit.value} are accepted ({terms_limit.name})."
        )
    return terms
