#!/usr/bin/env python3
"""Checks the deployment files against the code, without Docker or a cluster.

  python3 infra/check-deployment.py

Renders docker-compose.yml (docker-compose, or `docker compose`) and every kustomization under
infra/k8s (kubectl kustomize; KUBECTL=... picks another kubectl), then checks that
  - every service folder under Services/ is a compose service, a Dockerfile target and a
    Deployment (with Service, HPA and PodDisruptionBudget) in every render;
  - every topic of Shared/Domain/Topics.swift, dead-letter topics included, is created by the
    compose topic step and declared as a Strimzi KafkaTopic, with the same partition count;
  - every FISSION_* variable a service reads (Shared/ServiceKit plus its own folder) is set
    for it in compose and in its Kubernetes ConfigMap/Secret, and nothing unread is set;
  - every Services/<Name>/openapi.yaml is a valid OpenAPI 3.1 document (openapi-spec-validator)
    whose operations each declare `x-fission-roles` ([], [shopper], [merchant], [operator] or
    [signed]) and answer errors as application/problem+json (health probes excepted).
Prints one line per problem and exits 1, or one summary line and exits 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
K8S = ROOT / "infra" / "k8s"
TOPICS_SWIFT = ROOT / "Shared" / "Domain" / "Topics.swift"

# Variables of which a service needs any one (Shared/ServiceKit/Configuration/Environment.swift:
# a shared HS256 secret, or else a file of public keys).
ONE_OF = [{"FISSION_JWT_SECRET", "FISSION_JWT_PUBLIC_KEYS_FILE"}]

# How services read their settings: EnvironmentReader's methods.
READ_PATTERN = re.compile(
    # Any EnvironmentReader accessor (required, optional, string, integer, seconds, database,
    # budget, and whatever comes next) called with a FISSION_ name.
    r'environment\s*\.\s*[a-z][A-Za-z]*\s*\(\s*"(FISSION_[A-Z0-9_]+)"')

problems: list[str] = []


def problem(line: str) -> None:
    problems.append(line)


def run(command: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        problem(f"{' '.join(command)}: {error}")
        return None


def error_line(text: str) -> str:
    """The most telling line of a tool's error output (kubectl wraps its message in klog lines)."""
    lines = [line.strip().lstrip("`:> ").strip() for line in text.splitlines() if not line.startswith("# Warning")]
    lines = [line for line in lines if len(line) > 2]
    telling = [line for line in lines if re.search(r"error|fail|invalid|unsupported|not found|no such", line, re.I)]
    return (telling or lines or ["(no output)"])[-1]


# MARK: The OpenAPI documents

ROLES = {"shopper", "merchant", "operator", "signed"}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def check_openapi(services: list[str]) -> int:
    """Validates each service's OpenAPI document; returns how many operations were checked."""
    try:
        from openapi_spec_validator import validate
    except ImportError:
        problem("openapi-spec-validator is not installed (infra/local/install-deps.sh installs it)")
        return 0
    operations = 0
    for folder in sorted(entry for entry in (ROOT / "Services").iterdir() if entry.is_dir() and entry.name.lower() in services):
        path = folder / "openapi.yaml"
        where = str(path.relative_to(ROOT))
        if not path.exists():
            problem(f"{where}: missing")
            continue
        try:
            document = yaml.safe_load(path.read_text())
            validate(document)
        except Exception as error:  # noqa: BLE001 — the validator's message is the problem
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            at = getattr(error, "json_path", "")
            problem(f"{where}: not a valid OpenAPI document: {message}{f' (at {at})' if at else ''}")
            continue
        if not str(document.get("openapi", "")).startswith("3.1"):
            problem(f"{where}: openapi is {document.get('openapi')}, expected 3.1.x")
        for route, item in (document.get("paths") or {}).items():
            for method, operation in item.items():
                if method not in METHODS:
                    continue
                operations += 1
                roles = operation.get("x-fission-roles")
                if not isinstance(roles, list) or not set(roles) <= ROLES or len(roles) > 1:
                    problem(f"{where}: {method.upper()} {route} declares x-fission-roles {roles!r}, expected [], or one of "
                            f"{', '.join(sorted(ROLES))}")
                for status, response in (operation.get("responses") or {}).items():
                    # /health/ready answers 503 with its health report, as probes expect.
                    if not str(status).startswith(("4", "5")) or not isinstance(response, dict) or route.startswith("/health/"):
                        continue
                    if "$ref" in response:
                        response = resolve_reference(document, response["$ref"]) or {}
                    media = set((response.get("content") or {}).keys())
                    if media and media != {"application/problem+json"}:
                        problem(f"{where}: {method.upper()} {route} answers {status} as {', '.join(sorted(media))}, "
                                f"not application/problem+json")
    return operations


