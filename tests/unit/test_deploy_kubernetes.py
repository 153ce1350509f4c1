"""The manifests of docs/deploy/kubernetes: every document valid against Kubernetes'
own schemas (kubernetes-validate's JSON schemas from the OpenAPI of each release, in
strict mode, so an unknown field is an error), and consistent with the corral they
run: the probes ask the health path on the port the container's corral binds, the
grace period outlasts the drain, Prometheus scrapes the --stats port, and the Prometheus
adapter's rule names metrics corral exports. Each check is shown to catch a broken copy.
No cluster runs here."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest
import yaml

from corral.config import ConfigError
from tests.deployment_files import (
    KUBERNETES,
    Dockerfile,
    corral_config,
    exported_metric_names,
    host_and_port,
    reachable_from_outside,
    read_dockerfile,
    read_manifests,
)

# The oldest release the manifests are meant for (autoscaling/v2, seccompProfile and the
# probes' behaviour during termination are older), and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())
KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}
# The ConfigMap key the Prometheus adapter reads its rules from (its --config file).
ADAPTER_CONFIG_KEY = "config.yaml"

Documents = list[tuple[str, dict[str, Any]]]


def validate(document: dict[str, Any], version: str) -> None:
    """Raises kubernetes_validate's ValidationError for a document its schema rejects,
    SchemaNotFoundError for a kind or apiVersion the release does not have."""
    kubernetes_validate.validate(document, version, strict=True)


def test_the_manifests_are_there() -> None:
    assert {document["kind"] for _, document in read_manifests()} == KINDS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("name", "document"),
    read_manifests(),
    ids=[f"{name}:{document['kind']}" for name, document in read_manifests()],
)
def test_each_manifest_is_valid(name: str, document: dict[str, Any], version: str) -> None:
    validate(document, version)


# (what is broken, the file, the text replaced, its replacement)
BROKEN_SCHEMA = [
    ("misspelled field", "deployment.yaml", "periodSeconds: 2\n", "periodSecond: 2\n"),
    ("field at the wrong level", "deployment.yaml", "          args:\n", "          argv:\n"),
    (
        "string for an integer",
        "deployment.yaml",
        "terminationGracePeriodSeconds: 45",
        'terminationGracePeriodSeconds: "45"',
    ),
    ("name for a port number", "service.yaml", "port: 80\n", "port: http\n"),
    ("required field missing", "hpa.yaml", "maxReplicas: 10\n", "maxReplica: 10\n"),
    ("no such apiVersion", "hpa.yaml", "autoscaling/v2\n", "autoscaling/v3\n"),
    (
        "map for a string",
        "prometheus-adapter-rules.yaml",
        "  config.yaml: |\n",
        "  config.yaml:\n    rules: []\n  rest: |\n",
    ),
]


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [case[1:] for case in BROKEN_SCHEMA],
    ids=[case[0] for case in BROKEN_SCHEMA],
)
def test_a_broken_manifest_is_rejected(file: str, old: str, new: str) -> None:
    text = (KUBERNETES / file).read_text()
    assert text.count(old) == 1
    broken = [doc for doc in yaml.safe_load_all(text.replace(old, new)) if doc is not None]
    for version in KUBERNETES_VERSIONS:
        with pytest.raises(
            (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)
        ):
            for document in broken:
                validate(document, version)


def _only(documents: Documents, kind: str) -> dict[str, Any]:
    found = [document for _, document in documents if document["kind"] == kind]
    assert len(found) == 1, f"{len(found)} documents of kind {kind}"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_port(container: dict[str, Any], port: int | str) -> int | None:
    """The number of a port given by number or by the container port's name."""
    if isinstance(port, int):
        return port
    for each in container.get("ports", []):
        if each.get("name") == port:
            return int(each["containerPort"])
    return None


def deployment_faults(documents: Documents, dockerfile: Dockerfile) -> list[str]:
    """What ties the manifests to the corral they run, and is broken; [] for nothing."""
    deployment = _only(documents, "Deployment")
    pod = deployment["spec"]["template"]
    container = _container(deployment)
    argv = [*container.get("command", []), *container.get("args", [])]
    try:
        config = corral_config(argv)
    except (ValueError, ConfigError) as error:
        return [f"the container's command line: {error}"]
    faults: list[str] = []
    if len(config.bind) != 1:
        return [f"the container binds {config.bind}, not one address"]
    host, port = host_and_port(config.bind[0])
    if not reachable_from_outside(host):
        faults.append(f"corral binds {config.bind[0]}: kubelet's probes cannot reach it")
    if not config.health_path or not config.drain_delay > 0:
        faults.append("the container gives no --health-path or no --drain-delay")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name, {}).get("httpGet")
        if probe is None:
            faults.append(f"no {probe_name} on HTTP")
            continue
        if probe.get("path") != config.health_path:
            faults.append(f"{probe_name} asks {probe.get('path')}, not {config.health_path}")
        if _container_port(container, probe["port"]) != port:
            faults.append(f"{probe_name} asks port {probe['port']}, not the one bound, {port}")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if not grace > config.drain_delay + config.graceful_timeout:
        faults.append(
            f"terminationGracePeriodSeconds {grace} is not more than --drain-delay "
            f"{config.drain_delay:g} + --graceful-timeout {config.graceful_timeout:g}"
        )
    if "preStop" in container.get("lifecycle", {}):
        faults.append("a preStop hook delays TERM, which --drain-delay already covers")
    faults.extend(_scrape_faults(pod, container, config.stats))
    faults.extend(_security_faults(pod, container, dockerfile))
    faults.extend(_service_faults(documents, pod, container, port))
    faults.extend(_autoscaler_faults(documents, deployment))
    return faults


