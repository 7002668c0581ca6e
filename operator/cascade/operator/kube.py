"""The few Kubernetes writes the operator makes, as async calls. A thin shell.

Reads come from kopf's watch streams (indexes), never from here. Writes go through the
``kubernetes`` client's transport (its config loading covers kubeconfig files, in-cluster
service accounts and exec plugins) run in a worker thread; bodies are the plain dicts the
pure builders return, sent as JSON, so nothing is lost converting to and from the client's
models.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from kubernetes import client, config

MERGE_PATCH = "application/merge-patch+json"
GROUP, VERSION, PLURAL = "cascade.dev", "v1alpha1", "livestreams"
# The operator's name in managedFields and events.
FIELD_MANAGER = "cascade-operator"


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def load_config() -> client.ApiClient:
    """In-cluster credentials inside a pod, else the kubeconfig (``KUBECONFIG`` or ~/.kube)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, *, timeout: float = 30.0) -> None:
        self._api = api
        self._timeout = timeout

    def _request_sync(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        params = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=[("fieldManager", FIELD_MANAGER)] if method in ("POST", "PATCH") else [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*params, _request_timeout=self._timeout)
        response.read()  # type: ignore[no-untyped-call]
        data = json.loads(response.data or b"{}")
        if not 200 <= response.status < 300:
            raise KubeError(
                response.status, str(data.get("reason", "")), str(data.get("message", ""))
            )
        return dict(data)

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self._request_sync, method, path, body, content_type)
        except client.ApiException as exc:  # transport-level errors of the client
            raise KubeError(exc.status or 0, str(exc.reason), str(exc.body or "")) from exc

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """POST a namespaced core object (Pod, Service); returns what the server stored."""
        ns = manifest["metadata"]["namespace"]
        plural = {"Pod": "pods", "Service": "services"}[manifest["kind"]]
        return await self.request("POST", f"/api/v1/namespaces/{ns}/{plural}", manifest)

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete exactly that pod: the uid precondition spares a newer pod of the same name."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}
        try:
            await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except KubeError as exc:
            if exc.status not in (404, 409):  # gone already, or another pod now
                raise

    async def patch_service(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self.request(
            "PATCH", f"/api/v1/namespaces/{namespace}/services/{name}", patch, MERGE_PATCH
        )

    async def delete_service(self, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", f"/api/v1/namespaces/{namespace}/services/{name}")
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        await self.request("PATCH", path, {"status": patch}, MERGE_PATCH)
