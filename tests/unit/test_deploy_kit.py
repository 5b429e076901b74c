"""The deploy kit, read the way the tools would read it: Dockerfile, compose.yaml, deploy/k8s/
and requirements/service.lock.

No container engine runs on these machines (`docker` is only a client), so no image is built
and no cluster is started; what can be checked without one is: every environment variable
the kit sets is one the service reads (config/settings.py imported, with the kit's own
environment, under an `os.environ` that records every name looked up), the probes and
health checks ask for paths the service's router answers, the lock pins every dependency of
the `[service]` extra with hashes, and the image installs the lock before the source.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
K8S = ROOT / "deploy" / "k8s"
LOCK = ROOT / "requirements" / "service.lock"
SERVE_SH = ROOT / "scripts" / "serve.sh"

# Read by the interpreter or pip inside the image, not by the service.
INTERPRETER_VARIABLES = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PYTHONPATH",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
# Names whose value is a credential: only ever from a Secret (or the operator's shell).
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|DATABASE_URL|REDIS_URL")

# Run in a child process: import the service as the server does (config.asgi) under an
# os.environ that records every name looked up, and report those names, the health and
# readiness paths the settings give, and the paths the router answers before Django.
READ_SETTINGS = """
import json, os, sys

class RecordingEnviron(dict):
    def __init__(self, data):
        super().__init__(data)
        self.read = set()
    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)
    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)

recording = os.environ = RecordingEnviron(os.environ)
import config.asgi
from django.conf import settings
from mediacache.serving.router import MediaRouter

app = config.asgi.application
for _ in range(10):
    if isinstance(app, MediaRouter):
        break
    app = getattr(app, "app", None)
if not isinstance(app, MediaRouter):
    sys.exit(f"no MediaRouter in config.asgi.application: {config.asgi.application!r}")
print(json.dumps({
    "read": sorted(recording.read),
    "health_path": settings.MEDIACACHE["HEALTH_PATH"],
    "ready_path": settings.MEDIACACHE["READY_PATH"],
    "served": sorted(app.endpoints),
}))
"""


# --- reading the files --------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def image_env() -> dict[str, str]:
    """The variables the image's ENV lines set."""
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                name, equals, value = word.partition("=")
                assert equals, f"ENV in the legacy 'ENV NAME value' form: {arguments}"
                env[name] = value
    return env


def image_user() -> int:
    (user,) = [arguments for keyword, arguments in dockerfile() if keyword == "USER"]
    return int(user.split(":")[0])


class MissingVariable(LookupError):
    pass


COMPOSE_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, ${NAME}, ${NAME:-default}, ${NAME:?error}, $NAME."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        operator, argument = match[2], match[3]
        given = environ.get(name)
        empty = given is None or (given == "" and operator is not None and ":" in operator)
        if not empty:
            return str(given)
        if operator and operator.endswith("?"):
            raise MissingVariable(f"{name}: {argument}")
        return argument if operator else ""

    return COMPOSE_VARIABLE.sub(replace, value)


def interpolated(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [interpolated(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(item, environ) for key, item in node.items()}
    return node


A_SECRET_KEY = "k" * 60


@cache
def compose() -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with only SECRET_KEY set."""
    document = yaml.safe_load(COMPOSE.read_text())
    return interpolated(document, {"SECRET_KEY": A_SECRET_KEY})


def compose_env(service: str) -> dict[str, str]:
    environment = compose()["services"][service].get("environment", {})
    assert isinstance(environment, dict), f"{service}: environment as a mapping, please"
    return {name: str(value) for name, value in environment.items()}


@cache
def k8s_documents() -> tuple[tuple[Path, dict[str, Any]], ...]:
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path, document))
    return tuple(documents)


def k8s(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in k8s_documents() if document["kind"] == kind]


def the(kind: str) -> dict[str, Any]:
    """The one document of ``kind``; for Deployments, the web one (the task worker's is
    ``mediacache-worker``)."""
    documents = k8s(kind)
    if kind == "Deployment":
        documents = [d for d in documents if d["metadata"]["name"] == "mediacache"]
    (document,) = documents
    return document


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for document in k8s(kind):
            yield f"{kind}/{document['metadata']['name']}", document["spec"]["template"]["spec"]


def container_env(pod: dict[str, Any]) -> dict[str, str]:
    """What a container of this pod gets: the image's ENV, the ConfigMaps it takes whole,
    its own variables (a Secret's are given a value of the right shape)."""
    configmaps = {c["metadata"]["name"]: c["data"] for c in k8s("ConfigMap")}
    (container,) = pod["containers"]
    env = dict(image_env())
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = placeholder(item["name"])
    return env


def placeholder(name: str) -> str:
    """A value of the right shape for a variable that comes from a Secret."""
    if name == "DATABASE_URL":
        return "postgres://mediacache:placeholder@127.0.0.1:9/mediacache"
    if name == "REDIS_URL":
        return "redis://127.0.0.1:9/0"
    if name.endswith("_URL"):
        return "http://127.0.0.1:9"
    return f"placeholder-{name.lower()}-" + "x" * 40


def serve_sh_variables() -> set[str]:
    return set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", SERVE_SH.read_text()))


def serve_sh_default(name: str) -> str:
    (default,) = set(re.findall(r"\$\{" + name + r":-([^}]*)\}", SERVE_SH.read_text()))
    return default


class ServiceReader:
    """What the service reads and serves when started with an environment: one child
    process per environment, its files (if any) under a temporary directory."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.readings: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def __call__(self, env: Mapping[str, str]) -> dict[str, Any]:
        key = tuple(sorted(env.items()))
        if key not in self.readings:
            self.readings[key] = self._read(env)
        return self.readings[key]

    def _read(self, given: Mapping[str, str]) -> dict[str, Any]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            **given,
            "MEDIACACHE_READ_DOTENV": "0",  # the kit's environment only, never a .env
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if "MEDIACACHE_VAR_DIR" in env:  # still looked up; nothing made outside the test's dir
            env["MEDIACACHE_VAR_DIR"] = str(self.var_dir)
        done = subprocess.run(
            [sys.executable, "-c", READ_SETTINGS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (
            f"the service does not start with {sorted(given)}:\n{done.stderr}"
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def assert_all_read(self, where: str, env: Mapping[str, str]) -> dict[str, Any]:
        reading = self(env)
        known = set(reading["read"]) | serve_sh_variables() | INTERPRETER_VARIABLES
        unread = sorted(set(env) - known)
        assert not unread, f"{where} sets variables the service never reads: {unread}"
        return reading


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ServiceReader:
    return ServiceReader(tmp_path_factory.mktemp("var"))


# --- the lock -----------------------------------------------------------------------------


def locked() -> dict[str, tuple[Version, list[str]]]:
    """Each pinned package of the lock: its version and its hashes."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    for raw in text.splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        parsed = Requirement(requirement)
        (specifier,) = parsed.specifier
        assert specifier.operator == "==", f"not pinned: {requirement}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        assert hashes, f"no hashes: {line}"
        assert all(h.startswith("sha256:") for h in hashes), f"not sha256: {line}"
        assert len(hashes) == len(options), f"options other than hashes: {line}"
        pins[canonicalize_name(parsed.name)] = (Version(specifier.version), hashes)
    return pins


def service_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["service"]]
    ]


def test_the_lock_pins_every_package_with_hashes():
    pins = locked()
    assert len(pins) > 20
    assert "Python 3.11" in LOCK.read_text().split("\n\n")[0], "the lock is for the image's 3.11"


def test_the_lock_covers_the_service_extra_and_what_it_needs():
    """Every requirement of the project and its `[service]` extra is pinned to a version it
    allows, and so is every requirement of those (their extras included), as far as the
    installed metadata tells (for packages installed at the locked version)."""
    pins = locked()
    environment: dict[str, str] = dict(default_environment())
    missing: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r, "pyproject.toml") for r in service_requirements()]
    while todo:
        requirement, wanted_by = todo.pop()
        name = canonicalize_name(requirement.name)
        if name not in pins:
            missing.append(f"{requirement} (for {wanted_by})")
            continue
        version = pins[name][0]
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement}: the lock has {version} (for {wanted_by})")
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(installed.version) != version:
            continue
        for line in installed.requires or []:
            needed = Requirement(line)
            for extra in ["", *sorted(extras)]:
                if needed.marker is None or needed.marker.evaluate({**environment, "extra": extra}):
                    todo.append((needed, f"{name} {version}"))
                    break
    assert not missing, "requirements/service.lock is stale (`make lock`):\n" + "\n".join(missing)