def _scrape_faults(pod: dict[str, Any], container: dict[str, Any], stats: str | None) -> list[str]:
    if stats is None:
        return ["the container gives no --stats for Prometheus to scrape"]
    host, port = host_and_port(stats)
    annotations = pod["metadata"].get("annotations", {})
    faults = []
    if not reachable_from_outside(host):
        faults.append(f"--stats {stats} is on loopback: Prometheus cannot scrape it")
    if annotations.get("prometheus.io/scrape") != "true":
        faults.append("the pod is not annotated prometheus.io/scrape: 'true'")
    if annotations.get("prometheus.io/port") != str(port):
        faults.append(f"prometheus.io/port is {annotations.get('prometheus.io/port')}, not {port}")
    if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
        faults.append("prometheus.io/path is not /metrics")
    if port not in {each["containerPort"] for each in container.get("ports", [])}:
        faults.append(f"the --stats port {port} is not among the container's ports")
    return faults


def _security_faults(
    pod: dict[str, Any], container: dict[str, Any], dockerfile: Dockerfile
) -> list[str]:
    context = {**pod["spec"].get("securityContext", {}), **container.get("securityContext", {})}
    image_user = (dockerfile.last("USER") or "0").split(":")[0]
    faults = []
    if context.get("runAsNonRoot") is not True:
        faults.append("runAsNonRoot is not true")
    if context.get("runAsUser", image_user) in (0, "0"):
        faults.append("the container runs as root")
    if "runAsUser" in context and str(context["runAsUser"]) != image_user:
        faults.append(f"runAsUser {context['runAsUser']} is not the image's USER {image_user}")
    exposed = {each["containerPort"] for each in container.get("ports", [])}
    if not exposed <= dockerfile.exposed_ports:
        faults.append(f"container ports {sorted(exposed - dockerfile.exposed_ports)} not exposed")
    return faults


def _service_faults(
    documents: Documents, pod: dict[str, Any], container: dict[str, Any], port: int
) -> list[str]:
    service = _only(documents, "Service")
    labels = pod["metadata"].get("labels", {})
    selector = service["spec"].get("selector", {})
    faults = []
    if not selector or any(labels.get(key) != value for key, value in selector.items()):
        faults.append(f"the Service selects {selector}, not the pods labelled {labels}")
    targets = {_container_port(container, each["targetPort"]) for each in service["spec"]["ports"]}
    if targets != {port}:
        faults.append(f"the Service sends to ports {targets}, not the one bound, {port}")
    return faults


def _autoscaler_faults(documents: Documents, deployment: dict[str, Any]) -> list[str]:
    autoscaler = _only(documents, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    faults = []
    if (target["kind"], target["name"]) != ("Deployment", deployment["metadata"]["name"]):
        faults.append(f"the autoscaler scales {target['kind']} {target['name']}")
    served = {rule["name"]["as"] for rule in adapter_rules(documents)}
    for metric in autoscaler["spec"]["metrics"]:
        if metric["type"] != "Pods":
            faults.append(f"the autoscaler reads a {metric['type']} metric, not corral's")
        elif metric["pods"]["metric"]["name"] not in served:
            faults.append(
                f"the autoscaler reads {metric['pods']['metric']['name']}, which no "
                f"adapter rule makes ({sorted(served)})"
            )
    return faults


def adapter_rules(documents: Documents) -> list[dict[str, Any]]:
    """The rules of the Prometheus adapter's configuration, parsed from its ConfigMap."""
    config = yaml.safe_load(_only(documents, "ConfigMap")["data"][ADAPTER_CONFIG_KEY])
    return list(config["rules"])


# A metric named in PromQL: the name before a selector's braces.
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def adapter_faults(rules: list[dict[str, Any]], exported: set[str]) -> list[str]:
    """What in the adapter's `rules` names a series corral does not export or does not
    select one pod's series; [] for nothing."""
    faults = []
    for rule in rules:
        series = _SELECTOR.findall(rule["seriesQuery"])
        query = _SELECTOR.findall(rule["metricsQuery"])
        for name, _ in series + query:
            if name not in exported:
                faults.append(f"the rule names {name}, which corral does not export")
        for name, matchers in query:
            # The adapter puts the pod's namespace and name there: without it, each pod
            # would be given the whole Deployment's figure.
            if "<<.LabelMatchers>>" not in matchers:
                faults.append(f"{name} in the metricsQuery is not narrowed to the pod")
        overrides = rule.get("resources", {}).get("overrides", {})
        if {value["resource"] for value in overrides.values()} != {"namespace", "pod"}:
            faults.append("the rule does not map its series to namespaces and pods")
        if len(series) != 1 or not re.search(rule["name"]["matches"], series[0][0]):
            faults.append(f"the rule's name.matches does not match its series {series}")
    return faults


def test_the_adapter_rules_name_metrics_corral_exports() -> None:
    rules = adapter_rules(read_manifests())
    assert rules
    assert adapter_faults(rules, exported_metric_names()) == []


def test_the_adapter_ratio_is_busy_slots_over_slots() -> None:
    (rule,) = adapter_rules(read_manifests())
    names = [name for name, _ in _SELECTOR.findall(rule["metricsQuery"])]
    assert names == ["corral_requests_in_app", "corral_slots"]
    assert "/" in rule["metricsQuery"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("corral_slots{", "corral_slot{", "corral_slot,"),
        ("corral_requests_in_app{<<", "corral_requests_in_app_total{<<", "_total"),
        ("corral_slots{<<.LabelMatchers>>}", "corral_slots{}", "narrowed"),
        ('"^corral_requests_in_app$"', '"^corral_in_app$"', "name.matches"),
    ],
)
def test_a_broken_adapter_rule_is_caught(old: str, new: str, expected: str) -> None:
    documents = read_manifests()
    config_map = _only(documents, "ConfigMap")
    text = config_map["data"][ADAPTER_CONFIG_KEY]
    assert old in text
    config_map["data"][ADAPTER_CONFIG_KEY] = text.replace(old, new)
    faults = adapter_faults(adapter_rules(documents), exported_metric_names())
    assert any(expected in fault for fault in faults), faults


