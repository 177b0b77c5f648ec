"""A tiny read-only HTTP endpoint for the gateway: ``GET /hard_caps.json`` returns the file as the
last evaluation wrote it (``billing-pipeline serve-caps``).

The file is replaced atomically (atomic.py), so a request reads the old list or the new one,
never half of one. Each response carries an ``ETag`` (sha256 of the bytes): a gateway that polls
with ``If-None-Match`` gets ``304 Not Modified`` until the list changes. Anything but GET and
HEAD is refused (405); any other path is 404; a missing file (no evaluation yet) is 503, so a
gateway keeps its last list rather than reading "nobody is capped" into an absence.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from billing_pipeline.alerts.run import HARD_CAPS_FILE

CAPS_PATH = f"/{HARD_CAPS_FILE}"


def caps_handler(caps_file: Path) -> type[BaseHTTPRequestHandler]:
    """A request handler that serves ``caps_file`` read-only."""

    class CapsHandler(BaseHTTPRequestHandler):
        server_version = "billing-caps/1"

        def do_GET(self) -> None:  # http.server dispatches on the method name
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _refuse(self) -> None:
            self.send_response(405)
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _serve(self, body: bool) -> None:
            if self.path.split("?", 1)[0] not in (CAPS_PATH, "/"):
                self._empty(404)
                return
            try:
                data = caps_file.read_bytes()
            except OSError:
                self._empty(503)
                return
            etag = f'"{hashlib.sha256(data).hexdigest()}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("ETag", etag)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args) -> None:
            pass  # a poll every few seconds would flood the console

    return CapsHandler


def caps_server(out_dir: Path, host: str = "127.0.0.1", port: int = 8787) -> ThreadingHTTPServer:
    """The server of ``<out_dir>/hard_caps.json``, bound (port 0: any free port, see
    ``server_port``); call ``serve_forever``."""
    return ThreadingHTTPServer((host, port), caps_handler(Path(out_dir) / HARD_CAPS_FILE))


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread (tests, embedding); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread
