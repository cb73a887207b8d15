"""infra/docker-compose.yml: valid for the compose client at hand, and wired as documented.

`config` parses, validates and interpolates the file without a Docker engine. Whichever
client works is used: `docker compose` (v2) or `docker-compose` (1.29, which `make test`
installs from Debian when neither is there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
SECRETS = {
    "UNLEARN_OPS_REQUEST_SIGNING_KEY": "a" * 64,
    "UNLEARN_OPS_ID_HASH_KEY": "b" * 64,
}
SERVICES = {
    "postgres",
    "postgres-init",
    "minio",
    "minio-setup",
    "mlflow",
    "prefect-server",
    "worker",
}


def _works(argv: list[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _compose_client() -> list[str] | None:
    """argv prefix of a working compose client, v2 first."""
    if _works(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if _works(["docker-compose", "version"]):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    """The client's argv prefix; skips without one, except in CI (CI=true), where it fails."""
    client = _compose_client()
    if client is None:
        reason = (
            "no compose client: neither `docker compose` nor `docker-compose` works here "
            "(`make test` installs Debian's docker-compose as root or through sudo -n)"
        )
        if os.environ.get("CI", "").lower() in ("true", "1"):  # in CI it must run
            pytest.fail(f"{reason}; CI=true, so the compose test may not skip", pytrace=False)
        pytest.skip(reason)
    return client


def _run_config(
    compose: list[str], tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    # An empty --env-file: a developer's infra/.env must not fill in what the test removes.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARN_OPS_")}
    clean.update(env)
    return subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )


def _load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_config_accepts_the_file(compose: list[str], tmp_path: Path) -> None:
    result = _run_config(compose, tmp_path, SECRETS, "-q")
    assert result.returncode == 0, result.stderr


def test_compose_config_interpolates_the_secrets(compose: list[str], tmp_path: Path) -> None:
    result = _run_config(compose, tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    worker_env = resolved["services"]["worker"]["environment"]
    for key, value in SECRETS.items():
        assert worker_env[key] == value
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker_env["UNLEARN_OPS_TRACKING_URI"] == "http://mlflow:5000"


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_config_fails_without_a_secret(
    compose: list[str], tmp_path: Path, missing: str
) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = _run_config(compose, tmp_path, env, "-q")
    assert result.returncode != 0
    # The message of `${VAR:?VAR is required: ...}`, which both clients print.
    assert f"{missing} is required" in result.stderr, result.stderr


def test_the_services_and_their_wiring() -> None:
    data = _load()
    services = data["services"]
    assert set(services) == SERVICES

    worker = services["worker"]
    assert " ".join(worker["command"]).startswith("unlearn-ops serve --workspace /workspace")
    assert worker["build"]["context"] == ".."
    context = (COMPOSE_FILE.parent / worker["build"]["context"]).resolve()
    assert context == ROOT
    assert context / worker["build"]["dockerfile"] == DOCKERFILE
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["UNLEARN_OPS_TRACKING_URI"] == "http://mlflow:5000"
    assert "workspace:/workspace" in worker["volumes"]
    assert "workspace" in data["volumes"]
    assert worker["depends_on"] == {
        "mlflow": {"condition": "service_healthy"},
        "prefect-server": {"condition": "service_healthy"},
        "minio-setup": {"condition": "service_completed_successfully"},
    }

    mlflow = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql://" in mlflow
    assert "--artifacts-destination s3://unlearn-ops/mlartifacts" in mlflow
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"

    prefect = services["prefect-server"]
    assert prefect["command"][:3] == ["prefect", "server", "start"]
    assert prefect["command"][3:5] == ["--host", "0.0.0.0"]  # noqa: S104 - inside its container
    assert prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://"
    )
    assert prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].endswith("/prefect")

    for name in ("postgres", "minio", "mlflow", "prefect-server"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    assert "mc mb" in " ".join(services["minio-setup"]["command"])
    assert "CREATE DATABASE prefect" in " ".join(services["postgres-init"]["command"])


def test_the_dockerfile_installs_the_project_with_the_constraints() -> None:
    text = DOCKERFILE.read_text()
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [
        "FROM python:3.11-slim"
    ]
    assert "-c constraints.txt '.[s3]'" in text
    assert 'CMD ["unlearn-ops", "serve", "--workspace", "/workspace/ws"]' in text
    for copied in ("pyproject.toml", "constraints.txt", "README.md", "unlearn_ops", "pipelines"):
        assert copied in text
        assert (ROOT / copied).exists()