def test_the_manifests_run_corral_as_it_is_configured() -> None:
    assert deployment_faults(read_manifests(), read_dockerfile()) == []


def _set_arg(flag: str, value: str) -> Callable[[Documents], None]:
    """Give the container's `flag` another value."""

    def change(documents: Documents) -> None:
        args = _container(_only(documents, "Deployment"))["args"]
        args[args.index(flag) + 1] = value

    return change


def _set(kind: str, path: str, value: Any) -> Callable[[Documents], None]:
    """Set the field at `path` of the one `kind`: keys separated by spaces, list items
    by number."""

    def change(documents: Documents) -> None:
        node: Any = _only(documents, kind)
        *parents, last = path.split()
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value

    return change


CONTAINER = "spec template spec containers 0"
BROKEN_DEPLOYMENT: list[tuple[str, Callable[[Documents], None], str]] = [
    ("unknown option", _set_arg("--drain-delay", "soon"), "command line"),
    ("loopback bind", _set_arg("--bind", "127.0.0.1:8000"), "cannot reach"),
    ("other bound port", _set_arg("--bind", "0.0.0.0:8080"), "not the one bound"),
    ("other health path", _set_arg("--health-path", "/ready"), "asks /healthz"),
    (
        "grace period",
        _set("Deployment", "spec template spec terminationGracePeriodSeconds", 40),
        "not more than",
    ),
    (
        "probe port",
        _set("Deployment", f"{CONTAINER} livenessProbe httpGet port", "metrics"),
        "livenessProbe asks port",
    ),
    (
        "no readiness probe",
        _set("Deployment", f"{CONTAINER} readinessProbe", {}),
        "no readinessProbe",
    ),
    (
        "preStop",
        _set("Deployment", f"{CONTAINER} lifecycle", {"preStop": {"sleep": {"seconds": 5}}}),
        "preStop",
    ),
    (
        "scrape port",
        _set("Deployment", "spec template metadata annotations prometheus.io/port", "9200"),
        "prometheus.io/port",
    ),
    ("loopback stats", _set_arg("--stats", "9100"), "loopback"),
    ("root", _set("Deployment", "spec template spec securityContext runAsUser", 0), "root"),
    (
        "maybe root",
        _set("Deployment", "spec template spec securityContext runAsNonRoot", False),
        "runAsNonRoot",
    ),
    ("service port", _set("Service", "spec ports 0 targetPort", 9100), "Service sends"),
    ("service selector", _set("Service", "spec selector", {"app": "other"}), "Service selects"),
    (
        "scaled target",
        _set("HorizontalPodAutoscaler", "spec scaleTargetRef name", "other"),
        "scales",
    ),
    (
        "metric name",
        _set("HorizontalPodAutoscaler", "spec metrics 0 pods metric name", "corral_busy"),
        "no adapter rule",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [case[1:] for case in BROKEN_DEPLOYMENT],
    ids=[case[0] for case in BROKEN_DEPLOYMENT],
)
def test_a_broken_deployment_is_caught(change: Callable[[Documents], None], expected: str) -> None:
    documents = copy.deepcopy(read_manifests())
    change(documents)
    faults = deployment_faults(documents, read_dockerfile())
    assert any(expected in fault for fault in faults), faults