# --- the Dockerfile -----------------------------------------------------------------------


def test_the_image_installs_the_lock_before_the_source():
    instructions = dockerfile()
    installs = [
        i
        for i, (keyword, arguments) in enumerate(instructions)
        if keyword == "RUN" and "pip install" in arguments
    ]
    lock_install = [
        i
        for i in installs
        if {"--require-hashes", "-r"} <= set(shlex.split(instructions[i][1]))
        and "requirements/service.lock" in shlex.split(instructions[i][1])
    ]
    assert lock_install, "no `pip install --require-hashes -r requirements/service.lock`"
    first = lock_install[0]
    copies = [(i, shlex.split(arguments)) for i, (keyword, arguments) in enumerate(instructions)]
    copies = [(i, words) for i, words in copies if instructions[i][0] in {"COPY", "ADD"}]
    before = [words for i, words in copies if i < first]
    assert before == [["requirements/service.lock", "requirements/service.lock"]], (
        f"only the lock may be copied before the dependencies are installed: {before}"
    )
    source = [i for i, words in copies if words[:-1] == ["."]]
    assert source, "no `COPY . .`"
    assert source[0] > first, "the source (`COPY . .`) comes after the lock"
    for i in installs:
        if i != first:
            assert "--no-deps" in instructions[i][1], (
                f"installs unlocked packages: {instructions[i]}"
            )


def test_the_image_is_the_locks_python():
    (base,) = [arguments for keyword, arguments in dockerfile() if keyword == "FROM"]
    assert base.startswith("python:3.11"), base


def test_the_image_runs_serve_sh_as_an_unprivileged_user():
    instructions = dockerfile()
    assert image_user() != 0
    (command,) = [arguments for keyword, arguments in instructions if keyword == "CMD"]
    assert json.loads(command) == ["scripts/serve.sh"]
    assert os.access(SERVE_SH, os.X_OK)
    keywords = [keyword for keyword, _ in instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})


def test_the_build_context_keeps_secrets_out_and_the_service_in():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(parts[n], pattern.removeprefix("**/"))
            for pattern in patterns
            for n, prefix in enumerate(prefixes)
        )

    assert ignored(".env")
    assert ignored(".venv/bin/python")
    assert ignored("var/db.sqlite3")
    for needed in ("requirements/service.lock", "scripts/serve.sh", "manage.py"):
        assert not ignored(needed), needed
    for package in ("config", "mediacache", "evolution", "chat", "ops"):
        assert not ignored(f"{package}/__init__.py"), package


def test_every_variable_the_image_sets_is_read(service):
    env = image_env()
    reading = service.assert_all_read("Dockerfile", {**env, "SECRET_KEY": A_SECRET_KEY})
    (check,) = [arguments for keyword, arguments in dockerfile() if keyword == "HEALTHCHECK"]
    paths = re.findall(r"/\w+(?=')", check)
    assert paths == [reading["health_path"]], check
    assert reading["health_path"] in reading["served"]


# --- compose.yaml -------------------------------------------------------------------------


def test_compose_refuses_to_start_without_a_secret_key():
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        interpolated(yaml.safe_load(COMPOSE.read_text()), {})
    assert compose_env("app")["SECRET_KEY"] == A_SECRET_KEY


