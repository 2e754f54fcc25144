"""A WSGI server that hosts the fake upstreams, one vendor per path prefix.

Each vendor module supplies a `VendorSandbox` subclass whose `handle(request)` checks signatures
and keeps state exactly as the real upstream would. The server adds what no real upstream offers:
faults injected on demand through `POST /_faults` (JSON, see `Fault`), and `GET /_health`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger(__name__)


@dataclass
class SandboxRequest:
    method: str
    path: str  # below the vendor prefix, e.g. "/v1/openapi/order/VIPCharge"
    query: dict[str, str]
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        """Fields of a multipart/form-data or urlencoded body."""
        content_type = self.header("content-type")
        if content_type.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + self.body
        )
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True).decode("utf-8")
        return fields


@dataclass
class SandboxResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"

    @classmethod
    def json(cls, data: Any, status: int = 200) -> SandboxResponse:
        return cls(status=status, body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def text(cls, text: str, status: int = 200) -> SandboxResponse:
        return cls(status=status, body=text.encode("utf-8"), content_type="text/plain;charset=UTF-8")


@dataclass
class Fault:
    """A fault to apply to the next `times` requests of a vendor (and operation, if given).

    kind: "latency" (answer after delay_ms), "timeout" (carry the request out, then hold the
    answer for delay_ms, default 60 s), "http_500" (answer 500 without doing anything),
    "malformed" (carry it out, answer a broken body), "reject" (answer the vendor's own business
    error with `code` and `message`, doing nothing).
    """

    vendor: str
    kind: str
    operation: str = ""
    times: int = 1
    delay_ms: int = 0
    code: str = ""
    message: str = ""


class VendorSandbox:
    """Base of a fake upstream. `prefix` is its path prefix, e.g. "/exchange"."""

    prefix: str = ""
    name: str = ""

    def __init__(self, server: Sandbox) -> None:
        self.server = server
        self.lock = threading.RLock()

    def operation_of(self, request: SandboxRequest) -> str:
        return request.path

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def rejection(self, fault: Fault) -> SandboxResponse:
        """The vendor's own error shape for an injected business rejection."""
        raise NotImplementedError

    @classmethod
    def demo_environment(cls, base_url: str, callback_base_url: str) -> dict[str, str]:
        """Environment variables (credentials, base URL) for a back office talking to this sandbox.

        Called once when the demo environment is generated; values are stable afterwards because
        they are written to var/sandbox.env. Generate secrets randomly, never hard-code them.
        """
        raise NotImplementedError


@dataclass
class Sandbox:
    """All fake upstreams behind one WSGI app."""

    vendor_classes: Iterable[type[VendorSandbox]]
    base_url: str = ""
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vendor_classes = list(self.vendor_classes)
        self.faults_lock = threading.Lock()
        self.vendors = {cls.prefix: cls(self) for cls in self.vendor_classes}

    def reset(self) -> None:
        """Forget all upstream state (orders, balances, faults), as a fresh sandbox would."""
        self.clear_faults()
        self.vendors = {cls.prefix: cls(self) for cls in self.vendor_classes}

    def vendor(self, name: str) -> VendorSandbox:
        return next(v for v in self.vendors.values() if v.name == name)

    def add_fault(self, fault: Fault) -> None:
        with self.faults_lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.faults_lock:
            self.faults.clear()

    def _take_fault(self, vendor: VendorSandbox, operation: str) -> Fault | None:
        with self.faults_lock:
            for fault in self.faults:
                if fault.vendor == vendor.name and fault.operation in ("", operation):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def __call__(self, environ, start_response):
        response = self._dispatch(environ)
        start_response(
            f"{response.status} {'OK' if response.status < 400 else 'Error'}",
            [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))],
        )
        return [response.body]

    def _dispatch(self, environ) -> SandboxResponse:
        path = environ.get("PATH_INFO", "/")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if path == "/_health":
            return SandboxResponse.json({"status": "ok", "vendors": sorted(v.name for v in self.vendors.values())})
        if path == "/_faults" and environ["REQUEST_METHOD"] == "POST":
            self.add_fault(Fault(**json.loads(body or b"{}")))
            return SandboxResponse.json({"status": "ok"})
        if path == "/_faults" and environ["REQUEST_METHOD"] == "DELETE":
            self.clear_faults()
            return SandboxResponse.json({"status": "ok"})
        vendor = next((v for prefix, v in self.vendors.items() if path.startswith(prefix + "/")), None)
        if vendor is None:
            return SandboxResponse.json({"error": "no such sandbox endpoint"}, status=404)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        request = SandboxRequest(
            method=environ["REQUEST_METHOD"],
            path=path[len(vendor.prefix):],
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        fault = self._take_fault(vendor, vendor.operation_of(request))
        if fault is None:
            return vendor.handle(request)
        logger.info("sandbox %s: injecting %s", vendor.name, fault.kind)
        if fault.kind == "http_500":
            return SandboxResponse.text("Internal Server Error", status=500)
        if fault.kind == "reject":
            return vendor.rejection(fault)
        if fault.kind == "latency":
            time.sleep(fault.delay_ms / 1000)
            return vendor.handle(request)
        response = vendor.handle(request)
        if fault.kind == "timeout":
            time.sleep((fault.delay_ms or 60_000) / 1000)
            return response
        if fault.kind == "malformed":
            return SandboxResponse(status=200, body=b"<html>upstream gateway error</html>", content_type="text/html")
        raise ValueError(f"unknown fault kind {fault.kind!r}")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the standard library
        logger.debug("sandbox %s", format % args)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


def default_vendor_classes() -> list[type[VendorSandbox]]:
    from providers.sandbox.vendors import all_vendor_classes

    return all_vendor_classes()


def serve(host: str, port: int, vendor_classes: Iterable[type[VendorSandbox]] | None = None):
    """Build the WSGI server (not yet serving). Port 0 picks a free port."""
    sandbox = Sandbox(vendor_classes=vendor_classes if vendor_classes is not None else default_vendor_classes())
    httpd = make_server(host, port, sandbox, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    sandbox.base_url = f"http://{host}:{httpd.server_port}"
    httpd.sandbox = sandbox
    return httpd
