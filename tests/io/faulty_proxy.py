"""An HTTP proxy on 127.0.0.1 in front of moto's S3 server that injects storage faults.

- the first GET of every object answers 503 SlowDown (throttling);
- every `drop_every`-th request has its connection closed without an answer;
- any request whose path contains `forbidden` answers 403 AccessDenied, always.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultyProxy:
    def __init__(self, upstream: str, *, drop_every: int = 9) -> None:
        self.upstream = urlsplit(upstream)
        self.drop_every = drop_every
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.fault_for(self.command, self.path)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None:
                    status, payload = fault
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                # A HEAD answer has no body but tells the object's size: pass the upstream's length on.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fault_for(self, method: str, path: str) -> tuple[int, bytes] | str | None:
        with self.lock:
            self.requests += 1
            if "forbidden" in path:
                self.injected["403"] += 1
                return 403, ACCESS_DENIED
            if self.requests % self.drop_every == 0:
                self.injected["drop"] += 1
                return "drop"
            key = f"{method} {path}"
            self.seen[key] += 1
            if method == "GET" and "/in/" in path and self.seen[key] == 1:
                self.injected["503"] += 1
                return 503, SLOW_DOWN
        return None

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
