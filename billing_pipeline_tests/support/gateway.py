"""Gateway log lines as a gateway writes them, and a customer's webhook receiver on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from billing_pipeline.alerts.webhooks import ALERT_ID_HEADER, verify


def line(request_id: str, at: dt.datetime, customer: str, output_tokens: int) -> str:
    """One request of the gateway log: ``output_tokens`` of gpt-4o completion for ``customer``."""
    return json.dumps(
        {
            "request_id": request_id,
            "timestamp": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "customer_key": customer,
            "provider": "openai",
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 10, "completion_tokens": output_tokens},
        }
    )


def append(path: Path, *lines: str) -> Path:
    """Append lines as a gateway does (the file grows; its folder is made when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(f"{text}\n" for text in lines))
    return path


class WebhookReceiver:
    """A customer's endpoint: answers 500 to the first ``fail_first`` requests, then 200 to
    requests whose signature checks out with ``secret`` at ``now`` (the clock; settable, the
    real one when None) and 401 to the rest. Keeps every request as (headers, body) and the
    bodies it accepted, in order."""

    def __init__(self, secret: str, *, fail_first: int = 0, now: dt.datetime | None = None):
        self.fail_first, self.now = fail_first, now
        self.requests: list[tuple[dict, bytes]] = []
        self.accepted: list[dict] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server dispatches on the method name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                receiver.requests.append((headers, body))
                now = receiver.now or dt.datetime.now(dt.UTC)
                if len(receiver.requests) <= receiver.fail_first:
                    status = 500
                elif verify(secret.encode(), body, headers, now):
                    status = 200
                    receiver.accepted.append(
                        {"id": self.headers[ALERT_ID_HEADER], **json.loads(body)}
                    )
                    receiver.arrived.set()
                else:
                    status = 401
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [a["id"] for a in self.accepted]
