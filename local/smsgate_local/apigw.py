"""A local API Gateway (REST API, Lambda proxy integration) for one function.

It turns HTTP requests into the proxy events API Gateway delivers (resource, path parameters,
single- and multi-value query strings and headers, requestContext) and the function's answer
back into HTTP. The routes are the template's, so `/hooks/{token}/...` works as deployed.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .harness import LambdaContext
from .resource_policy import ResourcePolicy

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _pattern(resource: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", resource)
    regex = "".join(
        f"(?P<{p[1:-1].rstrip('+')}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(f"^{regex}$")


class LocalRestApi:
    """`LocalRestApi(handler, [("GET", "/hooks/{token}/clubtexting/keyword"), ...])`."""

    def __init__(
        self,
        handler: Handler,
        routes: Iterable[tuple[str, str]],
        *,
        stage: str = "v1",
        timeout_ms: int = 10_000,
        policy: ResourcePolicy | None = None,
    ) -> None:
        self.handler, self.stage, self.timeout_ms = handler, stage, timeout_ms
        # the API's resource policy (source-IP allow-lists), evaluated before the function
        self.policy = policy
        self.routes = [(m.upper(), r, _pattern(r)) for m, r in routes]
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()  # one invocation at a time, like one warm Lambda instance

    def event(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[dict[str, Any] | None, bool]:
        """The proxy event for a request, or (None, method_matched) when no route matches."""
        split = urlsplit(raw_path)
        path = split.path
        if path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        path_matched = False
        for route_method, resource, pattern in self.routes:
            match = pattern.match(path)
            if not match:
                continue
            path_matched = True
            if route_method not in (method, "ANY"):
                continue
            query = parse_qsl(split.query, keep_blank_values=True)
            single = {k: v for k, v in query} or None
            multi: dict[str, list[str]] = {}
            for k, v in query:
                multi.setdefault(k, []).append(v)
            text: str | None
            try:
                text, encoded = (body.decode("utf-8"), False) if body else (None, False)
            except UnicodeDecodeError:
                text, encoded = base64.b64encode(body).decode(), True
            request_id = str(uuid.uuid4())
            return (
                {
                    "resource": resource,
                    "path": path,
                    "httpMethod": method,
                    "headers": dict(headers),
                    "multiValueHeaders": {k: [v] for k, v in headers.items()},
                    "queryStringParameters": single,
                    "multiValueQueryStringParameters": multi or None,
                    "pathParameters": match.groupdict() or None,
                    "stageVariables": None,
                    "requestContext": {
                        "resourcePath": resource,
                        "httpMethod": method,
                        "path": f"/{self.stage}{path}",
                        "stage": self.stage,
                        "requestId": request_id,
                        "identity": {"sourceIp": source_ip},
                        "protocol": "HTTP/1.1",
                    },
                    "body": text,
                    "isBase64Encoded": encoded,
                },
                True,
            )
        return None, path_matched

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self.handler(event, LambdaContext(self.timeout_ms))

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        api = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or every answer waits ~40 ms for a delayed ACK
            wbufsize = 64 * 1024

            def log_message(self, format: str, *args: Any) -> None:  # paths hold the token
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                event, path_matched = api.event(
                    self.command, self.path, headers, body, self.client_address[0]
                )
                if event is None:
                    status = 403 if not path_matched else 405  # API Gateway's answers
                    message = (
                        "Missing Authentication Token" if status == 403 else "Method Not Allowed"
                    )
                    self._answer(
                        status,
                        {"Content-Type": "application/json"},
                        json.dumps({"message": message}).encode(),
                    )
                    return
                if api.policy is not None and not api.policy.allows(
                    self.command, event["path"], self.client_address[0]
                ):
                    message = "User: anonymous is not authorized to perform: execute-api:Invoke"
                    self._answer(
                        403,
                        {"Content-Type": "application/json"},
                        json.dumps({"Message": message}).encode(),
                    )
                    return
                try:
                    result = api.invoke(event)
                except Exception:  # the function crashed: API Gateway answers 502
                    self._answer(
                        502,
                        {"Content-Type": "application/json"},
                        b'{"message": "Internal server error"}',
                    )
                    return
                out = result.get("body") or ""
                data = base64.b64decode(out) if result.get("isBase64Encoded") else out.encode()
                out_headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
                for k, values in (result.get("multiValueHeaders") or {}).items():
                    out_headers[str(k)] = ", ".join(str(v) for v in values)
                self._answer(int(result.get("statusCode", 200)), out_headers, data)

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        self.server = ThreadingHTTPServer((host, port), RequestHandler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="local-apigw", daemon=True).start()
        return f"http://{host}:{self.server.server_address[1]}/{self.stage}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
