"""The deployment files (Dockerfile, compose.yaml, systemd units, gunicorn config) checked without
a container engine: hadolint, the compose-spec schema, systemd-analyze, and what they promise."""

from __future__ import annotations

import configparser
import inspect
import json
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from hatchling.builders.wheel import WheelBuilder

from mailer.backends.smtp import SMTPBackend
from mailer.config import load_settings
from mailer.scheduler import TICK_BUDGET
from tests.factories import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
UNITS = ROOT / "deploy" / "systemd"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
MAILER_NAME = re.compile(r"\bMAILER_[A-Z0-9_]+\b")


# --- reading the files --------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def compose() -> dict:
    """compose.yaml as compose reads it (YAML merge keys resolved)."""
    return yaml.safe_load(COMPOSE.read_text())


def unit(name: str) -> configparser.ConfigParser:
    """A systemd unit file as sections of keys."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def documented_variables() -> set[str]:
    """The MAILER_* names of the README's configuration table."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `MAILER_")]
    return {name for row in rows for name in MAILER_NAME.findall(row.split("|")[1])}


def seconds(value: str) -> float:
    """A compose duration such as 200s, 1m30s or 40s."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert parts and value, f"not a duration in m and s: {value!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def gunicorn_settings() -> dict[str, object]:
    """The gunicorn config file's module-level settings."""
    namespace: dict[str, object] = {"__file__": str(GUNICORN_CONF)}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), namespace)
    return namespace


def worker_graceful_stop() -> float:
    """The longest a worker's SIGTERM stop can take with the default settings.

    The tick stops claiming after TICK_BUDGET; a batch claimed just before goes out within half a
    lease (the batch is sized for that); its last message may wait one SMTP timeout.
    """
    settings = load_settings(
        {"MAILER_ENV": "development", "MAILER_SECRET_KEY": "k" * 40}, ROOT / "instance"
    )
    smtp_timeout = inspect.signature(SMTPBackend).parameters["timeout"].default
    return TICK_BUDGET + settings["MAILER_LEASE_SECONDS"] / 2 + smtp_timeout


# --- Dockerfile ---------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install flask\n")
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest
    assert "DL3003" in result.stdout  # cd instead of WORKDIR


