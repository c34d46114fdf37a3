# py-redactor: a Causeway bridge step written in Python.
#
# An ordinary wasi:http/proxy component, built by componentize-py (CPython compiled to
# WebAssembly, with this file frozen in). It masks personal data before an event leaves
# the bridge: every string under a key named in REDACT (at any depth) becomes "[redacted]",
# and the event gets "redactedBy": "python" and the count.
#
#   POST {"email": "a@b.c", "order": 1}  ->  200 {"email": "[redacted]", "order": 1,
#                                                 "redactedBy": "python", "redacted": 1}
#   POST [1, 2]                          ->  400 {"error": "expected a JSON object"}
#   GET /                                ->  405 {"error": "send the event with POST"}
#
# Steps run at least once: the same event (same causeway-event-id) may arrive twice.
# Redacting is idempotent, so a repeat gives the same output.

import json

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from wit_world.imports.streams import StreamError_Closed

REDACT = {"email", "phone", "ssn", "card_number", "iban"}
MAX_BODY = 1 << 20


def redact(value):
    """Returns (the value with REDACT keys masked, how many were masked)."""
    if isinstance(value, dict):
        out, count = {}, 0
        for key, item in value.items():
            if key.lower() in REDACT and isinstance(item, str):
                out[key], count = "[redacted]", count + 1
            else:
                out[key], n = redact(item)
                count += n
        return out, count
    if isinstance(value, list):
        out, count = [], 0
        for item in value:
            masked, n = redact(item)
            out.append(masked)
            count += n
        return out, count
    return value, 0


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    chunks, size = [], 0
    try:
        while True:
            try:
                chunk = stream.blocking_read(65536)
            except Exception as e:  # end of the body is StreamError_Closed
                if isinstance(getattr(e, "value", None), StreamError_Closed):
                    break
                raise
            size += len(chunk)
            if size > MAX_BODY:
                raise ValueError("body too large")
            chunks.append(chunk)
    finally:
        stream.__exit__(None, None, None)
        body.__exit__(None, None, None)
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, value) -> None:
    data = json.dumps(value, separators=(",", ":")).encode()
    headers = Fields.from_list([("content-type", b"application/json")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = body.write()
    for start in range(0, len(data), 4096):
        stream.blocking_write_and_flush(data[start : start + 4096])
    stream.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        if not isinstance(request.method(), (Method_Post, Method_Put)):
            respond(response_out, 405, {"error": "send the event with POST"})
            return
        event_id = None
        for name, value in request.headers().entries():
            if name == "causeway-event-id":
                event_id = value.decode(errors="replace")
        try:
            event = json.loads(read_body(request))
        except ValueError:
            respond(response_out, 400, {"error": "invalid JSON"})
            return
        if not isinstance(event, dict):
            respond(response_out, 400, {"error": "expected a JSON object"})
            return
        masked, count = redact(event)
        masked["redactedBy"] = "python"
        masked["redacted"] = count
        if event_id:
            print(f"redacted {count} field(s) of event {event_id}")
        respond(response_out, 200, masked)
