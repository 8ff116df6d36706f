"""Deployment files, rendered and validated offline: a broken Dockerfile, entry point, compose
file, Kubernetes manifest or release job fails `make test` here, not at a facility.

No Docker engine and no cluster are needed: hadolint and shellcheck lint, the compose spec and
GitLab CI schemas (vendored in check-jsonschema) and the Kubernetes schemas (vendored in
kubernetes-validate) validate, `kubectl kustomize` renders. Beyond the schemas, each deployment
is checked against its own detectors.yaml entry, loaded by the receiver's own config loader:
ports, probes, write roots and the simulator must agree with what the receiver will do.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tango_receiver.config import ReceiverConfig, load_config
from tango_receiver.detector import detector_for
from tango_receiver.sim.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
COMPOSE_FILES = sorted((DOCKER / "compose").glob("*.yaml"))
OVERLAYS = sorted(p.parent for p in (ROOT / "deploy" / "overlays").glob("*/kustomization.yaml"))
EXAMPLES = {"eiger", "pilatus", "lambda", "zyla"}
#: the simulator subcommand that speaks each detector class's wire format
SIM_FORMATS = {
    "Eiger": "eiger",
    "DectrisStream2": "stream2",
    "Detector": "internal",
    "Pilatus": "pilatus",
    "Lambda": "lambda",
    "OrcaLightning": "orca",
    "Xspress3": "xspress3",
}
TOOL_TIMEOUT_S = 60


def tool(name: str) -> str:
    """A linter/renderer from the test extra (beside this Python first, then PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found: `pip install -e '.[test]'` installs it from PyPI")
    return found


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- Dockerfile and entry point ------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        ),
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip()
    ]


def image_env() -> dict[str, str]:
    """The ENV of the image's last stage, as the entry point sees it."""
    env: dict[str, str] = {}
    for op, args in instructions(DOCKERFILE):
        if op == "FROM":
            env = {}
        elif op == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return env