def test_image_installs_only_the_wheel_and_runs_unprivileged() -> None:
    build, runtime = dockerfile_stages()
    assert " AS " in build[0][1].upper(), "the first stage is a named builder"
    assert any(i == "RUN" and "pip wheel" in a for i, a in build)
    copies = [a for i, a in runtime if i == "COPY"]
    # From the build context the runtime takes the gunicorn config and nothing else.
    assert [c for c in copies if not c.startswith("--from=")] == [
        "deploy/gunicorn.conf.py /etc/mailer/gunicorn.conf.py"
    ]
    assert any(i == "RUN" and re.search(r"pip install .*\.whl", a) for i, a in runtime)
    (user,) = [a for i, a in runtime if i == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    (cmd,) = [json.loads(a) for i, a in runtime if i == "CMD"]
    assert cmd[:3] == ["gunicorn", "--config", "/etc/mailer/gunicorn.conf.py"]


def test_wheel_built_the_dockerfiles_way_carries_templates_and_migrations(tmp_path: Path) -> None:
    """The builder stage sees only what it COPYs (and .dockerignore lets through)."""
    build, runtime = dockerfile_stages()
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    context = tmp_path / "src"
    context.mkdir()
    sources = [a.split()[:-1] for i, a in build if i == "COPY"]
    for source in (path.rstrip("/") for group in sources for path in group):
        assert source in allowed, f"{source} is COPYed but .dockerignore keeps it out"
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, context / source)
    for path in (a.split()[0] for i, a in runtime if i == "COPY" and "--from" not in a):
        assert path in allowed
    (wheel,) = WheelBuilder(str(context)).build(directory=str(tmp_path), versions=["standard"])
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "mailer/templates/base.html",
        "mailer/templates/static/style.css",
        "mailer/migrations/env.py",
        "mailer/migrations/alembic.ini",
        "mailer/data/films.json",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert any(n.startswith("mailer/migrations/versions/") for n in names)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gunicorn_config_serves_and_the_image_healthcheck_sees_it(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    """gunicorn with deploy/gunicorn.conf.py serves the app; the HEALTHCHECK command passes on it
    and fails once it is gone."""
    (_, runtime) = dockerfile_stages()
    (check,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[0] == "python"
    assert "http://127.0.0.1:8000/healthz" in command[-1]
    port = free_port()
    probe = [sys.executable, *command[1:-1], command[-1].replace(":8000/", f":{port}/")]
    env = {**test_env, "WEB_CONCURRENCY": "1", "PATH": f"{BIN}:/usr/bin:/bin"}
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,  # the app must come from the package, not from wsgi.py in the checkout
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: subprocess.run(probe, capture_output=True).returncode == 0,
            30,
            "gunicorn to answer /healthz",
        )
    finally:
        server.terminate()
        server.wait(timeout=40)
        log.close()
    assert server.returncode == 0, (tmp_path / "gunicorn.log").read_text()
    assert subprocess.run(probe, capture_output=True).returncode != 0


def test_gunicorn_config_believes_no_forwarded_headers_itself() -> None:
    settings = gunicorn_settings()
    assert settings["forwarded_allow_ips"] == ""
    assert settings["secure_scheme_headers"] == {}
    assert settings["wsgi_app"] == "mailer:create_app()"


def test_gunicorn_config_refuses_a_worker_count_below_one(tmp_path: Path) -> None:
    """gunicorn itself reads WEB_CONCURRENCY as a number first; the file refuses 0 in one line."""
    result = subprocess.run(
        [str(BIN / "gunicorn"), "--config", str(GUNICORN_CONF), "--check-config"],
        env={"WEB_CONCURRENCY": "0", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "WEB_CONCURRENCY must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


# --- compose.yaml -------------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate a compose file against the compose-spec schema vendored by check-jsonschema."""
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def test_compose_file_follows_the_compose_spec(tmp_path: Path) -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    typo = tmp_path / "compose.yaml"
    typo.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:"))
    assert check_compose(typo).returncode != 0, "the schema must catch an unknown key"


def test_compose_runs_the_whole_service() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker"} <= set(services)
    assert services["migrate"]["command"] == ["mailer", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["worker"]["command"] == ["mailer", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    app = services["web"]
    assert app["env_file"] == ".env"
    assert app["environment"]["MAILER_RATELIMIT_STORAGE_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in app["environment"]["MAILER_DATABASE_URL"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "instance:/var/lib/mailer" in app["volumes"]


def test_compose_images_are_pinned_and_services_have_healthchecks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.match(r"\d+(\.\d+)*", tag), f"{name}: {image} has no version"
    for name in ("postgres", "redis", "web"):
        check = services[name]["healthcheck"]
        assert not check.get("disable") and check["test"], f"{name} has no healthcheck"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_every_mailer_variable_is_documented_and_the_example_names_them_all() -> None:
    documented = documented_variables()
    assert "MAILER_SECRET_KEY" in documented and "MAILER_TRUSTED_PROXIES" in documented
    for path in (COMPOSE, ENV_EXAMPLE, DOCKERFILE, GUNICORN_CONF, *UNITS.iterdir()):
        unknown = set(MAILER_NAME.findall(path.read_text())) - documented
        assert not unknown, f"{path.name} uses undocumented {sorted(unknown)}"
    example = ENV_EXAMPLE.read_text()
    missing = {name for name in documented if name not in example}
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_env_example_leaves_the_secrets_to_the_user() -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["MAILER_SECRET_KEY"] == ""
    assert values["POSTGRES_PASSWORD"] == ""
    assert values["MAILER_ENV"] == "production"
    compose_text = COMPOSE.read_text()
    assert "${MAILER_SECRET_KEY:?" in compose_text, "compose must refuse an unset key"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_env_example_reads_the_same_in_a_shell(tmp_path: Path) -> None:
    """`set -a; . FILE` (the docs' way outside containers) keeps values with spaces and <> whole,
    and without their quotes, as compose and systemd read them."""
    filled = tmp_path / "mailer.env"
    filled.write_text(ENV_EXAMPLE.read_text().replace("MAILER_SECRET_KEY=", "MAILER_SECRET_KEY=k"))
    result = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; set -a; . "{filled}"; env -0'],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    env = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    assert env["MAILER_FROM"] == "Documentaries <newsletter@example.org>"
    assert env["MAILER_POSTAL_ADDRESS"] == "Documentaries Ltd, 1 Film Street, London N1 1AA"
    assert env["MAILER_SECRET_KEY"] == "k"


# --- systemd ------------------------------------------------------------------------------------


def verify_units(units: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on copies whose ExecStart points at this checkout's programs.

    The units run /opt/mailer/bin/…, which does not exist here; verify insists on executables,
    and a template is only checked as an instance, so mailer-worker@.service is verified as @1.
    """
    copies = []
    for path in units:
        name = path.name.replace("@.service", "@1.service")
        copy = tmp_path / name
        copy.write_text(path.read_text().replace("/opt/mailer/bin/", f"{BIN}/"))
        copies.append(copy)
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, copies)], capture_output=True, text=True
    )


def test_systemd_units_verify(tmp_path: Path) -> None:
    result = verify_units(sorted(UNITS.glob("*.service")), tmp_path)
    assert len(list(UNITS.glob("*.service"))) == 2
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_verify_would_catch_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "in" / "mailer-web.service"
    broken.parent.mkdir()
    broken.write_text(
        (UNITS / "mailer-web.service").read_text().replace("TimeoutStopSec", "TimeoutStopSecs")
    )
    out = tmp_path / "out"
    out.mkdir()
    assert "TimeoutStopSecs" in verify_units([broken], out).stderr


@pytest.mark.parametrize("name", ["mailer-web.service", "mailer-worker@.service"])
def test_systemd_units_restart_and_stop_gracefully(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] == "mailer"
    assert service["EnvironmentFile"] == "/etc/mailer/mailer.env"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"


def test_stop_timeouts_match_the_graceful_stops() -> None:
    """systemd and compose wait as long as a graceful stop can take, and the same."""
    services = compose()["services"]
    worker_stop = float(unit("mailer-worker@.service")["Service"]["TimeoutStopSec"])
    assert worker_stop >= worker_graceful_stop()
    assert seconds(services["worker"]["stop_grace_period"]) == worker_stop
    web_stop = float(unit("mailer-web.service")["Service"]["TimeoutStopSec"])
    graceful = gunicorn_settings()["graceful_timeout"]
    assert isinstance(graceful, int)
    assert web_stop > graceful
    assert seconds(services["web"]["stop_grace_period"]) == web_stop
