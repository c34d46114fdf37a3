"""A loopback HTTP sink that parses every request with the CloudEvents SDK for Python
(`cloudevents.http.from_http`, which reads binary and structured mode) and writes what it
parsed, one JSON line per request, to the file given. Prints its port once listening.

    python sink.py OUT_FILE
"""
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.http import from_http

OUT = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k: v for k, v in self.headers.items()}
        try:
            event = from_http(headers, body)
            data = event.get_data()
            if isinstance(data, (bytes, bytearray)):
                data = data.decode("utf-8", "replace")
            binary = "cloudevents" not in self.headers.get("content-type", "")
            attributes = {k: str(v) for k, v in event.get_attributes().items()}
            if binary:
                # The HTTP binding (1.0.2, 3.1.3.2) has senders percent-encode space, '"',
                # '%' and non-ASCII in ce-* headers and receivers decode them; the Python
                # SDK (1.x) leaves them encoded, so the decoding is done here.
                attributes = {k: urllib.parse.unquote(v) for k, v in attributes.items()}
            record = {
                "ok": True,
                "path": self.path,
                "mode": "binary" if binary else "structured",
                "attributes": attributes,
                "data": data,
            }
            status = 200
        except Exception as e:  # the SDK refused it: the test reports why
            record = {"ok": False, "path": self.path, "error": f"{type(e).__name__}: {e}"}
            status = 400
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