def test_dockerfile_passes_hadolint():
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    result = run(tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_dockerfile_is_multi_stage_non_root_and_copies_what_the_context_holds():
    steps = instructions(DOCKERFILE)
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2 and " AS " in stages[0].upper(), "build stage + runtime stage"
    last = len(steps) - 1 - [op for op, _ in steps][::-1].index("FROM")
    users = [args for op, args in steps[last:] if op == "USER"]
    assert users and re.fullmatch(r"(\$\{UID\}|[1-9]\d*)(:\S+)?", users[-1]), users
    arg_uid = [args for op, args in steps[last:] if op == "ARG" and args.startswith("UID=")]
    assert arg_uid and arg_uid[0] != "UID=0"
    entry = [args for op, args in steps if op == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("["), "exec form, so SIGTERM reaches the receiver"
    allowed = [
        line[1:].rstrip("/")
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for op, args in steps:
        if op != "COPY" or "--from=" in args:
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by the .dockerignore"
    env = image_env()
    assert env["TANGO_RECEIVER_WRITE_ROOTS"] == "/data"
    assert {"LOG_LEVEL", "TANGO_RECEIVER_CONFIG", "TANGO_DEVICE_PORT"} <= set(env)
    exposed = {p for op, args in steps if op == "EXPOSE" for p in args.split()}
    assert {"5000", "9100", env["TANGO_DEVICE_PORT"]} <= exposed


def test_entrypoint_passes_shellcheck():
    result = run(tool("shellcheck"), "--shell=sh", str(ENTRYPOINT))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def entrypoint(tmp_path):
    """Runs the entry point with the image's ENV and a `tango-receiver` that prints what it
    was given: its arguments, then LOG_LEVEL and TANGO_HOST."""
    stub = tmp_path / "tango-receiver"
    stub.write_text(
        '#!/bin/sh\necho "$*"\necho "LOG_LEVEL=$LOG_LEVEL TANGO_HOST=${TANGO_HOST-<unset>}"\n'
    )
    stub.chmod(0o755)

    def call(*args: str, **env: str) -> tuple[int, list[str], str]:
        full = image_env() | {"PATH": f"{tmp_path}:/usr/bin:/bin"} | env
        result = run("sh", str(ENTRYPOINT), *args, env=full)
        return result.returncode, result.stdout.splitlines(), result.stderr

    return call


def test_entrypoint_serves_the_named_receiver_without_a_database(entrypoint):
    config = image_env()["TANGO_RECEIVER_CONFIG"]
    rc, out, _ = entrypoint("eiger", TANGO_HOST="")
    assert rc == 0
    assert out == [f"serve {config} eiger --nodb --port 10000", "LOG_LEVEL=INFO TANGO_HOST=<unset>"]


def test_entrypoint_uses_tango_host_and_log_level(entrypoint):
    config = image_env()["TANGO_RECEIVER_CONFIG"]
    rc, out, _ = entrypoint(
        "--register", TANGO_RECEIVER_NAME="zyla", TANGO_HOST="db:10000", LOG_LEVEL="debug"
    )
    assert rc == 0
    assert out == [
        f"serve {config} zyla --port 10000 --register",
        "LOG_LEVEL=DEBUG TANGO_HOST=db:10000",
    ]


def test_entrypoint_passes_subcommands_through(entrypoint):
    rc, out, _ = entrypoint("simulate", "eiger", "--port", "9999", TANGO_RECEIVER_NAME="eiger")
    assert rc == 0 and out[0] == "simulate eiger --port 9999"


@pytest.mark.parametrize(
    "args, env, message",
    [
        ((), {}, "usage: IMAGE RECEIVER_NAME"),
        (("eiger",), {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL=LOUD is not"),
    ],
)
def test_entrypoint_refuses_what_it_cannot_run(entrypoint, args, env, message):
    rc, out, err = entrypoint(*args, **env)
    assert rc == 64 and out == [] and message in err


# --- compose files -------------------------------------------------------------------------------


def test_every_example_deployment_exists_for_compose_and_kubernetes():
    assert {p.stem for p in COMPOSE_FILES} == EXAMPLES
    assert {p.name for p in OVERLAYS} == EXAMPLES
    assert set(load_config(DOCKER / "detectors.yaml")) == EXAMPLES


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.stem)
def test_compose_file_matches_the_compose_spec(path):
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_catches_a_broken_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  receiver:\n    image: x\n    comand: [eiger]\n")  # typo
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert result.returncode != 0 and "comand" in result.stdout


def published(ports: list[str]) -> dict[int, int]:
    """container port -> host port, from "HOST_IP:HOST:CONTAINER" entries."""
    out = {}
    for entry in ports:
        *_, host, container = str(entry).split(":")
        out[int(container)] = int(host)
    return out


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.stem)
def test_compose_deployment_agrees_with_its_detectors_entry(path):
    compose = load_yaml(path)
    receiver, simulator = compose["services"]["receiver"], compose["services"]["simulator"]
    configs = load_config(DOCKER / "detectors.yaml")
    name = receiver["command"][0]
    assert name == path.stem and name in configs
    entry: ReceiverConfig = configs[name]
    for service in (receiver, simulator):
        build = service["build"]
        assert (path.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    env = image_env()
    mounts = dict(v.split(":")[:2][::-1] for v in receiver["volumes"])
    assert (
        path.parent / mounts[env["TANGO_RECEIVER_CONFIG"]]
    ).resolve() == DOCKER / "detectors.yaml"
    assert mounts["/data"] in compose["volumes"], "a named volume for the data"
    assert Path("/data") in entry.write_roots
    assert entry.api_host == "0.0.0.0", "the REST sidecar must listen beyond the container"
    ports = published(receiver["ports"])
    assert {entry.api_port, entry.data_port, int(env["TANGO_DEVICE_PORT"])} <= set(ports)
    assert f"127.0.0.1:{entry.api_port}/status" in " ".join(receiver["healthcheck"]["test"])
    # the simulator plays this detector, on the receiver's loopback: same wire format, frame
    # shape and type, and every socket the receiver connects to (a Lambda's modules: port+m)
    command = simulator["command"]
    assert simulator["network_mode"] == "service:receiver"
    assert simulator["depends_on"]["receiver"]["condition"] == "service_healthy"
    assert command[0] == "simulate" and flag(command, "--filename").startswith("/data/")
    what = command[1]
    if what in PROFILES:
        fmt, shape, dtype = PROFILES[what].format, PROFILES[what].shape, PROFILES[what].dtype
    else:
        fmt, dtype = what, flag(command, "--dtype")
        shape = tuple(int(v) for v in flag(command, "--shape").split("x"))
    assert fmt == SIM_FORMATS[entry.detector_class]
    assert (tuple(entry.shape), entry.dtype) == (shape, dtype)
    port = int(flag(command, "--port"))
    assert detector_for(entry).endpoints() == [
        f"tcp://127.0.0.1:{port + m}" for m in range(len(entry.upstream))
    ]


def test_compose_files_publish_distinct_host_ports():
    seen: dict[int, str] = {}
    for path in COMPOSE_FILES:
        for host in published(load_yaml(path)["services"]["receiver"]["ports"]).values():
            assert host not in seen, f"{path.name} and {seen[host]} both publish {host}"
            seen[host] = path.name


# --- Kubernetes ----------------------------------------------------------------------------------


@cache
def render(overlay: Path) -> tuple[dict, ...]:
    result = run(tool("kubectl"), "kustomize", str(overlay))
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def one(docs: tuple[dict, ...], kind: str, name_part: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and name_part in d["metadata"]["name"]]
    assert len(found) == 1, f"{kind} {name_part}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def validator():
    return pytest.importorskip(
        "kubernetes_validate", reason="`pip install -e '.[test]'` installs kubernetes-validate"
    )


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubernetes_manifests_validate(overlay):
    docs = render(overlay)
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Service",
    ]
    kv = validator()
    for doc in docs:
        try:
            kv.validate(doc, kv.latest_version(), strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{overlay.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_kubernetes_validation_catches_a_broken_manifest():
    deployment = dict(one(render(OVERLAYS[0]), "Deployment"))
    deployment["spec"] = dict(deployment["spec"], replicas="one")
    kv = validator()
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubernetes_receiver_agrees_with_its_configmap(overlay, tmp_path):
    docs = render(overlay)
    deployment, service = one(docs, "Deployment"), one(docs, "Service")
    config_map, env_map = one(docs, "ConfigMap", "-config"), one(docs, "ConfigMap", "-env")
    pvc = one(docs, "PersistentVolumeClaim")
    env = env_map["data"]
    (tmp_path / "detectors.yaml").write_text(config_map["data"]["detectors.yaml"])
    configs = load_config(tmp_path / "detectors.yaml")
    assert env["TANGO_RECEIVER_NAME"] == overlay.name and overlay.name in configs
    entry = configs[overlay.name]
    detector_for(entry)  # a known class, and options that class takes
    assert env["LOG_LEVEL"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", (
        "a second pod on the same detector would take half of its frames"
    )
    assert re.fullmatch(r"\S+:(?!latest$)[\w.-]+", container["image"]), container["image"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert [r["configMapRef"]["name"] for r in container["envFrom"]] == [
        env_map["metadata"]["name"]
    ]

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["api"] == entry.api_port and ports["secondary"] == entry.data_port
    assert ports["tango"] == int(image_env()["TANGO_DEVICE_PORT"])
    assert entry.api_host == "0.0.0.0", "the probes reach the sidecar from outside the pod"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "api"}, probe
    requests = container["resources"]["requests"]
    assert cpu(requests["cpu"]) >= entry.nworkers + 1, "decoder workers + the engine thread"
    assert "memory" in requests and "memory" in container["resources"]["limits"]

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = Path(image_env()["TANGO_RECEIVER_CONFIG"])
    assert mounts["config"] == str(config_path.parent)
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_path.name in config_map["data"]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert Path(mounts["data"]) in entry.write_roots
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts.values(), "the -nodb device server writes its file database"

    labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)


def test_overlays_deploy_distinct_objects_into_their_namespace():
    names = [
        (d["metadata"].get("namespace"), d["kind"], d["metadata"]["name"])
        for overlay in OVERLAYS
        for d in render(overlay)
    ]
    assert len(names) == len(set(names))
    assert all(namespace for namespace, _, _ in names)


# --- release job ---------------------------------------------------------------------------------


def test_gitlab_ci_matches_its_schema_and_builds_the_image_on_a_release_tag():
    path = ROOT / ".gitlab-ci.yml"
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    ci = load_yaml(path)
    assert ci["test"] == {
        "stage": "test",
        "image": "python:3.11-bookworm",
        "script": ["bash .ci/run"],
    }
    (release,) = [
        job
        for name, job in ci.items()
        if isinstance(job, dict) and job.get("rules") == [{"if": "$CI_COMMIT_TAG"}]
    ]
    assert ci["stages"].index(release["stage"]) > ci["stages"].index("test")
    script = " ".join(release["script"])
    assert re.search(
        r"docker build .*--file docker/Dockerfile .*"
        r'--tag "\$CI_REGISTRY_IMAGE:\$CI_COMMIT_TAG" \.$',
        release["script"][1],
    )
    assert 'docker push "$CI_REGISTRY_IMAGE:$CI_COMMIT_TAG"' in script
    assert "--password-stdin" in script, "the registry password never on a command line"
