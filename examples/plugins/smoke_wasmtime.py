#!/usr/bin/env python3
"""Checks every plugin in dist/ under `wasmtime serve`, the reference wasi:http host.

    examples/plugins/build.sh
    examples/plugins/smoke_wasmtime.py [--wasmtime PATH]

This proves the components are standard wasi:http/proxy components that another host
accepts, with the flags they need, and that each one behaves as documented. It is not
a test of Causeway: under `wasmtime serve` keyvalue is in memory and fresh for every
request, outbound HTTP is unrestricted and `*.internal` does not resolve, so `loyalty`
is pointed at a second `wasmtime serve` running `store-api` through its `store_api_url`
variable.

Only loopback is used. Every process this script starts is stopped by its own pid.
Prints one line per check and ends with "N passed, N failed"; exits 1 on any failure.
"""

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
DIST = os.path.join(HERE, "dist")

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name}: {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """One `wasmtime serve` process on a free loopback port."""

    def __init__(self, wasmtime, plugin, flags=(), log_dir="/tmp"):
        self.port = free_port()
        self.plugin = plugin
        self.log_path = os.path.join(log_dir, f"wasmtime-serve-{plugin}-{self.port}.log")
        self.log = open(self.log_path, "w")
        args = [wasmtime, "serve", "-S", "cli", *flags, "--addr", f"127.0.0.1:{self.port}",
                os.path.join(DIST, f"{plugin}.wasm")]
        self.cmdline = " ".join(args)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120  # the first start compiles the component
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wasmtime serve {plugin} exited: {open(self.log_path).read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"wasmtime serve {plugin} did not listen within 120 s")

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def request(url, method="GET", body=None, headers=None, timeout=20):
    """Returns (status, headers, body bytes); status 0 and the error text if no response."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "content-type" not in {k.lower() for k in (headers or {})}:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, str(e).encode()


def as_json(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def rfc3339(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Sink(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server for fx-forbidden to call."""

    def do_GET(self):
        self.send_response(218)
        self.end_headers()
        self.wfile.write(b"sink")

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wasmtime", default=os.environ.get("WASMTIME") or shutil.which("wasmtime")
                        or os.path.expanduser("~/.cache/causeway/wasmtime/bin/wasmtime"))
    args = parser.parse_args()
    wt = args.wasmtime
    if not os.path.exists(wt):
        print(f"wasmtime not found at {wt}; pass --wasmtime", file=sys.stderr)
        return 2
    print(subprocess.run([wt, "--version"], capture_output=True, text=True).stdout.strip())

    # tagger: config variable.
    with Serve(wt, "tagger", ["-S", "config", "-S", "config-var=tag=blue"]) as s:
        st, _, body = request(s.url("/"), "POST", {"a": 1})
        check("tagger tags an object", st == 200 and as_json(body) == {"a": 1, "tagged": True, "tag": "blue"},
              f"{st} {body!r}")
        st, _, body = request(s.url("/"), "POST", [1])
        check("tagger refuses a non-object with 400", st == 400, f"{st} {body!r}")

    # stripe-to-crm: keyvalue ledger (fresh per request under wasmtime serve).
    charge = {"id": "evt_1", "type": "charge.succeeded", "data": {"object": {
        "id": "ch_1", "amount": 2000, "currency": "usd", "customer": "cus_1",
        "billing_details": {"email": "ada@example.com", "name": "Ada Lovelace"}}}}
    # `wasmtime serve -S` splits its value at commas, so seeded values have no commas.
    with Serve(wt, "stripe-to-crm", ["-S", "keyvalue", "-S", 'keyvalue-in-memory-data=ltv/cus_1={"totalCents":5000}']) as s:
        st, h, body = request(s.url("/"), "POST", charge, {"causeway-event-id": "e1"})
        j = as_json(body) or {}
        check("stripe-to-crm maps charge.succeeded to a contact",
              st == 200 and j.get("email") == "ada@example.com" and j.get("name") == "Ada Lovelace"
              and j.get("lastChargeId") == "ch_1" and j.get("source") == "stripe"
              and h.get("content-type") == "application/json", f"{st} {body!r}")
        check("stripe-to-crm adds to the stored lifetime value", j.get("lifetimeValueCents") == 7000, f"{body!r}")
    seen = 'keyvalue-in-memory-data=ltv/cus_1={"recentCharges":["ch_1"]}'
    with Serve(wt, "stripe-to-crm", ["-S", "keyvalue", "-S", seen]) as s:
        st, _, body = request(s.url("/"), "POST", charge, {"causeway-event-id": "e1"})
        check("stripe-to-crm counts a redelivered charge once",
              st == 200 and (as_json(body) or {}).get("lifetimeValueCents") == 0, f"{st} {body!r}")
        st, _, body = request(s.url("/"), "POST", {"id": "evt_2", "type": "customer.created", "data": {}})
        check("stripe-to-crm filters other event types with 204", st == 204 and body == b"", f"{st} {body!r}")
        st, _, body = request(s.url("/"), "POST", b"{not json")
        check("stripe-to-crm answers 400 to invalid JSON", st == 400, f"{st} {body!r}")

    # store-api: fixture, seeded data, POST.
    now = datetime.now(timezone.utc)
    with Serve(wt, "store-api", ["-S", "keyvalue"]) as store:
        def recent(items):
            return sum(1 for p in items
                       if datetime.strptime(p["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
                       >= now - timedelta(days=30))

        st, _, body = request(store.url("/customers/c-loyal/purchases"))
        items = as_json(body) or []
        check("store-api: c-loyal has 12 purchases in 30 days (15 in all)",
              st == 200 and len(items) == 15 and recent(items) == 12, f"{st} {body[:200]!r}")
        st, _, body = request(store.url("/customers/c-new/purchases"))
        check("store-api: c-new has 2", st == 200 and len(as_json(body) or []) == 2, f"{st} {body[:200]!r}")
        st, _, body = request(store.url("/customers/nobody/purchases"))
        check("store-api: unknown customer has none", st == 200 and as_json(body) == [], f"{st} {body!r}")
        st, _, body = request(store.url("/customers/c-new/purchases"), "POST", {"amount": 999},
                              {"causeway-event-id": "ev9"})
        ids = [p["id"] for p in as_json(body) or []]
        check("store-api: POST adds a purchase (201, id from the event id)",
              st == 201 and len(ids) == 3 and "p-ev9-0" in ids, f"{st} {body!r}")
        st, _, body = request(store.url("/nope"))
        check("store-api: unknown route is 404", st == 404, f"{st} {body!r}")

        # loyalty, chained to store-api through its store_api_url variable.
        flags = ["-S", "config", "-S", f"config-var=store_api_url=http://127.0.0.1:{store.port}"]
        with Serve(wt, "loyalty", flags) as loy:
            order = {"customer": {"id": "c-loyal", "email": "ada@example.com"}, "orderId": "o-1", "total": 4200}
            st, h, body = request(loy.url("/"), "POST", order, {"causeway-event-id": "evt-42"})
            events = as_json(body)
            ok = (st == 200 and h.get("causeway-fanout") == "true" and isinstance(events, list)
                  and len(events) == 2)
            check("loyalty fans out order + email for a loyal customer", ok, f"{st} {dict(h)} {body!r}")
            if ok:
                enriched, email = events
                code = enriched.get("discountCode", "")
                check("loyalty enriches the order",
                      enriched.get("loyal") is True and code.startswith("LOYAL-") and enriched["orderId"] == "o-1",
                      f"{enriched}")
                check("loyalty email request",
                      email == {"kind": "email", "to": "ada@example.com", "template": "loyalty-discount",
                                "code": code, "customerId": "c-loyal", "orderId": "o-1"}, f"{email}")
                st2, _, body2 = request(loy.url("/"), "POST", order, {"causeway-event-id": "evt-42"})
                check("loyalty repeat call gives the same code", st2 == 200 and body2 == body, f"{body2!r}")
            new_order = {"customer": {"id": "c-new", "email": "bob@example.com"}, "orderId": "o-2"}
            raw = json.dumps(new_order).encode()
            st, h, body = request(loy.url("/"), "POST", raw, {"causeway-event-id": "evt-43"})
            check("loyalty passes other orders unchanged", st == 200 and body == raw
                  and h.get("causeway-fanout") is None, f"{st} {body!r}")
            st, _, body = request(loy.url("/"), "POST", {"orderId": "o-3"})
            check("loyalty answers 400 without customer.id", st == 400, f"{st} {body!r}")

    closed = free_port()
    with Serve(wt, "loyalty", ["-S", "config", "-S", f"config-var=store_api_url=http://127.0.0.1:{closed}"]) as loy:
        st, _, body = request(loy.url("/"), "POST", {"customer": {"id": "c-loyal"}, "orderId": "o-4"})
        check("loyalty answers 502 when store-api is down", st == 502, f"{st} {body!r}")

    # inbox: keyvalue is fresh per request here, so GET/DELETE are checked on seeded data.
    seeds = ['keyvalue-in-memory-data=item/event:old={"key":"event:old"}',
             "keyvalue-in-memory-data=item/broken=not-json"]
    with Serve(wt, "inbox", ["-S", "keyvalue", "-S", seeds[0], "-S", seeds[1]]) as s:
        st, _, body = request(s.url("/inbox"), "POST", {"order": 1}, {"causeway-event-id": "e-7"})
        check("inbox stores under the event id (201)", st == 201 and as_json(body) == {"stored": "event:e-7"},
              f"{st} {body!r}")
        st, _, body = request(s.url("/inbox"), "POST", b"plain words", {"content-type": "text/plain"})
        j = as_json(body) or {}
        check("inbox stores text without an event id", st == 201 and j.get("stored", "").startswith("anon:"),
              f"{st} {body!r}")
        st, _, body = request(s.url("/inbox"))
        j = as_json(body) or []
        check("inbox lists stored items, skipping unreadable ones",
              st == 200 and [i["key"] for i in j] == ["event:old"], f"{st} {body!r}")
        st, _, body = request(s.url("/inbox"), "DELETE")
        check("inbox DELETE clears", st == 200 and as_json(body) == {"deleted": 2}, f"{st} {body!r}")

    # js-enricher: the JavaScript component.
    with Serve(wt, "js-enricher") as s:
        st, h, body = request(s.url("/"), "POST", {"a": 1}, {"causeway-event-id": "e1"})
        j = as_json(body) or {}
        check("js-enricher enriches a JSON object",
              st == 200 and j.get("a") == 1 and j.get("enrichedBy") == "javascript"
              and str(j.get("receivedAt", "")).startswith(str(now.year)), f"{st} {body!r}")
        st, _, body = request(s.url("/"), "POST", [1])
        check("js-enricher refuses a non-object with 400", st == 400, f"{st} {body!r}")

    # py-redactor: the Python component (componentize-py).
    with Serve(wt, "py-redactor") as s:
        st, h, body = request(s.url("/"), "POST",
                              {"email": "a@b.example", "order": 1, "items": [{"phone": "1"}]},
                              {"causeway-event-id": "e1"})
        j = as_json(body) or {}
        check("py-redactor masks personal fields at any depth",
              st == 200 and j.get("email") == "[redacted]" and j.get("order") == 1
              and j.get("items") == [{"phone": "[redacted]"}] and j.get("redactedBy") == "python"
              and j.get("redacted") == 2, f"{st} {body!r}")
        st, _, body = request(s.url("/"), "POST", [1])
        check("py-redactor refuses a non-object with 400", st == 400, f"{st} {body!r}")

    # The misbehaving fixtures: wasmtime serve must survive each of them.
    with Serve(wt, "fx-trap") as s:
        st, _, _ = request(s.url("/"), "POST", b"x")
        st2, _, _ = request(s.url("/?mode=unreachable"), "POST", b"x")
        # wasmtime serve answers 500 when the guest traps before responding.
        check("fx-trap fails the call (panic and unreachable)", st == 500 and st2 == 500, f"{st} {st2}")
        check("wasmtime serve survives fx-trap", s.proc.poll() is None, "exited")
    with Serve(wt, "fx-loop", ["-W", "timeout=300ms"]) as s:
        t0 = time.time()
        st, _, _ = request(s.url("/"), "POST", b"x", timeout=30)
        check("fx-loop is stopped by the timeout", st != 200 and time.time() - t0 < 10, f"{st} after {time.time()-t0:.1f}s")
    with Serve(wt, "fx-membomb", ["-W", f"max-memory-size={64 << 20}"]) as s:
        st, _, _ = request(s.url("/"), "POST", b"x", timeout=60)
        check("fx-membomb fails at the memory limit", st != 200 and s.proc.poll() is None, f"{st}")
    with Serve(wt, "fx-sleep") as s:
        t0 = time.time()
        st, _, body = request(s.url("/?ms=200"))
        check("fx-sleep sleeps then answers", st == 200 and as_json(body) == {"slept_ms": 200}
              and time.time() - t0 >= 0.2, f"{st} {body!r}")

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        with Serve(wt, "fx-forbidden") as s:
            target = f"http://127.0.0.1:{sink.server_address[1]}/hook"
            st, _, body = request(s.url("/?url=" + urllib.request.quote(target, safe="")))
            check("fx-forbidden returns the upstream status (no allow-list under wasmtime serve)",
                  st == 218 and (as_json(body) or {}).get("upstreamStatus") == 218, f"{st} {body!r}")
            st, _, body = request(s.url("/"), "POST", f"http://127.0.0.1:{free_port()}/".encode(),
                                  {"content-type": "text/plain"})
            j = as_json(body) or {}
            check("fx-forbidden answers 502 with the error text", st == 502 and j.get("error"), f"{st} {body!r}")
    finally:
        sink.shutdown()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
