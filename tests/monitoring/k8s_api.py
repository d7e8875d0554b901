"""A tiny Kubernetes API server on loopback that answers from recorded JSON files.

A scenario folder (tests/data/k8s/<scenario>/) holds one List per resource
(`horizontalpodautoscalers.json`, `deployments.json`, `pods.json`, `events.json`) and
optionally `forbidden.json` (resources that answer 403 as RBAC would). The server filters
lists by namespace, `labelSelector` (equality) and `fieldSelector` (`involvedObject.*`) like
the real API server, answers single objects by name or 404 with a Status, and records each
request so tests can assert on what the client asked.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

ROUTE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[\w.]+)/(?P<version>\w+))/namespaces/(?P<ns>[^/]+)/(?P<resource>\w+)(?:/(?P<name>[^/]+))?$"
)
KINDS = {
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "deployments": "Deployment",
    "pods": "Pod",
    "events": "Event",
}


def _status(code: int, reason: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def _labels_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part, {}) if isinstance(obj, dict) else {}
    return obj


def _fields_match(selector: str, obj: dict[str, Any]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if str(_field(obj, key)) != value:
            return False
    return True


class FakeKubernetes:
    """Serve a scenario folder as a Kubernetes API on 127.0.0.1; write a kubeconfig pointing at it."""

    def __init__(self, scenario: Path, user: str = "system:serviceaccount:llm:viewer") -> None:
        self.scenario, self.user = scenario, user
        self.requests: list[str] = []
        forbidden = scenario / "forbidden.json"
        self.forbidden: list[str] = json.loads(forbidden.read_text()) if forbidden.exists() else []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.requests.append(self.path)
                code, body = api.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, raw: str) -> tuple[int, dict[str, Any]]:
        url = urlparse(raw)
        route = ROUTE.match(url.path)
        if route is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource", {})
        ns, resource, name = route["ns"], route["resource"], route["name"]
        group = route["group"] or ""
        if resource in self.forbidden:
            qualified = f"{resource}.{group}" if group else resource
            what = f'{qualified} "{name}"' if name else qualified
            message = (
                f'{what} is forbidden: User "{self.user}" cannot {"get" if name else "list"} resource '
                f'"{resource}" in API group "{group}" in the namespace "{ns}"'
            )
            return 403, _status(403, "Forbidden", message, {"kind": resource, **({"name": name} if name else {})})
        path = self.scenario / f"{resource}.json"
        items: list[dict[str, Any]] = json.loads(path.read_text())["items"] if path.exists() else []
        items = [i for i in items if i["metadata"].get("namespace") == ns]
        if name:
            for item in items:
                if item["metadata"]["name"] == name:
                    return 200, item
            return 404, _status(
                404,
                "NotFound",
                f'{resource}{"." + group if group else ""} "{name}" not found',
                {"name": name, "kind": resource, **({"group": group} if group else {})},
            )
        query = parse_qs(url.query)
        if "labelSelector" in query:
            items = [i for i in items if _labels_match(query["labelSelector"][0], i["metadata"].get("labels") or {})]
        if "fieldSelector" in query:
            items = [i for i in items if _fields_match(query["fieldSelector"][0], i)]
        version = f"{group}/{route['version']}" if group else "v1"
        return 200, {
            "kind": f"{KINDS.get(resource, resource)}List",
            "apiVersion": version,
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }

    def kubeconfig(self, path: Path, namespace: str = "llm") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "viewer", "user": {"token": "not-a-secret"}}],
                    "contexts": [
                        {"name": "fake", "context": {"cluster": "fake", "user": "viewer", "namespace": namespace}}
                    ],
                }
            )
        )
        return path

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