def resolve_reference(document: dict, reference: str) -> dict | None:
    if not reference.startswith("#/"):
        return None
    node = document
    for part in reference[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


# MARK: What the code says

def services_from_folders() -> list[str]:
    return sorted(entry.name.lower() for entry in (ROOT / "Services").iterdir()
                  if entry.is_dir() and not entry.name.startswith("."))


def registry_topics() -> dict[str, int]:
    """Topics.all plus dlq.<service> for every ServiceName case, with partition counts."""
    source = TOPICS_SWIFT.read_text()
    defined = {var: (name, int(partitions)) for var, name, partitions in re.findall(
        r'static\s+let\s+(\w+)\s*=\s*Topic\(\s*name:\s*"([^"]+)"\s*,\s*partitions:\s*(\d+)', source)}
    if not defined:
        problem(f"{TOPICS_SWIFT.relative_to(ROOT)}: no `Topic(name: \"...\", partitions: N` found (checker out of date?)")
    topics: dict[str, int] = {}
    listed = re.search(r"static\s+let\s+all\s*:\s*\[Topic\]\s*=\s*\[([^\]]*)\]", source)
    if listed:
        for var in re.findall(r"\w+", listed.group(1)):
            if var not in defined:
                problem(f"{TOPICS_SWIFT.relative_to(ROOT)}: Topics.all names `{var}`, which the checker cannot find")
                continue
            name, partitions = defined[var]
            topics[name] = partitions
    else:
        problem(f"{TOPICS_SWIFT.relative_to(ROOT)}: no `static let all: [Topic] = [...]` found (checker out of date?)")
        topics = dict(defined.values())

    cases = re.search(r"enum\s+ServiceName[^{]*\{\s*case\s+([^}]*)\}", source)
    prefix = re.search(r'func\s+deadLetter\(of\s+group:\s*String\)\s*->\s*String\s*\{\s*"([^"\\]*)\\\(group\)"', source)
    dlq_partitions = re.search(r"deadLetter\(of:\s*\$0\.rawValue\)\s*,\s*(\d+)\s*\)", source)
    if not (cases and prefix and dlq_partitions):
        problem(f"{TOPICS_SWIFT.relative_to(ROOT)}: cannot read the ServiceName cases or the dead-letter "
                "topic naming (checker out of date?)")
        return topics
    for case in re.findall(r"\w+", cases.group(1)):
        topics[prefix.group(1) + case] = int(dlq_partitions.group(1))
    return topics


def variables_read(folder: Path) -> set[str]:
    found: set[str] = set()
    for path in folder.rglob("*.swift"):
        found.update(READ_PATTERN.findall(path.read_text(encoding="utf-8", errors="replace")))
    return found


def required_variables(services: list[str]) -> dict[str, set[str]]:
    common = variables_read(ROOT / "Shared" / "ServiceKit")
    if not common:
        problem("Shared/ServiceKit: no environment.<reader>(\"FISSION_...\") calls found (checker out of date?)")
    folders = {entry.name.lower(): entry for entry in (ROOT / "Services").iterdir() if entry.is_dir()}
    return {service: common | variables_read(folders[service]) for service in services}


def missing_variables(needed: set[str], present: set[str]) -> list[str]:
    missing = []
    grouped = set().union(*ONE_OF)
    for group in ONE_OF:
        read = group & needed
        if read and not read & present:
            missing.append(" or ".join(sorted(read)))
    missing.extend(sorted(name for name in needed - grouped if name not in present))
    return missing


# MARK: docker-compose.yml

def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = run(["docker", "compose", "version"])
        if probe and probe.returncode == 0:
            return ["docker", "compose"]
    return None


def render_compose() -> dict | None:
    command = compose_command()
    if command is None:
        problem("docker-compose is not installed (apt-get install docker-compose): cannot validate docker-compose.yml")
    else:
        quiet = run(command + ["-f", str(COMPOSE_FILE), "config", "-q"])
        if quiet and quiet.returncode != 0:
            problem(f"docker-compose.yml: `{' '.join(command)} config -q` failed: {error_line(quiet.stderr + quiet.stdout)}")
        else:
            rendered = run(command + ["-f", str(COMPOSE_FILE), "config"])
            if rendered and rendered.returncode == 0:
                return yaml.safe_load(rendered.stdout) or {}
    # Still check the rest from the file itself (PyYAML resolves anchors and merge keys).
    try:
        return yaml.safe_load(COMPOSE_FILE.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        if command is None:
            problem(f"docker-compose.yml: cannot read: {' '.join(str(error).split())}")
        return None


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return {key: ("" if value is None else str(value)) for key, value in environment.items()}


def container_ports(service: dict) -> list[int]:
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append(int(entry["target"]))
        else:
            ports.append(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def published_ports(service: dict) -> list[str]:
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.append(str(entry.get("published")))
        else:
            parts = str(entry).split("/")[0].split(":")
            ports.append(parts[-2] if len(parts) > 1 else "")
    return ports


def compose_topics(services: dict) -> tuple[str | None, dict[str, int]]:
    for name, service in services.items():
        script = "\n".join(str(part) for key in ("entrypoint", "command")
                           for part in (service.get(key) if isinstance(service.get(key), list)
                                        else [service.get(key) or ""]))
        if "kafka-topics.sh" in script and "--create" in script:
            return name, {topic: int(count) for topic, count in
                          re.findall(r"^\s*topic\s+(\S+)\s+(\d+)\s*$", script, re.MULTILINE)}
    return None, {}


def check_compose(compose: dict, services: list[str], topics: dict[str, int], needed: dict[str, set[str]]) -> None:
    declared = compose.get("services") or {}
    stages = {match.lower() for match in re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(),
                                                     re.MULTILINE | re.IGNORECASE)}
    postgres_databases = set()
    for service in declared.values():
        postgres_databases.update(environment_of(service).get("FISSION_DATABASES", "").split())

    secrets, published = {}, {}
    for name in services:
        if name not in stages:
            problem(f"infra/docker/Dockerfile: no `FROM runtime-base AS {name}` target")
        service = declared.get(name)
        if service is None:
            problem(f"docker-compose.yml: no service `{name}` (folder Services/{name.capitalize()})")
            continue
        build = service.get("build")
        if isinstance(build, dict) and build.get("target") != name:
            problem(f"docker-compose.yml: {name} builds target `{build.get('target')}`, expected `{name}`")
        conditions = {dependency: (options or {}).get("condition") for dependency, options in
                      (service.get("depends_on") or {}).items()} if isinstance(service.get("depends_on"), dict) else {}
        if conditions.get("postgres") != "service_healthy":
            problem(f"docker-compose.yml: {name} does not wait for postgres (depends_on condition service_healthy)")
        topic_service, _ = compose_topics(declared)
        if topic_service and conditions.get(topic_service) != "service_completed_successfully":
            problem(f"docker-compose.yml: {name} does not wait for {topic_service} (condition service_completed_successfully)")

        environment = environment_of(service)
        for variable in missing_variables(needed[name], set(environment)):
            problem(f"docker-compose.yml: {name} does not set {variable}")
        for variable in sorted(set(environment) - needed[name]):
            if variable.startswith("FISSION_"):
                problem(f"docker-compose.yml: {name} sets {variable}, which {name} does not read")
        check_values(f"docker-compose.yml: {name}", environment, container_ports(service))
        if "FISSION_JWT_SECRET" in environment:
            secrets[name] = environment["FISSION_JWT_SECRET"]
            if len(secrets[name].encode()) < 32:
                problem(f"docker-compose.yml: {name}'s FISSION_JWT_SECRET is shorter than 32 bytes")
        url = environment.get("FISSION_DATABASE_URL")
        if url:
            parts = urlsplit(url)
            database = parts.path.lstrip("/")
            if parts.scheme not in ("postgres", "postgresql") or database != name or parts.username != name:
                problem(f"docker-compose.yml: {name}'s FISSION_DATABASE_URL should use role and database `{name}`, "
                        f"got role `{parts.username}` database `{database}`")
            elif postgres_databases and database not in postgres_databases:
                problem(f"docker-compose.yml: postgres FISSION_DATABASES does not create `{database}` for {name}")
        for port in published_ports(service):
            if port in published:
                problem(f"docker-compose.yml: {name} and {published[port]} both publish port {port}")
            published[port] = name
    if len(set(secrets.values())) > 1:
        problem("docker-compose.yml: the services have different FISSION_JWT_SECRET values (a token must verify everywhere)")

    topic_service, created = compose_topics(declared)
    if topic_service is None:
        problem("docker-compose.yml: no service runs `kafka-topics.sh --create` for the topics")
        return
    compare_topics(f"docker-compose.yml ({topic_service})", topics, created)


def check_values(where: str, environment: dict[str, str], ports: list[int]) -> None:
    if environment.get("FISSION_KAFKA_LOCAL", "false") != "false":
        problem(f"{where}: FISSION_KAFKA_LOCAL must be \"false\" outside the local stack, got {environment['FISSION_KAFKA_LOCAL']!r}")
    port = environment.get("FISSION_HTTP_PORT", "8080")
    if ports and (not port.isdigit() or int(port) not in ports):
        problem(f"{where}: FISSION_HTTP_PORT is {port} but the container port is {', '.join(map(str, ports))}")


def compare_topics(where: str, expected: dict[str, int], actual: dict[str, int]) -> None:
    for topic, partitions in sorted(expected.items()):
        if topic not in actual:
            problem(f"{where}: topic {topic} is not created")
        elif actual[topic] != partitions:
            problem(f"{where}: topic {topic} has {actual[topic]} partitions, the registry says {partitions}")
    for topic in sorted(set(actual) - set(expected)):
        problem(f"{where}: topic {topic} is not in Shared/Domain/Topics.swift")


# MARK: Kubernetes

def kustomizations() -> list[Path]:
    found = [K8S / "base"]
    overlays = K8S / "overlays"
    if overlays.is_dir():
        found += sorted(entry for entry in overlays.iterdir()
                        if (entry / "kustomization.yaml").is_file() or (entry / "kustomization.yml").is_file())
    return found


def render_kustomization(directory: Path) -> list[dict] | None:
    kubectl = os.environ.get("KUBECTL", "kubectl")
    if not shutil.which(kubectl):
        problem(f"{kubectl} is not installed (apt-get install kubernetes-client): cannot render {directory.relative_to(ROOT)}")
        return None
    result = run([kubectl, "kustomize", str(directory)])
    if result is None:
        return None
    if result.returncode != 0:
        problem(f"{directory.relative_to(ROOT)}: kubectl kustomize failed: {error_line(result.stderr)}")
        return None
    try:
        return [document for document in yaml.safe_load_all(result.stdout) if document]
    except yaml.YAMLError as error:
        problem(f"{directory.relative_to(ROOT)}: kubectl kustomize printed unreadable YAML: {error}")
        return None


def check_render(where: str, objects: list[dict], services: list[str], topics: dict[str, int],
                 needed: dict[str, set[str]]) -> None:
    def named(kind: str) -> dict[str, dict]:
        return {item["metadata"]["name"]: item for item in objects if item.get("kind") == kind}

    deployments, config_maps, secrets = named("Deployment"), named("ConfigMap"), named("Secret")
    for name in services:
        for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            if name not in named(kind):
                problem(f"{where}: no {kind} `{name}`")
        deployment = deployments.get(name)
        if deployment is None:
            problem(f"{where}: no Deployment `{name}`")
            continue
        template = deployment["spec"]["template"]
        containers = template["spec"].get("containers") or []
        if not containers:
            problem(f"{where}: Deployment {name} has no container")
            continue
        container = containers[0]
        environment: dict[str, str] = {}
        dangling = False
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                reference, pool = source["configMapRef"], config_maps
            elif "secretRef" in source:
                reference, pool = source["secretRef"], secrets
            else:
                continue
            target = pool.get(reference.get("name"))
            if target is None:
                if not reference.get("optional"):
                    problem(f"{where}: Deployment {name} reads {reference.get('name')}, which is not in the render")
                    dangling = True
                continue
            for key in ("data", "stringData", "binaryData"):
                environment.update({k: str(v) for k, v in (target.get(key) or {}).items()})
        for variable in container.get("env") or []:
            environment[variable["name"]] = str(variable.get("value", ""))
        for variable in [] if dangling else missing_variables(needed[name], set(environment)):
            problem(f"{where}: Deployment {name} gets no {variable} (ConfigMap/Secret)")
        for variable in sorted(set(environment) - needed[name]):
            if variable.startswith("FISSION_"):
                problem(f"{where}: Deployment {name} gets {variable}, which {name} does not read")
        ports = [port["containerPort"] for port in container.get("ports") or []]
        check_values(f"{where}: Deployment {name}", environment, ports)
        for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
            actual = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
            if actual != path:
                problem(f"{where}: Deployment {name} {probe} should GET {path}, got {actual}")
        annotations = template.get("metadata", {}).get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics" \
                or str(annotations.get("prometheus.io/port")) not in map(str, ports):
            problem(f"{where}: Deployment {name} pod template lacks prometheus.io/scrape, /path=/metrics or a matching /port")

    declared: dict[str, int] = {}
    for item in objects:
        if item.get("kind") == "KafkaTopic":
            spec = item.get("spec") or {}
            declared[spec.get("topicName") or item["metadata"]["name"]] = int(spec.get("partitions", 0))
            if not (item["metadata"].get("labels") or {}).get("strimzi.io/cluster"):
                problem(f"{where}: KafkaTopic {item['metadata']['name']} has no strimzi.io/cluster label")
    compare_topics(f"{where} (KafkaTopic)", topics, declared)


def main() -> int:
    services = services_from_folders()
    topics = registry_topics()
    needed = required_variables(services)
    operations = check_openapi(services)

    compose = render_compose()
    if compose is not None:
        check_compose(compose, services, topics, needed)
    rendered = []
    for directory in kustomizations():
        objects = render_kustomization(directory)
        if objects is not None:
            rendered.append(str(directory.relative_to(K8S)))
            check_render(str(directory.relative_to(ROOT)), objects, services, topics, needed)

    for line in problems:
        print(f"check-deployment: {line}")
    if problems:
        print(f"check-deployment: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-deployment: ok: {len(services)} services, {len(topics)} topics; docker-compose.yml and "
          f"kustomize renders ({', '.join(rendered)}) agree with the code; {operations} operations in valid OpenAPI documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
