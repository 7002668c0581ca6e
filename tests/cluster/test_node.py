"""The real node of the test cluster: pods that run, on addresses that exist only in the cluster's
network namespace.

scripts/cluster-up.sh starts, beside the kwok fakes, a node made of containerd + runc, the
kubelet, CNI (bridge, host-local), kube-proxy, CoreDNS and metrics-server (scripts/node-up.sh).
These tests run real containers from the images `make images` built (imported, never
pulled): a web server behind a Service, a client that finds it by name, and check where every
address lives: the node IP and the pods' addresses inside the namespace, none of them in the
machine's own, and the namespace's only way out an interface whose peer is down.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import urllib.request
from typing import Any

import pytest

from . import netns
from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NODE = "cascade-node"
NODE_IP = "10.200.0.1"
POD_CIDR = ipaddress.ip_network("10.244.100.0/24")
# Only pods that tolerate the real node's taint run there (the fakes take everything else).
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {"cascade.dev/node": "real"},
    "tolerations": [{"key": "cascade.dev/node", "operator": "Exists", "effect": "NoSchedule"}],
}
IMAGE = "localhost/cascade/edge:local"  # has Python; any of the imported images would do


def addresses(argv_prefix: list[str]) -> dict[str, list[str]]:
    """Interface name -> IPv4 addresses, from `ip -j addr` run with the given prefix."""
    out = subprocess.run(
        [*argv_prefix, "ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True
    ).stdout
    return {
        link["ifname"]: [a["local"] for a in link.get("addr_info", [])] for link in json.loads(out)
    }


def pod_ip(ns: Kubectl, name: str) -> str:
    return str(ns.get("pod", name)["status"].get("podIP", ""))


def run_pod(
    ns: Kubectl, name: str, command: list[str], labels: dict[str, str] | None = None
) -> None:
    ns.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                **ON_REAL_NODE,
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": command}
                ],
            },
        }
    )


def test_the_real_node_is_ready_with_containerd_and_its_ip_in_the_namespace(
    kubectl: Kubectl,
) -> None:
    node = kubectl.get("node", NODE)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.6.20"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
    assert internal == [NODE_IP]
    assert {"key": "cascade.dev/node", "value": "real", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]
    # The node IP is in the cluster's namespace (this thread is in it) and not in the host's.
    inside = addresses([])
    assert inside["cascade0"] == [NODE_IP]
    assert NODE_IP not in {
        a for addrs in addresses(netns.in_host_namespace()).values() for a in addrs
    }


def test_the_namespace_has_no_way_out(kubectl: Kubectl) -> None:
    """Every interface of the namespace is loopback, the node's veth (its peer down, also here),
    the pods' bridge or a pod's veth: nothing connects to the machine's own network."""
    links = json.loads(
        subprocess.run(
            ["ip", "-j", "-d", "link"], capture_output=True, text=True, check=True
        ).stdout
    )
    kinds = {link["ifname"]: link.get("linkinfo", {}).get("info_kind", "") for link in links}
    assert kinds.pop("lo") == ""
    assert kinds.pop("cascade0") == "veth"
    assert kinds.pop("cascade0-down") == "veth"
    down = next(link for link in links if link["ifname"] == "cascade0-down")
    assert "UP" not in down["flags"]
    kinds.pop("cni0", None)  # the bridge exists once the first pod has run
    assert set(kinds.values()) <= {"veth"}, kinds
    # Each pod veth's peer is in a namespace other than the host's: the host has no veth of ours.
    host_links = json.loads(
        subprocess.run(
            [*netns.in_host_namespace(), "ip", "-j", "link"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert not {link["ifname"] for link in host_links} & {"cascade0", "cascade0-down", "cni0"}


def test_pods_run_get_addresses_in_the_pod_network_and_reach_each_other_through_services(
    namespace: Kubectl,
) -> None:
    ns = namespace
    run_pod(
        ns,
        "web",
        ["python", "-c", WEB_SERVER],
        labels={"app": "web"},
    )
    ns.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]},
        }
    )
    ns.run("wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    web_ip = pod_ip(ns, "web")
    assert ipaddress.ip_address(web_ip) in POD_CIDR
    assert ns.get("pod", "web")["spec"]["nodeName"] == NODE
    # The pod's address is in the namespace's pod network, not in the machine's own.
    assert web_ip not in {
        a for addrs in addresses(netns.in_host_namespace()).values() for a in addrs
    }

    # From the node (this thread, in the namespace): the Service's cluster IP, through
    # kube-proxy's rules.
    cluster_ip = ns.get("service", "web")["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("10.96.0.0/16")
    body = wait_for(
        "the web Service through its cluster IP",
        lambda: _fetch(f"http://{cluster_ip}/"),
        timeout=30,
    )
    assert body == f"hello from {web_ip}"

    # From another pod: the Service by name (CoreDNS behind kube-system/kube-dns) and the API
    # server through the `kubernetes` Service.
    run_pod(ns, "client", ["python", "-c", CLIENT.format(namespace=ns.namespace)])
    wait_for(
        "the client pod to finish",
        lambda: ns.get("pod", "client")["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=90,
    )
    log = ns.run("logs", "client").stdout.splitlines()
    assert ns.get("pod", "client")["status"]["phase"] == "Succeeded", log
    assert log[0] == f"web.{ns.namespace}.svc.cluster.local -> {cluster_ip}"
    assert log[1] == f"hello from {web_ip}"
    assert log[2] == "kubernetes.default.svc -> 10.96.0.1 /livez 200"
    assert ipaddress.ip_address(log[3].removeprefix("my address ")) in POD_CIDR

    # The kubelet serves logs, exec and port-forward through the API server.
    assert ns.run("exec", "web", "--", "python", "-c", "print('exec ok')").stdout == "exec ok\n"


def test_metrics_server_reports_the_real_nodes_pods(namespace: Kubectl) -> None:
    ns = namespace
    run_pod(ns, "busy", ["python", "-c", "while True: pass"])
    ns.run("wait", "--for=condition=Ready", "pod/busy", "--timeout=90s")

    def usage() -> int | None:
        proc = ns.run(
            "get",
            "--raw",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns.namespace}/pods/busy",
            check=False,
        )
        if proc.returncode != 0:
            return None
        cpu = json.loads(proc.stdout)["containers"][0]["usage"]["cpu"]
        nanos = int(cpu.removesuffix("n")) if cpu.endswith("n") else int(float(cpu) * 1e9)
        return nanos if nanos > 0 else None

    # A busy loop uses about a core; metrics-server scrapes every 15 s.
    nanocores = wait_for("the busy pod's CPU in the metrics API", usage, timeout=90)
    assert nanocores > 200_000_000
    ns.run("delete", "pod", "busy", "--grace-period=0", "--force")


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return str(response.read().decode())
    except OSError:
        return None


WEB_SERVER = """
import http.server, socket
me = socket.gethostbyname(socket.gethostname())
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {me}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8000), H).serve_forever()
"""

CLIENT = """
import socket, ssl, time, urllib.request
name = "web.{namespace}.svc.cluster.local"
print(name, "->", socket.gethostbyname(name))
for _ in range(50):
    try:
        print(urllib.request.urlopen("http://web/", timeout=3).read().decode()); break
    except OSError:
        time.sleep(0.2)
ctx = ssl._create_unverified_context()
status = urllib.request.urlopen("https://kubernetes.default.svc/livez", context=ctx, timeout=5).status
print("kubernetes.default.svc ->", socket.gethostbyname("kubernetes.default.svc"), "/livez", status)
print("my address", socket.gethostbyname(socket.gethostname()))
"""