def test_compose_runs_two_replicas_of_the_image_behind_a_proxy():
    services = compose()["services"]
    assert {"app", "migrate", "proxy", "postgres", "redis", "minio", "createbucket"} <= set(
        services
    )
    app = services["app"]
    assert app["deploy"]["replicas"] == 2
    assert app["build"] == "."
    assert services["migrate"]["image"] == app["image"]
    assert "ports" not in app, "the replicas are reached through the proxy only"
    depends = app["depends_on"]
    for one_shot in ("migrate", "createbucket"):
        assert depends[one_shot]["condition"] == "service_completed_successfully"
    assert "migrate" in services["migrate"]["command"]

    nginx = services["proxy"]
    (mount,) = nginx["volumes"]
    conf = (ROOT / mount.split(":")[0]).read_text()
    port = compose_env("app").get("PORT") or serve_sh_default("PORT")
    assert re.findall(r"http://([\w-]+):(\d+)", conf) == [("app", port)]


def test_compose_app_points_at_the_compose_services():
    services = compose()["services"]
    env = compose_env("app")
    assert compose_env("migrate") == env

    database = urlsplit(env["DATABASE_URL"])
    postgres = services[database.hostname]
    assert postgres["image"].startswith("postgres:")
    pg = compose_env(database.hostname)
    assert (database.username, database.password, database.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert services[urlsplit(env["REDIS_URL"]).hostname]["image"].startswith("redis:")

    minio_name = urlsplit(env["S3_ENDPOINT_URL"]).hostname
    assert services[minio_name]["image"].startswith("minio/minio")
    minio = compose_env(minio_name)
    assert env["S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    bucket_job = " ".join(services["createbucket"]["command"])
    assert f"mc mb --ignore-existing local/{env['S3_BUCKET']}" in bucket_job
    assert f"http://{minio_name}:9000" in bucket_job


def test_every_variable_compose_gives_the_app_is_read(service):
    env = {**image_env(), **compose_env("app")}
    reading = service.assert_all_read("compose.yaml (app)", env)
    assert {reading["health_path"], reading["ready_path"]} <= set(reading["served"])


def test_compose_lets_downloads_finish_before_stopping_a_replica():
    app = compose()["services"]["app"]
    graceful = int(
        compose_env("app").get("GRACEFUL_TIMEOUT") or serve_sh_default("GRACEFUL_TIMEOUT")
    )
    assert int(app["stop_grace_period"].removesuffix("s")) > graceful


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed")
def test_the_compose_proxy_configuration_is_valid_nginx(tmp_path):
    services = compose()["services"]
    (mount,) = services["proxy"]["volumes"]
    conf = ROOT / mount.split(":")[0]
    main = tmp_path / "nginx.conf"
    temp = {
        f"{kind}_temp_path": tmp_path / kind
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events {}\nhttp {\n"
        + "".join(f"  {key} {value};\n" for key, value in temp.items())
        + f"  access_log off;\n  include {conf};\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_kit_trusts_only_private_proxies():
    """The replicas sit behind a proxy on a private network: its X-Forwarded-For is
    believed, and no public address (nor "*") is ever a trusted proxy."""
    deployment = the("Deployment")
    envs = {
        "compose.yaml": compose_env("app"),
        "deploy/k8s": container_env(deployment["spec"]["template"]["spec"]),
    }
    for where, env in envs.items():
        assert env.get("TRUSTED_PROXIES"), f"{where}: every client would have the proxy's address"
        for cidr in env["TRUSTED_PROXIES"].split(","):
            assert ipaddress.ip_network(cidr).is_private, f"{where}: {cidr} is not private"


# --- Kubernetes ---------------------------------------------------------------------------


def test_the_task_worker_runs_beside_the_web_with_the_same_settings():
    """A worker Deployment runs scripts/worker.sh (`manage.py run_worker`) from the same
    image, ConfigMap and Secret keys as the web one (a send needs the database, the store
    and Evolution's key)."""
    worker = next(d for d in k8s("Deployment") if d["metadata"]["name"] == "mediacache-worker")
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["scripts/worker.sh"]
    web = the("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == web["image"]
    assert container["envFrom"] == web["envFrom"]
    web_secrets = {e["name"] for e in web["env"]}
    worker_secrets = {e["name"] for e in container["env"]}
    assert worker_secrets == web_secrets - {"METRICS_TOKEN", "EVOLUTION_WEBHOOK_SECRET"}
    # Longer than a send in flight may take (connect + read timeouts).
    assert pod["terminationGracePeriodSeconds"] >= 65
    compose_worker = compose()["services"]["worker"]
    assert compose_worker["command"] == ["scripts/worker.sh"]
    assert compose_env("worker") == compose_env("app")


def test_kubernetes_has_every_piece_and_no_secret():
    kinds = [document["kind"] for _, document in k8s_documents()]
    for kind in (
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "ConfigMap",
    ):
        assert kind in kinds, kind
    assert "Secret" not in kinds, "Secrets are the operator's, never in the repository"
    for key in the("ConfigMap")["data"]:
        assert not SECRET_LOOKING.search(key), f"{key} belongs in the Secret"


def test_each_kustomization_lists_existing_files_and_the_same_image():
    kustomizations = [doc for _, doc in k8s_documents() if doc["kind"] == "Kustomization"]
    listed: set[Path] = set()
    paths = [path for path, doc in k8s_documents() if doc["kind"] == "Kustomization"]
    for path, kustomization in zip(paths, kustomizations, strict=True):
        for resource in kustomization["resources"]:
            assert (path.parent / resource).is_file(), f"{path}: {resource}"
            listed.add((path.parent / resource).resolve())
    manifests = {path.resolve() for path, doc in k8s_documents() if doc["kind"] != "Kustomization"}
    assert manifests == listed, "every manifest belongs to one kustomization"
    images = {json.dumps(k["images"], sort_keys=True) for k in kustomizations}
    assert len(images) == 1, "the service and its migration run the same image"


def test_the_pods_read_every_variable_they_are_given(service):
    for where, pod in pod_specs():
        service.assert_all_read(where, container_env(pod))


def test_secrets_come_from_the_operators_secret():
    names: set[str] = set()
    for where, pod in pod_specs():
        (container,) = pod["containers"]
        for item in container.get("env", []):
            if SECRET_LOOKING.search(item["name"]):
                assert "value" not in item, f"{where}: {item['name']} must come from a Secret"
            if "valueFrom" in item:
                names.add(item["valueFrom"]["secretKeyRef"]["name"])
    assert names == {"mediacache"}, names


def test_the_probes_ask_for_what_the_service_serves(service):
    deployment = the("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    reading = service(container_env(pod))
    assert reading["health_path"] in reading["served"]
    assert reading["ready_path"] in reading["served"]
    assert container["livenessProbe"]["httpGet"]["path"] == reading["health_path"]
    assert container["startupProbe"]["httpGet"]["path"] == reading["health_path"]
    assert container["readinessProbe"]["httpGet"]["path"] == reading["ready_path"]

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listening = int(container_env(pod).get("PORT") or serve_sh_default("PORT"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == listening


def test_a_stopping_pod_finishes_its_downloads():
    deployment = the("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(pod)
    graceful = int(env.get("GRACEFUL_TIMEOUT") or serve_sh_default("GRACEFUL_TIMEOUT"))
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > graceful + int(pause[1])
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_the_pods_run_as_the_images_user():
    for where, pod in pod_specs():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == image_user(), where


def test_the_service_autoscaler_and_budget_select_the_deployment():
    deployment = the("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert the("Service")["spec"]["selector"].items() <= labels.items()
    budget = the("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    autoscaler = the("HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert autoscaler["minReplicas"] >= 2
    assert budget["maxUnavailable"] < autoscaler["minReplicas"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in the("Service")["spec"]["ports"]} <= ports


def test_the_migration_job_migrates_once():
    job = the("Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert "manage.py migrate --noinput" in " ".join(container["command"])
    assert (
        container["envFrom"]
        == the("Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    )


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("folder", ["deploy/k8s", "deploy/k8s/migrate"])
def test_kustomize_builds_the_manifests(folder):
    done = subprocess.run(
        ["kubectl", "kustomize", folder],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for document in yaml.safe_load_all(done.stdout):
        for container in (
            document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            assert container["image"] != "mediacache", "the kustomization sets the image"


# --- README -------------------------------------------------------------------------------


def test_the_readme_says_how_to_deploy_on_each_platform():
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    for heading in ("### Railway", "### Render", "### Kubernetes", "### Docker Compose"):
        assert heading in deploy, heading
    assert "container engine" in deploy
