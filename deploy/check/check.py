#!/usr/bin/env python3
"""Offline checks of ClawLink's deployment files (deploy/docker, deploy/compose, deploy/k8s,
deploy/grafana, deploy/prometheus). Run through deploy/check/run, which provides a venv
with pyyaml, jsonschema and kubernetes-validate (requirements.txt).

What is checked:
  * Kubernetes: every manifest in deploy/k8s against the Kubernetes JSON schemas shipped by
    the kubernetes-validate package (strict: unknown fields fail), for the oldest and the
    newest Kubernetes version we support; KEDA objects (no schema ships) field by field;
    then the references between objects (selectors, ports, ConfigMap/Secret names, HPA and
    ScaledObject targets, Ingress backends), probes, resources, non-root security
    contexts, and every CLAWLINK_ variable against the ones the binaries read.
  * Compose: the file parses; every service has an image or a build (whose Dockerfile
    target exists), its environment, and a healthcheck (one-shot jobs: restart "no");
    dependencies, mounts, published ports and Prometheus' scrape targets line up.
  * Dockerfile: three final stages, non-root, the builder and runtime the deployment
    expects, what each image copies; the probe program compiles when rustc is present.
  * Metrics: every metric that deploy/grafana/*.json and the alert rules use is in
    deploy/grafana/METRICS.txt (the contract with the binaries' /metrics), with labels
    and label values of that contract; RabbitMQ's own metrics only in
    deploy/prometheus/rabbitmq-alerts.yml, against RABBITMQ_METRICS.txt.
  * When promtool is on PATH (not required): rule files, dashboard queries and the alert
    unit tests in deploy/grafana/alerts_test.yml; otherwise those checks are skipped.

Prints one line per check and closes with `deploy-check: N passed, M failed[, K skipped]`;
exits 1 when any check failed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
GRAFANA = DEPLOY / "grafana"
PROMETHEUS = DEPLOY / "prometheus"

# Kubernetes versions the manifests must validate against: the oldest we support (the
# preStop `sleep` action is beta and on by default from 1.30) and the newest the
# installed kubernetes-validate knows.
K8S_MIN_VERSION = "1.30.0"

# The metric contract (labels and enumerated values) the binaries expose
# (common/src/metrics.rs); METRICS.txt holds the names, this adds what a query may select
# on, so a selector on a value the binaries never emit fails here. Target labels that Prometheus
# adds are always allowed. clawlink_job_runs_total names its job in `name`: a metric label
# called `job` would collide with the target label and be stored as `exported_job`.
METRIC_LABELS = {
    "clawlink_executions_total": {"integration", "tool", "outcome"},
    "clawlink_execution_duration_seconds": {"phase"},
    "clawlink_provider_responses_total": {"integration", "status_class"},
    "clawlink_retries_total": {"integration"},
    "clawlink_pacing_wait_seconds": set(),
    "clawlink_token_refreshes_total": {"outcome"},
    "clawlink_inflight_executions": set(),
    "clawlink_queue_messages": {"queue"},
    "clawlink_queue_consumers": {"queue"},
    "clawlink_queue_oldest_message_age_seconds": {"queue"},
    "clawlink_http_requests_total": {"service", "route", "status"},
    "clawlink_http_request_duration_seconds": {"service", "route"},
    "clawlink_job_runs_total": {"name", "outcome"},
}
LABEL_VALUES = {
    ("clawlink_executions_total", "outcome"): {"succeeded", "failed"},
    ("clawlink_execution_duration_seconds", "phase"): {"queue_wait", "provider", "total"},
    ("clawlink_provider_responses_total", "status_class"): {"2xx", "3xx", "4xx", "429", "5xx", "network"},
    ("clawlink_token_refreshes_total", "outcome"): {"refreshed", "invalid_grant", "failed"},
    ("clawlink_job_runs_total", "outcome"): {"ok", "failed"},
    # The scheduled jobs of api/src/jobs.rs (JOBS).
    ("clawlink_job_runs_total", "name"): {
        "token_refresh_sweep", "expire_sessions", "reap_stuck_executions", "purge_execution_bodies", "queue_stats",
        "outbox_relay", "expire_approvals",
    },
    ("clawlink_queue_messages", "queue"): {"interactive", "bulk", "delay", "dead"},
    ("clawlink_queue_consumers", "queue"): {"interactive", "bulk", "delay", "dead"},
    ("clawlink_queue_oldest_message_age_seconds", "queue"): {"interactive", "bulk"},
}
TARGET_LABELS = {"job", "instance", "pod", "namespace"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
}

# Variables the binaries will read that the source does not name yet (the worker's
# health/metrics listener is being added by another change).
PENDING_VARIABLES = {"CLAWLINK_WORKER_ADDR"}
PROVIDER_VARIABLE = re.compile(r"^CLAWLINK_PROVIDER_[A-Z0-9_]+_(BASE_URL|AUTHORIZE_URL|TOKEN_URL|CLIENT_ID|CLIENT_SECRET)$")

# What each binary listens on, inside a container.
LISTEN = {
    "api": ("CLAWLINK_API_ADDR", 8080),
    "web": ("CLAWLINK_WEB_ADDR", 8081),
    "worker": ("CLAWLINK_WORKER_ADDR", 8082),
}
REQUIRED_ENV = {
    "api": {"CLAWLINK_DATABASE_URL", "CLAWLINK_CREDENTIAL_KEYS", "CLAWLINK_AMQP_URL", "CLAWLINK_REDIS_URL"},
    "web": {"CLAWLINK_DATABASE_URL", "CLAWLINK_CREDENTIAL_KEYS"},
    "worker": {"CLAWLINK_DATABASE_URL", "CLAWLINK_CREDENTIAL_KEYS", "CLAWLINK_AMQP_URL", "CLAWLINK_REDIS_URL"},
    "migrate": {"CLAWLINK_DATABASE_URL"},
}


# --------------------------------------------------------------------------------------
class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, name: str, fn, *args) -> None:
        try:
            result = fn(*args)
        except CheckFailed as err:
            self.failed += 1
            print(f"FAIL {name}: {err}")
            return
        except Skip as why:
            self.skipped += 1
            print(f"skip {name}: {why}")
            return
        except Exception as err:  # a bug in a check, or a file that does not parse
            self.failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}")
            if os.environ.get("DEPLOY_CHECK_DEBUG"):
                traceback.print_exc()
            return
        self.passed += 1
        print(f"ok   {name}" + (f" ({result})" if isinstance(result, str) and result else ""))


class CheckFailed(Exception):
    pass


class Skip(Exception):
    pass


def need(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def errors_to_fail(errors: list[str]) -> None:
    if errors:
        raise CheckFailed("; ".join(errors[:12]) + (f" (+{len(errors) - 12} more)" if len(errors) > 12 else ""))


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------------
# What the binaries read.
def known_variables() -> set[str]:
    names = set(PENDING_VARIABLES)
    for crate in ("api", "web", "worker", "common"):
        for path in (ROOT / crate).rglob("*.rs"):
            names.update(re.findall(r'"(CLAWLINK_[A-Z0-9_]*[A-Z0-9])"', path.read_text(encoding="utf-8")))
    readme = ROOT / "README.md"
    if readme.exists():
        for name in re.findall(r"`(CLAWLINK_[A-Z0-9_]+)`", readme.read_text(encoding="utf-8")):
            names.add(name)
    # `CLAWLINK_PROVIDER_<ID>_…` are patterns, and `CLAWLINK_PROVIDER_` a prefix.
    return {n for n in names if not n.endswith("_")}


def unknown_variables(names, known) -> list[str]:
    return sorted(
        n for n in names if n.startswith("CLAWLINK_") and n not in known and not PROVIDER_VARIABLE.match(n)
    )


# --------------------------------------------------------------------------------------
# PromQL, just enough to find metric names, selectors and grouping labels.
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def grafana_to_promql(expr: str) -> str:
    """Grafana variables replaced by values Prometheus would accept."""
    expr = expr.replace("$__rate_interval", "5m").replace("${__rate_interval}", "5m")
    expr = expr.replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?", ".*", expr)


def promql_metric_names(expr: str) -> set[str]:
    s = STRING.sub('""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = GROUPING.sub(" ", s)
    s = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " ", s)
    names = set()
    for m in IDENT.finditer(s):
        token = m.group(0)
        before = s[m.start() - 1] if m.start() > 0 else " "
        after = s[m.end():].lstrip()
        if before.isdigit() or before == ".":
            continue  # 5m, 1e-9
        if after.startswith("("):
            continue  # a function or an aggregation
        if token.lower() in PROMQL_KEYWORDS:
            continue
        names.add(token)
    return names


def promql_selectors(expr: str):
    """(metric, [(label, op, value)]) for every `metric{…}` in expr."""
    for m in SELECTOR.finditer(expr):
        yield m.group(1), MATCHER.findall(m.group(2))


def promql_grouping_labels(expr: str) -> set[str]:
    labels = set()
    for _, inside in GROUPING.findall(STRING.sub('""', expr)):
        labels.update(x.strip() for x in inside.split(",") if x.strip())
    return labels


def call_arguments(expr: str, function: str) -> list[str]:
    """The argument text of every call of `function` in expr."""
    s = STRING.sub('""', expr)
    found = []
    for m in re.finditer(rf"\b{function}\s*\(", s):
        depth, i = 1, m.end()
        while i < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[i], 0)
            i += 1
        found.append(s[m.end():i - 1])
    return found


AGGREGATION = re.compile(
    r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile)\s*"
    r"(?:(by|without)\s*\(([^)]*)\))?\s*\(")


def quantile_keeps_le(arg: str) -> bool:
    """Whether every aggregation in a histogram_quantile argument keeps the `le` label."""
    for m in AGGREGATION.finditer(arg):
        kind, labels = m.group(2), [x.strip() for x in (m.group(3) or "").split(",")]
        if kind is None:
            # `sum by (le) (…)` may also be written `sum(…) by (le)`.
            rest = arg[m.end():]
            depth, i = 1, 0
            while i < len(rest) and depth:
                depth += {"(": 1, ")": -1}.get(rest[i], 0)
                i += 1
            tail = re.match(r"\s*(by|without)\s*\(([^)]*)\)", rest[i:])
            if not tail:
                return False
            kind, labels = tail.group(1), [x.strip() for x in tail.group(2).split(",")]
        if (kind == "by") != ("le" in labels):
            return False
    return True


def balanced(expr: str) -> bool:
    s = STRING.sub('""', expr)
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and s.count('"') % 2 == 0


def load_metric_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_metric_list(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    names = [x for x in lines if x.strip()]
    errors = []
    for i, line in enumerate(lines, 1):
        if line and not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line):
            errors.append(f"line {i}: {line!r} is not one metric name")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        errors.append(f"listed twice: {', '.join(dups)}")
    errors_to_fail(errors)
    return f"{len(names)} metrics"


def resolve_metric(name: str, listed: set[str]):
    """(base name, suffix) if `name` is a listed metric or a histogram series of one."""
    if name in listed:
        return name, ""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and base in listed and is_histogram(base):
            return base, suffix
    return None, None


# Gauges in METRICS.txt whose name ends in _seconds (an age, not a duration histogram).
SECONDS_GAUGES = {"clawlink_queue_oldest_message_age_seconds"}


def is_histogram(base: str) -> bool:
    # Prometheus naming: ClawLink's histograms are durations, named *_seconds; the only
    # other *_seconds metrics are the gauges in SECONDS_GAUGES.
    return base.endswith("_seconds") and base not in SECONDS_GAUGES


def check_expressions(where: str, exprs: list[str], listed: set[str], contract: bool, extra_ok=frozenset(), used=None):
    """Every metric in exprs is listed; selectors use the contract's labels and values.
    Adds the listed metrics the expressions use to `used`."""
    errors = []
    used = set() if used is None else used
    for expr in exprs:
        if not balanced(expr):
            errors.append(f"unbalanced brackets or quotes in {expr!r}")
            continue
        names = promql_metric_names(expr)
        expr_labels = set(TARGET_LABELS)
        for name in sorted(names):
            if name in extra_ok:
                continue
            base, suffix = resolve_metric(name, listed)
            if base is None:
                errors.append(f"{name} is not in {'METRICS.txt' if contract else 'the metric list'}")
                continue
            if contract and is_histogram(base) and not suffix:
                errors.append(f"{name} is a histogram: use {name}_bucket/_sum/_count")
            used.add(base)
            expr_labels |= METRIC_LABELS.get(base, set()) if contract else set()
            if suffix == "_bucket":
                expr_labels.add("le")
        if contract:
            for name, matchers in promql_selectors(expr):
                base, suffix = resolve_metric(name, listed)
                if base is None:
                    continue
                allowed = METRIC_LABELS.get(base, set()) | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
                for label, op, value in matchers:
                    if label == "exported_job":
                        errors.append(f"{name}{{exported_job…}}: no ClawLink metric has a job label; the job's name is `name`")
                    elif label not in allowed:
                        errors.append(f"{name} has no label {label!r} (has {', '.join(sorted(allowed))})")
                        continue
                    values = LABEL_VALUES.get((base, label))
                    if values is None or "$" in value:
                        continue
                    alternatives = value.split("|") if op in ("=~", "!~") else [value]
                    for alt in alternatives:
                        if re.fullmatch(r"[A-Za-z0-9_]+", alt) and alt not in values:
                            errors.append(f"{name}{{{label}{op}\"{value}\"}}: {alt!r} is not one of {sorted(values)}")
            for label in promql_grouping_labels(expr):
                if label not in expr_labels and label != "le":
                    errors.append(f"grouping by {label!r}, which no metric in {expr!r} has")
            for arg in call_arguments(expr, "histogram_quantile"):
                if not quantile_keeps_le(arg):
                    errors.append(f"histogram_quantile over an aggregation that drops `le`: {expr!r}")
    errors_to_fail([f"{where}: {e}" for e in errors])
    return used


# --------------------------------------------------------------------------------------
# Kubernetes
def load_k8s():
    docs = []
    for path in sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml")):
        if path.name.startswith("kustomization"):
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path, doc))
    return docs


def kname(doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_schema(doc, version: str) -> str:
    import kubernetes_validate

    try:
        used = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path) or "(root)"
        raise CheckFailed(f"{path}: {err.message}")
    except kubernetes_validate.SchemaNotFoundError as err:
        raise CheckFailed(err.message)
    return f"schema {used}"


def k8s_index(docs):
    index = {}
    for path, doc in docs:
        index.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = (path, doc)
    return index


def pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def workload_component(doc) -> str | None:
    labels = doc["spec"]["template"]["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component")


def check_keda(docs, index) -> str:
    errors = []
    scaled = [(p, d) for p, d in docs if d.get("apiVersion", "").startswith("keda.sh/") and d["kind"] == "ScaledObject"]
    auths = {d["metadata"]["name"]: d for p, d in docs if d.get("kind") == "TriggerAuthentication"}
    secrets = index.get("Secret", {})
    config = index.get("ConfigMap", {}).get("clawlink-config", (None, {"data": {}}))[1].get("data", {})
    namespace = config.get("CLAWLINK_NAMESPACE", "clawlink")
    need(scaled, "no KEDA ScaledObject in deploy/k8s")
    for path, so in scaled:
        name = so["metadata"].get("name")
        spec = so.get("spec") or {}
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            errors.append(f"{name}: apiVersion {so.get('apiVersion')!r}, expected keda.sh/v1alpha1")
        target = (spec.get("scaleTargetRef") or {}).get("name")
        if not target:
            errors.append(f"{name}: spec.scaleTargetRef.name is required")
        elif target not in index.get("Deployment", {}):
            errors.append(f"{name}: scaleTargetRef {target!r} is no Deployment here")
        else:
            dep = index["Deployment"][target][1]
            if "replicas" in dep["spec"]:
                errors.append(f"Deployment {target} sets replicas although KEDA owns it")
            if workload_component(dep) != "worker":
                errors.append(f"{name}: scales {target}, which is not the worker")
        for field in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
            if field in spec and not (isinstance(spec[field], int) and spec[field] >= 0):
                errors.append(f"{name}: {field} must be a non-negative integer")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if lo < 1:
            errors.append(f"{name}: minReplicaCount {lo}: a sync call must never wait for a cold start")
        if lo > hi:
            errors.append(f"{name}: minReplicaCount {lo} > maxReplicaCount {hi}")
        fallback = spec.get("fallback")
        if fallback is not None:
            if not isinstance(fallback.get("failureThreshold"), int) or not isinstance(fallback.get("replicas"), int):
                errors.append(f"{name}: fallback needs integer failureThreshold and replicas")
            elif not lo <= fallback["replicas"] <= hi:
                errors.append(f"{name}: fallback replicas outside [{lo}, {hi}]")
        hpa_cfg = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
        if "behavior" in hpa_cfg:
            # The same schema as an HPA's spec.behavior: validate it through one.
            probe = {
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "probe"},
                "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 1,
                         "behavior": hpa_cfg["behavior"]},
            }
            try:
                validate_schema(probe, K8S_MIN_VERSION)
            except CheckFailed as err:
                errors.append(f"{name}: advanced.horizontalPodAutoscalerConfig.behavior: {err}")
        triggers = spec.get("triggers") or []
        if not triggers:
            errors.append(f"{name}: spec.triggers is required")
        queues = set()
        for i, trig in enumerate(triggers):
            where = f"{name}.triggers[{i}]"
            if not trig.get("type"):
                errors.append(f"{where}: type is required")
                continue
            meta = trig.get("metadata") or {}
            if any(not isinstance(v, str) for v in meta.values()):
                errors.append(f"{where}: metadata values must be strings")
            if trig["type"] != "rabbitmq":
                continue
            queue = meta.get("queueName")
            if not queue:
                errors.append(f"{where}: metadata.queueName is required")
            queues.add(queue)
            protocol = meta.get("protocol", "auto")
            if protocol not in ("amqp", "http", "auto"):
                errors.append(f"{where}: protocol {protocol!r}")
            mode = meta.get("mode")
            if mode not in ("QueueLength", "MessageRate"):
                errors.append(f"{where}: mode must be QueueLength or MessageRate")
            if mode == "MessageRate" and protocol != "http":
                errors.append(f"{where}: MessageRate needs protocol http")
            if meta.get("excludeUnacknowledged") == "true" and protocol != "http":
                errors.append(f"{where}: excludeUnacknowledged needs protocol http")
            try:
                if float(meta.get("value", "")) <= 0:
                    raise ValueError
            except ValueError:
                errors.append(f"{where}: value must be a positive number (as a string)")
            has_host = any(k in meta for k in ("host", "hostFromEnv"))
            ref = (trig.get("authenticationRef") or {}).get("name")
            if not has_host and not ref:
                errors.append(f"{where}: needs host, hostFromEnv or authenticationRef")
            if ref:
                auth = auths.get(ref)
                if auth is None:
                    errors.append(f"{where}: TriggerAuthentication {ref!r} not found")
                else:
                    params = {t.get("parameter") for t in (auth.get("spec") or {}).get("secretTargetRef") or []}
                    if "host" not in params and not has_host:
                        errors.append(f"{where}: {ref} gives no host parameter")
        for lane in ("interactive", "bulk"):
            if f"{namespace}.{lane}" not in queues:
                errors.append(f"{name}: no rabbitmq trigger on queue {namespace}.{lane} (CLAWLINK_NAMESPACE={namespace})")
    for name, auth in auths.items():
        if auth.get("apiVersion") != "keda.sh/v1alpha1":
            errors.append(f"TriggerAuthentication {name}: apiVersion must be keda.sh/v1alpha1")
        refs = (auth.get("spec") or {}).get("secretTargetRef") or []
        if not refs:
            errors.append(f"TriggerAuthentication {name}: spec.secretTargetRef is empty")
        for ref in refs:
            for field in ("parameter", "name", "key"):
                if not ref.get(field):
                    errors.append(f"TriggerAuthentication {name}: secretTargetRef needs {field}")
            secret = secrets.get(ref.get("name"))
            if secret is None:
                errors.append(f"TriggerAuthentication {name}: Secret {ref.get('name')!r} not found")
            elif ref.get("key") not in (secret[1].get("stringData") or {}) | (secret[1].get("data") or {}):
                errors.append(f"TriggerAuthentication {name}: Secret {ref.get('name')} has no key {ref.get('key')!r}")
    errors_to_fail(errors)
    return f"{len(scaled)} ScaledObject, {len(auths)} TriggerAuthentication"


def check_k8s_references(docs, index) -> str:
    errors = []
    deployments = index.get("Deployment", {})
    services = index.get("Service", {})
    configmaps = index.get("ConfigMap", {})
    secrets = index.get("Secret", {})
    for path, doc in docs:
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != "clawlink":
            errors.append(f"{kname(doc)} ({path.name}): metadata.namespace must be clawlink")

    def pods_matching(selector):
        return [n for n, (_, d) in deployments.items()
                if selector and all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]

    for name, (_, dep) in deployments.items():
        sel = dep["spec"]["selector"].get("matchLabels", {})
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            errors.append(f"Deployment {name}: selector does not match its pod labels")
        spec = pod_spec(dep)
        if spec.get("serviceAccountName") and spec["serviceAccountName"] not in index.get("ServiceAccount", {}):
            errors.append(f"Deployment {name}: ServiceAccount {spec['serviceAccountName']!r} not found")
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            for src in c.get("envFrom", []):
                if "configMapRef" in src and src["configMapRef"]["name"] not in configmaps:
                    errors.append(f"{name}/{c['name']}: ConfigMap {src['configMapRef']['name']!r} not found")
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    errors.append(f"{name}/{c['name']}: Secret {src['secretRef']['name']!r} not found (secret.example.yaml)")
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {})
                if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] not in secrets:
                    errors.append(f"{name}/{c['name']}: Secret {ref['secretKeyRef']['name']!r} not found")
    for name, (_, svc) in services.items():
        matched = pods_matching(svc["spec"].get("selector", {}))
        if len(matched) != 1:
            errors.append(f"Service {name}: selector matches {len(matched)} Deployments, expected 1")
            continue
        dep = deployments[matched[0]][1]
        port_names = {p.get("name") for c in pod_spec(dep)["containers"] for p in c.get("ports", [])}
        port_numbers = {p["containerPort"] for c in pod_spec(dep)["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if (isinstance(target, str) and target not in port_names) or (isinstance(target, int) and target not in port_numbers):
                errors.append(f"Service {name}: targetPort {target!r} is no port of {matched[0]}")
    for name, (_, pdb) in index.get("PodDisruptionBudget", {}).items():
        if len(pods_matching(pdb["spec"]["selector"].get("matchLabels", {}))) != 1:
            errors.append(f"PodDisruptionBudget {name}: selector must match exactly one Deployment")
    for name, (_, hpa) in index.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            errors.append(f"HPA {name}: target {target!r} not found")
        elif "replicas" in deployments[target][1]["spec"]:
            errors.append(f"Deployment {target} sets replicas although HPA {name} owns it")
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            errors.append(f"HPA {name}: minReplicas > maxReplicas")
    for comp in ("api", "web", "worker"):
        if not any(workload_component(d) == comp for _, d in deployments.values()):
            errors.append(f"no Deployment for the {comp}")
        elif comp != "worker" and not any(pods_matching(s["spec"].get("selector")) and workload_component(deployments[pods_matching(s["spec"]["selector"])[0]][1]) == comp for _, s in services.values()):
            errors.append(f"no Service in front of the {comp}")
        if not any(pods_matching(p["spec"]["selector"].get("matchLabels")) and workload_component(deployments[pods_matching(p["spec"]["selector"]["matchLabels"])[0]][1]) == comp for _, p in index.get("PodDisruptionBudget", {}).values()):
            errors.append(f"no PodDisruptionBudget for the {comp}")
    api_hpa = [h for _, h in index.get("HorizontalPodAutoscaler", {}).values()
               if h["spec"]["scaleTargetRef"]["name"] in deployments
               and workload_component(deployments[h["spec"]["scaleTargetRef"]["name"]][1]) == "api"]
    if not api_hpa:
        errors.append("no HorizontalPodAutoscaler for the api")
    errors_to_fail(errors)
    return f"{len(deployments)} Deployments, {len(services)} Services"


def check_ingress(index) -> str:
    errors = []
    ingresses = index.get("Ingress", {})
    need(ingresses, "no Ingress")
    services = index.get("Service", {})
    deployments = index.get("Deployment", {})
    routes = {}
    for name, (_, ing) in ingresses.items():
        for rule in ing["spec"].get("rules", []):
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]["name"]
                port = p["backend"]["service"]["port"]
                if svc not in services:
                    errors.append(f"Ingress {name}: {p['path']} → unknown Service {svc!r}")
                    continue
                sports = services[svc][1]["spec"]["ports"]
                if ("name" in port and port["name"] not in {x.get("name") for x in sports}) or (
                        "number" in port and port["number"] not in {x["port"] for x in sports}):
                    errors.append(f"Ingress {name}: {p['path']} → {svc} has no port {port}")
                selector = services[svc][1]["spec"]["selector"]
                comp = next((workload_component(d) for _, d in deployments.values()
                             if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())), None)
                routes[(p["path"], p["pathType"])] = comp
    if routes.get(("/api", "Prefix")) != "api":
        errors.append("the agent plane (/api, Prefix) must go to the api")
    if routes.get(("/", "Prefix")) != "web":
        errors.append("everything else (/, Prefix) must go to web")
    errors_to_fail(errors)
    return ", ".join(f"{p} → {c}" for (p, _), c in sorted(routes.items()))


def check_k8s_containers(index, known) -> str:
    errors = []
    config_env = {}
    for _, (_, cm) in index.get("ConfigMap", {}).items():
        config_env.update(cm.get("data") or {})
    secret_env = {}
    for _, (_, sec) in index.get("Secret", {}).items():
        secret_env.update(sec.get("stringData") or {})
        secret_env.update(sec.get("data") or {})
    bad = unknown_variables(list(config_env) + list(secret_env), known)
    if bad:
        errors.append(f"ConfigMap/Secret set variables no binary reads: {', '.join(bad)}")
    config = index.get("ConfigMap", {}).get("clawlink-config", (None, {"data": {}}))[1]["data"]
    for name, (_, dep) in index.get("Deployment", {}).items():
        comp = workload_component(dep)
        spec = pod_spec(dep)
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) == 0:
            errors.append(f"{name}: pod must run as a non-root uid (runAsNonRoot, runAsUser)")
        if spec.get("automountServiceAccountToken") is not False:
            errors.append(f"{name}: automountServiceAccountToken should be false")
        annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            where = f"{name}/{c['name']}"
            is_init = c in spec.get("initContainers", [])
            image = c.get("image", "")
            expect = "clawlink-api" if is_init else f"clawlink-{comp}"
            if not re.search(rf"/{expect}:[^:]+$", image):
                errors.append(f"{where}: image {image!r} should be …/{expect}:<tag>")
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})):
                errors.append(f"{where}: resources.requests needs cpu and memory")
            if "memory" not in res.get("limits", {}):
                errors.append(f"{where}: resources.limits.memory is missing")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                    or "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
                errors.append(f"{where}: securityContext must forbid privilege escalation, drop ALL, read-only root")
            env_names = [e["name"] for e in c.get("env", [])]
            bad = unknown_variables(env_names, known)
            if bad:
                errors.append(f"{where}: unknown variables {', '.join(bad)}")
            all_env = set(env_names)
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    all_env |= set((index["ConfigMap"].get(src["configMapRef"]["name"], (None, {}))[1].get("data") or {}))
                if "secretRef" in src:
                    sec = index["Secret"].get(src["secretRef"]["name"], (None, {}))[1]
                    all_env |= set(sec.get("stringData") or {}) | set(sec.get("data") or {})
            role = "migrate" if is_init else comp
            missing = REQUIRED_ENV.get(role, set()) - all_env
            if missing:
                errors.append(f"{where}: missing {', '.join(sorted(missing))}")
            if is_init:
                if c.get("args") != ["migrate"]:
                    errors.append(f"{where}: the init container should run `migrate`")
                continue
            var, port = LISTEN[comp]
            addr = next((e.get("value") for e in c.get("env", []) if e["name"] == var), None)
            if addr != f"0.0.0.0:{port}":
                errors.append(f"{where}: {var} should be 0.0.0.0:{port} (default listens on loopback), is {addr!r}")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if port not in ports.values():
                errors.append(f"{where}: containerPort {port} not declared")
            if annotations.get("prometheus.io/port") != str(port):
                errors.append(f"{name}: prometheus.io/port annotation should be {port}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if not pr:
                    errors.append(f"{where}: no {probe}")
                    continue
                get = pr.get("httpGet") or {}
                p = get.get("port")
                if (isinstance(p, str) and ports.get(p) != port) or (isinstance(p, int) and p != port):
                    errors.append(f"{where}: {probe} port {p!r} is not the listen port {port}")
                want = "/readyz" if probe == "readinessProbe" else "/healthz"
                if get.get("path") != want:
                    errors.append(f"{where}: {probe} should GET {want}")
            if comp == "worker":
                grace_ms = int(config.get("CLAWLINK_WORKER_SHUTDOWN_GRACE_MS", "30000"))
                if spec.get("terminationGracePeriodSeconds", 30) * 1000 <= grace_ms:
                    errors.append(f"{name}: terminationGracePeriodSeconds must exceed CLAWLINK_WORKER_SHUTDOWN_GRACE_MS")
            if comp == "api":
                wait_ms = int(config.get("CLAWLINK_SYNC_WAIT_MS", "25000"))
                if spec.get("terminationGracePeriodSeconds", 30) * 1000 <= wait_ms:
                    errors.append(f"{name}: terminationGracePeriodSeconds must exceed CLAWLINK_SYNC_WAIT_MS")
    errors_to_fail(errors)
    return ""


def check_kustomization(docs) -> str:
    path = K8S / "kustomization.yaml"
    kz = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = []
    listed = kz.get("resources", [])
    for r in listed:
        if not (K8S / r).exists():
            errors.append(f"resource {r} does not exist")
    files = sorted({p.name for p, _ in docs})
    for f in files:
        if f not in listed and not f.endswith(".example.yaml"):
            errors.append(f"{f} is not in resources")
        if f in listed and f.endswith(".example.yaml"):
            errors.append(f"{f} is an example and must not be applied")
    images = {i["name"] for i in kz.get("images", [])}
    for _, doc in docs:
        if doc["kind"] == "Deployment":
            for c in pod_spec(doc).get("initContainers", []) + pod_spec(doc)["containers"]:
                if c["image"].rsplit(":", 1)[0] not in images:
                    errors.append(f"image {c['image']} has no entry in images:")
    errors_to_fail(errors)
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
        need(out.returncode == 0, f"kubectl kustomize: {out.stderr.strip()[:300]}")
        return f"{len(listed)} resources; kubectl kustomize builds"
    return f"{len(listed)} resources"


# --------------------------------------------------------------------------------------
# Dockerfile
def parse_dockerfile(text: str):
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#") and buf:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        lines.append((buf + line).strip())
        buf = ""
    args, stages, current = {}, {}, None
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and current is None:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}", lambda x: args.get(x.group(1), x.group(0)), m.group(1))
            current = m.group(2) or f"stage{len(stages)}"
            stages[current] = {"from": image, "lines": []}
        elif current:
            stages[current]["lines"].append((word, rest))
    return args, stages


def stage_chain(stages, name):
    chain = []
    while name in stages:
        chain.append(name)
        name = stages[name]["from"]
    return chain


def stage_value(stages, name, word):
    """Instructions `word` of a stage and of the stages it builds on, nearest first."""
    return [rest for s in stage_chain(stages, name) for w, rest in reversed(stages[s]["lines"]) if w == word]


def stage_env(stages, name) -> dict:
    env = {}
    for s in reversed(stage_chain(stages, name)):
        for w, rest in stages[s]["lines"]:
            if w == "ENV":
                for k, v in re.findall(r"(\w+)=(\S+)", rest):
                    env[k] = v
    return env


def check_dockerfile() -> str:
    args, stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    errors = []
    for target in ("api", "web", "worker"):
        if target not in stages:
            errors.append(f"no `{target}` stage")
    builder = [n for n, s in stages.items() if s["from"].startswith("rust:")]
    if not builder:
        errors.append("no stage FROM rust:…")
    else:
        b = builder[0]
        if stages[b]["from"] != "rust:1.95-slim-bookworm":
            errors.append(f"builder is {stages[b]['from']}, expected rust:1.95-slim-bookworm")
        runs = " ".join(r for w, r in stages[b]["lines"] if w == "RUN")
        if "cargo build --release --locked" not in runs:
            errors.append("builder must run cargo build --release --locked")
        if stage_env(stages, b).get("SQLX_OFFLINE") != "true":
            errors.append("builder must set SQLX_OFFLINE=true")
        for binary in ("clawlink-api", "clawlink-web", "clawlink-worker", "clawlink-healthcheck"):
            if f"/out/{binary}" not in runs and not re.search(rf"\b{binary}\b.*\s/out/", runs):
                errors.append(f"builder does not leave {binary} in /out")
    for target, (var, port) in LISTEN.items():
        if target not in stages:
            continue
        chain = stage_chain(stages, target)
        base = stages[chain[-1]]["from"]
        users = stage_value(stages, target, "USER")
        nonroot_base = "distroless" in base and base.endswith(":nonroot")
        if users and users[0].split(":")[0] in ("root", "0"):
            errors.append(f"{target}: USER is root")
        if not users and not nonroot_base:
            errors.append(f"{target}: no USER and the base {base} is not a nonroot image")
        if not (nonroot_base or base.startswith("debian:")):
            errors.append(f"{target}: runtime {base} is neither distroless/cc nonroot nor debian-slim")
        copies = stage_value(stages, target, "COPY")
        binary = f"/usr/local/bin/clawlink-{target}"
        if not any(c.startswith("--from=") and c.endswith(binary) for c in copies):
            errors.append(f"{target}: does not copy {binary} from the builder")
        if not any(re.match(r"catalog/?\s", c) for c in copies):
            errors.append(f"{target}: does not copy catalog/")
        others = [t for t in LISTEN if t != target]
        if any(c.endswith(f"/clawlink-{o}") for c in copies for o in others):
            errors.append(f"{target}: copies another binary")
        entry = stage_value(stages, target, "ENTRYPOINT")
        if not entry or json.loads(entry[0])[0] != binary:
            errors.append(f"{target}: ENTRYPOINT should be [\"{binary}\"]")
        env = stage_env(stages, target)
        if env.get(var) != f"0.0.0.0:{port}":
            errors.append(f"{target}: ENV {var}=0.0.0.0:{port} missing")
        if env.get("CLAWLINK_CATALOG_DIR") != "/app/catalog":
            errors.append(f"{target}: ENV CLAWLINK_CATALOG_DIR=/app/catalog missing")
        if str(port) not in " ".join(stage_value(stages, target, "EXPOSE")):
            errors.append(f"{target}: EXPOSE {port} missing")
        hc = stage_value(stages, target, "HEALTHCHECK")
        if not hc or f"127.0.0.1:{port}/" not in hc[0]:
            errors.append(f"{target}: HEALTHCHECK should probe port {port}")
    for required in ("catalog", "migrations", ".sqlx", "web/templates", "deploy/docker/healthcheck.rs", "Cargo.lock"):
        if not (ROOT / required).exists():
            errors.append(f"{required} is missing from the repository")
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    if not ignore.exists():
        errors.append(f"{rel(ignore)} missing (target/ would be sent as build context)")
    else:
        patterns = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")]
        for must in ("target", ".git", ".clawlink"):
            if must not in patterns:
                errors.append(f"{rel(ignore)} should exclude {must}")
        for keep in ("catalog/sandbox.toml", "migrations/x.sql", ".sqlx/q.json", "web/templates/base.html",
                     "deploy/docker/healthcheck.rs", "Cargo.toml", "Cargo.lock", "tests/emulator/Cargo.toml"):
            for pat in patterns:
                if fnmatch.fnmatch(keep, pat) or keep.startswith(pat.rstrip("/") + "/"):
                    errors.append(f"{rel(ignore)}: {pat!r} would drop {keep}")
    errors_to_fail(errors)
    return ", ".join(f"{t} FROM {stages[stage_chain(stages, t)[-1]]['from']}" for t in ("api", "web", "worker") if t in stages)


def check_probe_program() -> str:
    rustc = shutil.which("rustc")
    if not rustc:
        raise Skip("rustc not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe"
        build = subprocess.run([rustc, "--edition", "2021", "-C", "opt-level=s", "-o", str(out),
                                str(DEPLOY / "docker" / "healthcheck.rs")], capture_output=True, text=True, timeout=120)
        need(build.returncode == 0, f"rustc: {build.stderr.strip()[:400]}")
        usage = subprocess.run([str(out)], capture_output=True, text=True, timeout=10)
        need(usage.returncode == 2, f"without a URL it should exit 2, exited {usage.returncode}")
        closed = subprocess.run([str(out), "http://127.0.0.1:9/healthz"], capture_output=True, text=True, timeout=10)
        need(closed.returncode == 1, f"a closed port should exit 1, exited {closed.returncode}")
    return "compiles; exit codes 2 (usage) and 1 (refused)"


# --------------------------------------------------------------------------------------
# Compose
def compose_component(svc) -> str | None:
    build = svc.get("build")
    if isinstance(build, dict) and build.get("target") in LISTEN:
        target = build["target"]
    else:
        m = re.search(r"clawlink-(api|web|worker)\b", str(svc.get("image", "")))
        target = m.group(1) if m else None
    if target == "api" and (svc.get("command") or ["serve"])[0] == "migrate":
        return "migrate"
    return target


def compose_env(svc) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def check_compose_parse():
    text = COMPOSE.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    need(isinstance(doc, dict) and isinstance(doc.get("services"), dict), "no services: mapping")
    return doc


def check_compose_services(doc, known, dockerfile_stages) -> str:
    services = doc["services"]
    errors = []
    comps = {name: compose_component(s) for name, s in services.items()}
    for required in ("postgres", "rabbitmq", "redis", "prometheus", "grafana"):
        if required not in services:
            errors.append(f"no {required} service")
    for comp, count in (("api", 1), ("web", 1), ("worker", 2), ("migrate", 1)):
        have = sum(1 for c in comps.values() if c == comp)
        if have < count:
            errors.append(f"{have} {comp} service(s), expected at least {count}")
    one_shot = {dep for s in services.values() for dep, cond in (s.get("depends_on") or {}).items()
                if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully"}
    for name, svc in services.items():
        where = f"service {name}"
        if not svc.get("image") and not svc.get("build"):
            errors.append(f"{where}: neither image nor build")
        build = svc.get("build")
        if build:
            if isinstance(build, str):
                build = {"context": build}
            ctx = (COMPOSE.parent / build.get("context", ".")).resolve()
            if not ctx.is_dir():
                errors.append(f"{where}: build context {build.get('context')} does not exist")
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                errors.append(f"{where}: Dockerfile {rel(dockerfile)} does not exist")
            if build.get("target") and dockerfile.resolve() == DOCKERFILE.resolve() and build["target"] not in dockerfile_stages:
                errors.append(f"{where}: target {build['target']!r} is no stage of the Dockerfile")
        image = str(svc.get("image", ""))
        if image and not build and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            errors.append(f"{where}: image {image!r} should carry a fixed tag")
        if name in one_shot:
            if str(svc.get("restart", "no")) != "no":
                errors.append(f"{where}: a one-shot job must have restart: \"no\"")
        else:
            hc = svc.get("healthcheck") or {}
            test = hc.get("test")
            if not test or hc.get("disable"):
                errors.append(f"{where}: no healthcheck")
            elif isinstance(test, list) and test[0] not in ("CMD", "CMD-SHELL"):
                errors.append(f"{where}: healthcheck test must start with CMD or CMD-SHELL")
            if not svc.get("restart"):
                errors.append(f"{where}: no restart policy")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                errors.append(f"{where}: depends on unknown service {dep}")
            c = cond.get("condition") if isinstance(cond, dict) else "service_started"
            if c not in ("service_started", "service_healthy", "service_completed_successfully"):
                errors.append(f"{where}: depends_on condition {c!r}")
            if c == "service_healthy" and not (services.get(dep, {}).get("healthcheck") or {}).get("test"):
                errors.append(f"{where}: waits for {dep} to be healthy, which has no healthcheck")
        for port in svc.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                errors.append(f"{where}: port {port} is published beyond loopback")
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":")[0]
            if src.startswith((".", "/")) and not (COMPOSE.parent / src).exists():
                errors.append(f"{where}: mount source {src} does not exist")
            elif not src.startswith((".", "/")) and src not in (doc.get("volumes") or {}):
                errors.append(f"{where}: named volume {src} is not declared")
        comp = comps[name]
        env = compose_env(svc)
        bad = unknown_variables(env, known)
        if bad:
            errors.append(f"{where}: variables no binary reads: {', '.join(bad)}")
        if comp:
            missing = REQUIRED_ENV[comp] - set(env)
            if missing:
                errors.append(f"{where}: missing {', '.join(sorted(missing))}")
        if comp in LISTEN:
            var, port = LISTEN[comp]
            stage_env_value = stage_env(dockerfile_stages, comp).get(var) if comp in dockerfile_stages else None
            addr = env.get(var, stage_env_value)
            if addr != f"0.0.0.0:{port}":
                errors.append(f"{where}: {var} is {addr!r}, expected 0.0.0.0:{port}")
            test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
            if f"127.0.0.1:{port}/" not in test or "clawlink-healthcheck" not in test:
                errors.append(f"{where}: healthcheck should run clawlink-healthcheck on port {port}")
        if comp == "worker":
            if int(str(svc.get("stop_grace_period", "10s")).rstrip("s")) * 1000 <= int(env.get("CLAWLINK_WORKER_SHUTDOWN_GRACE_MS", "30000")):
                errors.append(f"{where}: stop_grace_period must exceed the worker's shutdown grace")
    worker_ids = [compose_env(s).get("CLAWLINK_WORKER_ID") for n, s in services.items() if comps[n] == "worker"]
    if len(set(worker_ids)) != len(worker_ids):
        errors.append(f"workers share a CLAWLINK_WORKER_ID: {worker_ids}")
    errors_to_fail(errors)
    return ", ".join(f"{n}" + (f"[{comps[n]}]" if comps[n] else "") for n in services)


def check_compose_variables() -> str:
    """Every ${VAR} without a default is required on purpose and documented in env.example."""
    text = COMPOSE.read_text(encoding="utf-8")
    example = (COMPOSE.parent / "env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.M))
    errors = []
    for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?([^}]*)\}", text):
        var, op = m.group(1), m.group(2)
        if not op:
            errors.append(f"${{{var}}} has no default and no error message")
        if var not in documented:
            errors.append(f"{var} is not in env.example")
    errors_to_fail(errors)
    return f"{len(documented)} documented in env.example"


def check_prometheus_config(compose_doc) -> str:
    cfg = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    services = compose_doc["services"]
    errors = []
    prom = services.get("prometheus", {})
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in prom.get("volumes") or [] if ":" in str(v)}
    for pattern in cfg.get("rule_files", []):
        if not any(fnmatch.fnmatch(t, pattern) for t in mounts):
            errors.append(f"rule_files {pattern} matches no file mounted into the prometheus service")
    for src_file in (GRAFANA / "alerts.yml", PROMETHEUS / "rabbitmq-alerts.yml"):
        if not any((COMPOSE.parent / s).resolve() == src_file.resolve() for s in mounts.values()):
            errors.append(f"{rel(src_file)} is not mounted into prometheus")
    jobs = set()
    for job in cfg.get("scrape_configs", []):
        jobs.add(job["job_name"])
        if job.get("honor_labels"):
            errors.append(f"job {job['job_name']}: honor_labels would let metric labels replace the target's")
        for sc in job.get("static_configs", []):
            for target in sc.get("targets", []):
                host, _, port = target.partition(":")
                if host in ("127.0.0.1", "localhost"):
                    continue
                if host not in services:
                    errors.append(f"job {job['job_name']}: target {target} is no compose service")
                    continue
                comp = compose_component(services[host])
                if comp in LISTEN and int(port) != LISTEN[comp][1]:
                    errors.append(f"job {job['job_name']}: {target} but {host} listens on {LISTEN[comp][1]}")
    for name, svc in services.items():
        comp = compose_component(svc)
        if comp in LISTEN and not any(
                f"{name}:{LISTEN[comp][1]}" in sc.get("targets", [])
                for job in cfg.get("scrape_configs", []) for sc in job.get("static_configs", [])):
            errors.append(f"service {name} ({comp}) is not scraped")
    for job in ("clawlink-api", "clawlink-web", "clawlink-worker"):
        if job not in jobs:
            errors.append(f"no scrape job {job} (ClawLinkTargetDown matches job=~\"clawlink.*\")")
    k8s_cfg = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text(encoding="utf-8"))
    if not k8s_cfg.get("scrape_configs"):
        errors.append("prometheus-k8s.yml has no scrape_configs")
    errors_to_fail(errors)
    return f"{len(jobs)} scrape jobs"


def check_grafana_provisioning(compose_doc) -> str:
    errors = []
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    sources = ds.get("datasources", [])
    if not any(s.get("type") == "prometheus" and s.get("url", "").startswith("http://prometheus:") for s in sources):
        errors.append("no prometheus data source pointing at the compose prometheus service")
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "clawlink.yml").read_text(encoding="utf-8"))
    paths = [p.get("options", {}).get("path") for p in dash.get("providers", [])]
    grafana = compose_doc["services"].get("grafana", {})
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana.get("volumes") or [] if ":" in str(v)}
    if mounts.get("/etc/grafana/provisioning") is None:
        errors.append("deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning")
    for json_file in sorted(GRAFANA.glob("*.json")):
        if not any(t.startswith(str(p).rstrip("/") + "/") and (COMPOSE.parent / s).resolve() == json_file.resolve()
                   for t, s in mounts.items() for p in paths if p):
            errors.append(f"{rel(json_file)} is not mounted under a provisioned dashboards path {paths}")
    errors_to_fail(errors)
    return f"{len(sources)} data source, dashboards from {paths}"


# --------------------------------------------------------------------------------------
# Grafana dashboard and alert rules
def dashboard_queries(dash) -> list[str]:
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", q or "")
            if m:
                exprs.append(f"sum by ({m.group(2)}) ({m.group(1)})")
            elif q:
                exprs.append(q)
    return [grafana_to_promql(e) for e in exprs]


def check_dashboard_structure(path: Path) -> str:
    dash = json.loads(path.read_text(encoding="utf-8"))
    errors = []
    if not dash.get("uid") or not dash.get("title"):
        errors.append("uid and title are required")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        errors.append("no `datasource` variable of type datasource")
    ids = []
    for p in dash.get("panels", []):
        ids.append(p.get("id"))
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            errors.append(f"panel {p.get('title')!r} is wider than the grid")
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            errors.append(f"panel {p.get('title')!r} does not use the $datasource variable")
        targets = p.get("targets") or []
        if not targets or not all(t.get("expr") for t in targets):
            errors.append(f"panel {p.get('title')!r} has a target without expr")
        if len({t.get('refId') for t in targets}) != len(targets):
            errors.append(f"panel {p.get('title')!r} repeats a refId")
        for t in targets:
            for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", t.get("expr", "")):
                if not var.startswith("__") and var not in variables:
                    errors.append(f"panel {p.get('title')!r} uses undefined variable ${var}")
    if len(set(ids)) != len(ids) or None in ids:
        errors.append("panel ids must be unique")
    errors_to_fail(errors)
    return f"{sum(1 for p in dash['panels'] if p.get('type') != 'row')} panels"


def rule_exprs(path: Path):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = [r for g in doc.get("groups", []) for r in g.get("rules", [])]
    return doc, rules


def check_rules_structure(path: Path) -> str:
    doc, rules = rule_exprs(path)
    errors = []
    names = set()
    for g in doc.get("groups", []):
        if not g.get("name"):
            errors.append("a group without a name")
    for r in rules:
        name = r.get("alert") or r.get("record")
        if not name or not r.get("expr"):
            errors.append(f"rule {name!r} needs alert/record and expr")
            continue
        if name in names:
            errors.append(f"alert {name} defined twice")
        names.add(name)
        if r.get("alert"):
            if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
                errors.append(f"{name}: labels.severity must be warning or critical")
            if not (r.get("annotations") or {}).get("summary"):
                errors.append(f"{name}: annotations.summary is missing")
            if "for" in r and not re.fullmatch(r"\d+[smhd]", str(r["for"])):
                errors.append(f"{name}: for {r['for']!r}")
    errors_to_fail(errors)
    return f"{len(rules)} rules"


def check_required_alerts() -> str:
    _, rules = rule_exprs(GRAFANA / "alerts.yml")
    exprs = {r.get("alert"): re.sub(r"\s+", " ", r.get("expr", "")) for r in rules}
    wanted = {
        "dead letters present": lambda e: "clawlink_queue_messages" in e and 'queue="dead"' in e,
        "oldest message age": lambda e: "clawlink_queue_oldest_message_age_seconds" in e,
        "queue growth": lambda e: "clawlink_queue_messages" in e and re.search(r"\b(deriv|rate|delta)\(", e),
        "p99 over target": lambda e: "histogram_quantile(0.99" in e,
        "provider 429 rate": lambda e: 'status_class="429"' in e,
        "429s answered to agents": lambda e: 'clawlink_http_requests_total{status="429"}' in e,
    }
    errors = [what for what, test in wanted.items() if not any(test(e) for e in exprs.values())]
    errors_to_fail([f"no alert for {w}" for w in errors])
    return ", ".join(wanted)


def check_metrics_coverage(used: set[str], listed: list[str]) -> str:
    unused = [m for m in listed if m not in used]
    errors_to_fail([f"{m} is in METRICS.txt but no panel or alert shows it" for m in unused])
    return f"all {len(listed)} shown"


# --------------------------------------------------------------------------------------
# promtool (optional)
def promtool_rules() -> str:
    tool = shutil.which("promtool")
    if not tool:
        raise Skip("promtool not on PATH")
    out = subprocess.run([tool, "check", "rules", str(GRAFANA / "alerts.yml"), str(PROMETHEUS / "rabbitmq-alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    need(out.returncode == 0, (out.stdout + out.stderr).strip()[-600:])
    return "promtool check rules"


def promtool_dashboard(exprs: list[str]) -> str:
    tool = shutil.which("promtool")
    if not tool:
        raise Skip("promtool not on PATH")
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        name = f.name
    try:
        out = subprocess.run([tool, "check", "rules", name], capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(name)
    need(out.returncode == 0, (out.stdout + out.stderr).strip()[-600:])
    return f"{len(exprs)} queries parse"


def promtool_tests() -> str:
    tool = shutil.which("promtool")
    if not tool:
        raise Skip("promtool not on PATH")
    test = GRAFANA / "alerts_test.yml"
    out = subprocess.run([tool, "test", "rules", test.name], capture_output=True, text=True, timeout=120, cwd=GRAFANA)
    need(out.returncode == 0, (out.stdout + out.stderr).strip()[-900:])
    return "promtool test rules alerts_test.yml"


# --------------------------------------------------------------------------------------
def main() -> int:
    import kubernetes_validate.utils as kvu

    checks = Checks()
    known = known_variables()
    k8s_max = kvu.latest_version()

    # Kubernetes ------------------------------------------------------------------------
    docs = load_k8s()
    for path, doc in docs:
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            continue
        for version in (K8S_MIN_VERSION, k8s_max):
            checks.run(f"k8s schema {version.rsplit('.', 1)[0]} {path.name} {kname(doc)}", validate_schema, doc, version)
    index = k8s_index(docs)
    checks.run("k8s KEDA ScaledObject and TriggerAuthentication (by hand: no schema)", check_keda, docs, index)
    checks.run("k8s references between objects", check_k8s_references, docs, index)
    checks.run("k8s Ingress: agent plane to api, the rest to web", check_ingress, index)
    checks.run("k8s containers: images, env, probes, resources, security", check_k8s_containers, index, known)
    checks.run("k8s kustomization", check_kustomization, docs)

    # Dockerfile ------------------------------------------------------------------------
    _, stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    checks.run("docker Dockerfile stages api, web, worker", check_dockerfile)
    checks.run("docker healthcheck.rs", check_probe_program)

    # Compose ---------------------------------------------------------------------------
    compose_doc = {}

    def parse():
        nonlocal compose_doc
        compose_doc = check_compose_parse()
        return f"{len(compose_doc['services'])} services"

    checks.run("compose parses", parse)
    if compose_doc:
        checks.run("compose services: image/build, env, healthcheck", check_compose_services, compose_doc, known, stages)
        checks.run("compose variables", check_compose_variables)
        checks.run("prometheus scrape config matches compose", check_prometheus_config, compose_doc)
        checks.run("grafana provisioning matches compose", check_grafana_provisioning, compose_doc)

    # Metrics ---------------------------------------------------------------------------
    metrics_file = GRAFANA / "METRICS.txt"
    checks.run("METRICS.txt format", check_metric_list, metrics_file)
    listed = load_metric_list(metrics_file)
    listed_set = set(listed)
    used: set[str] = set()
    dashboard_exprs: list[str] = []
    dashboards = sorted(GRAFANA.glob("*.json"))
    if not dashboards:
        checks.run("grafana dashboard present", lambda: need(False, "no deploy/grafana/*.json"))
    for path in dashboards:
        dash = json.loads(path.read_text(encoding="utf-8"))
        exprs = dashboard_queries(dash)
        dashboard_exprs += exprs
        checks.run(f"grafana {path.name} structure", check_dashboard_structure, path)

        def dash_metrics(exprs=exprs, path=path):
            check_expressions(path.name, exprs, listed_set, True, used=used)
            return f"{len(exprs)} queries"

        checks.run(f"grafana {path.name} metrics in METRICS.txt", dash_metrics)
    rule_files = sorted(GRAFANA.glob("*.yml")) + sorted(GRAFANA.glob("*.yaml"))
    rule_files = [p for p in rule_files if not p.name.endswith("_test.yml")]
    for path in rule_files:
        checks.run(f"alerts {path.name} structure", check_rules_structure, path)

        def rule_metrics(path=path):
            _, rules = rule_exprs(path)
            check_expressions(path.name, [r["expr"] for r in rules], listed_set, True, PROMETHEUS_SERIES, used=used)
            return f"{len(rules)} expressions"

        checks.run(f"alerts {path.name} metrics in METRICS.txt", rule_metrics)
    checks.run("alerts cover dead letters, oldest message age, queue growth, p99, 429s", check_required_alerts)
    checks.run("every METRICS.txt metric is on the dashboard or in an alert", check_metrics_coverage, used, listed)
    rabbit = PROMETHEUS / "rabbitmq-alerts.yml"
    if rabbit.exists():
        checks.run(f"alerts {rabbit.name} structure", check_rules_structure, rabbit)

        def rabbit_metrics():
            _, rules = rule_exprs(rabbit)
            names = set(load_metric_list(PROMETHEUS / "RABBITMQ_METRICS.txt"))
            check_expressions(rabbit.name, [r["expr"] for r in rules], names, False)
            return "RabbitMQ's own names, from RABBITMQ_METRICS.txt"

        checks.run(f"alerts {rabbit.name} metrics", rabbit_metrics)

    # promtool (optional) ---------------------------------------------------------------
    checks.run("promtool: alert rules", promtool_rules)
    checks.run("promtool: dashboard queries", promtool_dashboard, dashboard_exprs)
    checks.run("promtool: alert unit tests", promtool_tests)

    line = f"deploy-check: {checks.passed} passed, {checks.failed} failed"
    if checks.skipped:
        line += f", {checks.skipped} skipped"
    print(line)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
