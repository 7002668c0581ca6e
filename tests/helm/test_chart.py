"""The Helm chart rendered with several value sets: lint, Kubernetes schemas, invariants.

Every rendered object is validated with ``kubernetes-validate --strict`` against the
Kubernetes 1.34 OpenAPI schemas (unknown fields fail); the CRD is the generated one; wrong
values fail ``helm template`` through values.schema.json with the field's path; the
environment the chart gives each program holds only settings that program reads.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from cascade.contract.crd import render_crd
from cascade.contract.redisurl import SentinelUrl, parse_redis_url
from cascade.contract.settings import EdgeSettings
from cascade.operator.settings import OperatorSettings

pytestmark = pytest.mark.slow  # needs the helm binary (scripts/cluster-build.sh builds it)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cascade"
KUBE_VERSION = "1.34.0"

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "everything-on": [
        "serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "edge.ingress.enabled=true",
        "edge.ingress.hosts[0].host=live.example.com",
        "edge.ingress.tls[0].secretName=live-tls",
        "edge.autoscaling.deliveryMetric.enabled=true",
        "edge.signingKeysSecret=cascade-signing",
        "redis.persistence.enabled=true",
        "redis.passwordSecret=cascade-redis",
        "recording.endpoint=https://s3.example.net",
        "recording.secretName=cascade-s3",
    ],
    "shield": [
        "shield.enabled=true",
        "edge.ingress.enabled=true",
        "edge.ingress.hosts[0].host=live.example.com",
    ],
    "external-redis-no-hpa": [
        "redis.enabled=false",
        "redis.externalUrl=rediss://redis.example.net:6380/0",
        "edge.autoscaling.enabled=false",
        "edge.replicas=3",
        "edge.podDisruptionBudget.enabled=false",
    ],
    "one-namespace": [
        "operator.watchNamespace=streams",
        "playbackBaseUrl=https://live.example.com",
    ],
    "external-sentinel": [
        "redis.enabled=false",
        "redis.sentinel.hosts={redis-node-0.redis:26379,redis-node-1.redis:26379}",
        "redis.sentinel.masterName=cascade",
        "redis.sentinel.usePassword=true",
        "redis.passwordSecret=redis-auth",
    ],
}


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed: {proc.stderr}")
    return proc


def render(helm: Path, sets: list[str], *extra: str) -> list[dict[str, Any]]:
    args = [
        "template",
        "cascade",
        str(CHART),
        "--namespace",
        "cascade",
        "--kube-version",
        KUBE_VERSION,
    ]
    for value in sets:
        args += ["--set", value]
    text = run_helm(helm, *args, *extra).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield doc["metadata"]["name"], pod, container


def test_lint_is_clean(helm: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_is_valid_kubernetes(helm: Path, name: str) -> None:
    docs = render(helm, VALUE_SETS[name], "--include-crds")

    unknown = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.append(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    # Only the Prometheus Operator's kind has no schema in Kubernetes itself.
    assert set(unknown) <= {"ServiceMonitor"}


def test_the_crd_is_the_generated_one(helm: Path) -> None:
    crds = by_kind(render(helm, [], "--include-crds"), "CustomResourceDefinition")

    assert crds == [yaml.safe_load(render_crd())]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_container_is_hardened(helm: Path, name: str) -> None:
    for owner, pod, container in containers(render(helm, VALUE_SETS[name])):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, owner
        assert security["readOnlyRootFilesystem"] is True, owner
        assert security["capabilities"]["drop"] == ["ALL"], owner
        assert pod["securityContext"]["runAsNonRoot"] is True, owner
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", owner
        assert "memory" in container["resources"]["limits"], owner


def test_operator_is_one_replica_recreated_with_least_privilege(helm: Path) -> None:
    docs = render(helm, [])
    (operator,) = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")
    ]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    rules = [rule for role in by_kind(docs, "ClusterRole") for rule in role["rules"]]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "*" not in rule["apiGroups"], rule
    grants = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("", "pods", "create") in grants
    assert ("", "pods", "delete") in grants
    assert ("cascade.dev", "livestreams/status", "patch") in grants
    assert not any(r == "secrets" for _, r, _ in grants)  # the operator never reads Secrets
    assert not any(v in ("update", "deletecollection", "escalate", "bind") for *_, v in grants)


def test_one_namespace_mode_uses_a_role_there(helm: Path) -> None:
    docs = render(helm, VALUE_SETS["one-namespace"])

    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "streams"
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "nodes",
        "customresourcedefinitions",
    }


def test_edges_drain_before_they_are_killed(helm: Path) -> None:
    (edge,) = [
        d
        for d in by_kind(render(helm, []), "Deployment")
        if d["metadata"]["name"].endswith("-edge")
    ]
    pod = edge["spec"]["template"]["spec"]
    container = pod["containers"][0]

    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = 5  # cascade.edge.main.DRAIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] > pause + drain
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "replicas" not in edge["spec"]  # the HPA owns the count


def test_hpa_scales_on_cpu_and_optionally_on_delivery(helm: Path) -> None:
    (default,) = by_kind(render(helm, []), "HorizontalPodAutoscaler")
    (both,) = by_kind(render(helm, VALUE_SETS["everything-on"]), "HorizontalPodAutoscaler")

    assert default["apiVersion"] == "autoscaling/v2"
    assert [m["type"] for m in default["spec"]["metrics"]] == ["Resource"]
    assert [m["type"] for m in both["spec"]["metrics"]] == ["Resource", "Pods"]
    assert both["spec"]["metrics"][1]["pods"]["metric"]["name"] == "cascade_edge_blocked_requests"
    down = default["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    assert not by_kind(render(helm, VALUE_SETS["external-redis-no-hpa"]), "HorizontalPodAutoscaler")


def test_the_delivery_metric_is_one_the_edge_exports() -> None:
    from cascade.edge.metrics import Metrics

    names = {metric.name for metric in Metrics().registry.collect()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["edge"]["autoscaling"]["deliveryMetric"]["name"] in names


def _aliases(settings: type[Any]) -> set[str]:
    names: set[str] = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
    return names


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_sets_only_settings_the_programs_read(helm: Path, name: str) -> None:
    readers = {
        "cascade-operator": _aliases(OperatorSettings) | {"REDIS_PASSWORD"},
        "cascade-edge": _aliases(EdgeSettings) | {"REDIS_PASSWORD"},
    }
    seen = set()
    for owner, _, container in containers(render(helm, VALUE_SETS[name])):
        program = container.get("command", [""])[0]
        if program not in readers:
            continue
        seen.add(program)
        env = {e["name"] for e in container["env"]}
        assert env <= readers[program], (
            f"{owner}: {sorted(env - readers[program])} are read by nobody"
        )
    assert seen == set(readers)


def test_operator_settings_from_the_chart_parse(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (operator,) = [
        d
        for d in by_kind(render(helm, VALUE_SETS["everything-on"]), "Deployment")
        if d["metadata"]["name"].endswith("-operator")
    ]
    env = {
        e["name"]: e.get("value", "secret")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }

    for key, value in env.items():  # as the process reads them: from its environment
        monkeypatch.setenv(key, value)
    settings = OperatorSettings()

    assert settings.transcoder_image == "ghcr.io/cascade/transcoder:0.1.0"
    assert settings.max_concurrent_streams == 25
    assert [t.key for t in settings.gpu_tolerations] == ["nvidia.com/gpu"]
    assert settings.redis_url == "redis://:$(REDIS_PASSWORD)@cascade-redis.cascade.svc:6379/0"
    assert env["REDIS_PASSWORD"] == "secret"  # from the Secret, declared before REDIS_URL
    # The object store: where from values, credentials from a Secret, for its transcoders.
    assert (
        settings.s3_endpoint == "https://s3.example.net" and settings.s3_secret_name == "cascade-s3"
    )
    assert env["AWS_SECRET_ACCESS_KEY"] == "secret"
    names = list(env)
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")


def test_an_external_sentinel_reaches_every_program_as_one_url(
    helm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(helm, VALUE_SETS["external-sentinel"])
    assert not [d for d in docs if "-redis" in d["metadata"]["name"]]  # no bundled Redis
    urls = set()
    for owner, _, container in containers(docs):
        env = {e["name"]: e.get("value", "secret") for e in container.get("env", [])}
        if "REDIS_URL" in env:
            urls.add(env["REDIS_URL"])
            assert list(env).index("REDIS_PASSWORD") < list(env).index("REDIS_URL"), owner
    (url,) = urls
    assert url == (
        "redis+sentinel://:$(REDIS_PASSWORD)@redis-node-0.redis:26379,redis-node-1.redis:26379"
        "/cascade/0?sentinel_password=$(REDIS_PASSWORD)"
    )
    # As the programs read it (Kubernetes has expanded $(REDIS_PASSWORD) by then).
    monkeypatch.setenv("REDIS_URL", url.replace("$(REDIS_PASSWORD)", "pw"))
    location = parse_redis_url(OperatorSettings().redis_url)
    assert location == SentinelUrl(
        (("redis-node-0.redis", 26379), ("redis-node-1.redis", 26379)),
        "cascade",
        password="pw",
        sentinel_password="pw",
    )
    assert EdgeSettings().redis_url == OperatorSettings().redis_url


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("edge.port=80", "/edge/port"),
        ("edge.replicas=two", "/edge/replicas"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("edge.autoscaling.targetCPUUtilizationPercentage=0", "targetCPUUtilizationPercentage"),
        ("redis.enabled=false", "/redis/externalUrl"),
        ("redis.externalUrl=http://x", "/redis/externalUrl"),
        ("redis.sentinel.hosts={sentinel-without-port}", "/redis/sentinel/hosts/0"),
        ("transcoder.gpuTolerations[0].effect=Sometimes", "/transcoder/gpuTolerations/0/effect"),
        ("edge.maxStreamsPerViewr=6", "maxStreamsPerViewr"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ],
)
def test_wrong_values_fail_with_the_field(helm: Path, value: str, says: str) -> None:
    args = ["template", "cascade", str(CHART), "--kube-version", KUBE_VERSION, "--set", value]
    result = run_helm(helm, *args, check=False)

    assert result.returncode != 0
    assert says in result.stderr, result.stderr


def test_values_schema_is_valid_json_and_documents_every_default() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], data: dict[str, Any], path: str) -> None:
        for key, value in data.items():
            assert key in node.get("properties", {}), f"{path}.{key} is not in values.schema.json"
            child = node["properties"][key]
            if isinstance(value, dict) and child.get("properties"):
                walk(child, value, f"{path}.{key}")

    walk(schema, values, "")


def test_the_shield_tier_sits_between_the_ingress_and_the_edges(helm: Path) -> None:
    assert not [d for d in render(helm, []) if "shield" in d["metadata"]["name"]], "off by default"
    docs = render(helm, VALUE_SETS["shield"])
    (deployment,) = [
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "cascade-shield"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["cascade-shield"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CASCADE_SHIELD_BACKEND"] == "cascade-edge:80", "the edge Service"
    assert env["REDIS_URL"] and env["VIEWER_TIMEOUT_SECONDS"] == "30"
    readers = _aliases(EdgeSettings) | {"REDIS_PASSWORD", "CASCADE_SHIELD_BACKEND",
                                        "CASCADE_SHIELD_CACHE_MIB"}  # fmt: skip
    assert set(env) <= readers
    (edge,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "cascade-edge"]
    edge_env = {
        e["name"]: e.get("value") for e in edge["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert edge_env["CASCADE_VIEWER_SESSIONS"] == "cmcd"
    (ingress,) = by_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "cascade-shield"
    assert {d["metadata"]["name"] for d in by_kind(docs, "HorizontalPodAutoscaler")} == {
        "cascade-edge",
        "cascade-shield",
    }
    assert [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "cascade-shield"]
