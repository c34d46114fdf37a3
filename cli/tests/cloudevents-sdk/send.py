"""Send one CloudEvent made by the CloudEvents SDK for Python to a URL, in binary or
structured mode; print the HTTP status and the response body as one JSON line.

    python send.py URL binary|structured
"""
import json
import sys
import urllib.request

from cloudevents.http import CloudEvent
from cloudevents.conversion import to_binary, to_structured


def main():
    url, mode = sys.argv[1], sys.argv[2]
    event = CloudEvent(
        {
            "id": "o-42",
            "type": "com.example.order.created",
            "source": "https://shop.example/orders",
            "subject": "order 42",
            "tenant": "acme",
            "datacontenttype": "application/json",
        },
        {"id": "o-42", "amount": 1500},
    )
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    print(json.dumps({"status": status, "body": text, "id": event["id"]}))


if __name__ == "__main__":
    main()
