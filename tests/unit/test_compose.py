"""docker-compose.yml against the local launcher (tools/stack.py).

There is no Docker engine on these machines, so the file is parsed and held to
what the launcher does: the same Python processes (`PROCESSES`, instance names
included), each with the settings the launcher gives it; every variable a
setting; the broker on the config the set-up step renders, on its own volumes;
health checks; one image. What the file runs that can run here is run (the
PostgreSQL entry point, the broker set-up command in test_broker_tls.py).

Settings compared: the keys of `Stack.process_settings`, which are all settings.
Left out by construction, with the reason: `PROCESS_ENVIRONMENT`
(PYTHONUNBUFFERED) is not a setting but how a process runs; the image sets it
(Dockerfile ENV), checked here. The launcher's values are host facts (free
ports, a temporary folder, generated passwords); compose pins its own (the
broker's service name, /data, the secrets from `.env`), so keys are compared,
and the values that must agree inside the file (instance names, the metrics
port and its health check, the data folder and the media volume) are checked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from core.config import Settings
from tools.broker import command_line
from tools.stack import PROCESS_ENVIRONMENT, PROCESSES, ProcessKind, Stack, StackConfig
from tools.ws_gateway import gateway_settings

PROJECT_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_DIR / "docker-compose.yml"
SETTINGS = {name.upper(): field for name, field in Settings.model_fields.items()}
# `${NAME}`, `${NAME:-default}`, `${NAME:?error}`; `$$` is a literal dollar.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def services(compose: dict[str, Any]) -> dict[str, Service]:
    found: dict[str, Service] = compose["services"]
    return found


def project_image(compose: dict[str, Any]) -> str:
    image: str = services(compose)["api"]["image"]
    return image


def python_services(compose: dict[str, Any]) -> dict[str, Service]:
    """The services that run the project's image."""
    image = project_image(compose)
    return {name: s for name, s in services(compose).items() if s.get("image") == image}


def is_one_shot(service: Service) -> bool:
    return service.get("restart") == "no"


def module_of(service: Service) -> str | None:
    """The module of `python -m MODULE`, or None for another command."""
    command = service.get("command")
    if isinstance(command, list) and command[:2] == ["python", "-m"] and len(command) == 3:
        return str(command[2])
    return None


def environment(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def differences(compose: dict[str, Any], kinds: Sequence[ProcessKind]) -> list[str]:
    """What compose's long-running Python services and the launcher's processes
    (of `kinds`) disagree on; empty when they run the same."""
    running = {
        name: module_of(s) for name, s in python_services(compose).items() if not is_one_shot(s)
    }
    problems = [
        f"compose service {name!r} runs {s['command']!r}, not `python -m MODULE`"
        for name, s in python_services(compose).items()
        if not is_one_shot(s) and module_of(s) is None
    ]
    by_module = Counter(module for module in running.values() if module)
    launcher_modules = {kind.module for kind in kinds}
    problems += [
        f"compose runs `python -m {module}`, which the launcher does not run"
        for module in sorted(set(by_module) - launcher_modules)
    ]
    config = StackConfig(data_dir=Path("/unused"), database_url="sqlite://")
    for kind in kinds:
        if by_module[kind.module] == 0:
            problems.append(
                f"the launcher runs {kind.name} (`python -m {kind.module}`); "
                f"docker-compose.yml has no service for it: add `{kind.name}-1` "
                "(or `api` for the API) beside the others"
            )
        elif kind.instances_field is None and by_module[kind.module] != 1:
            problems.append(f"{kind.name} runs as exactly one process; compose runs more")
        elif kind.instances_field is not None:
            config.set_instances(kind, by_module[kind.module])
    planned = {process.name: process.kind.module for process in Stack(config).plan(kinds)}
    for name, module in sorted(planned.items()):
        if by_module[module] and running.get(name) != module:
            problems.append(
                f"the launcher names this process {name!r} (`python -m {module}`): "
                "name the compose service the same, so its INSTANCE is the launcher's"
            )
    problems += [
        f"compose service {name!r} is not one of the launcher's processes"
        for name, module in sorted(running.items())
        if module in launcher_modules and name not in planned
    ]
    return problems


def launcher_for(compose: dict[str, Any]) -> Stack:
    """The launcher configured with compose's instance counts."""
    modules = Counter(module_of(s) for s in python_services(compose).values() if not is_one_shot(s))
    config = StackConfig(data_dir=Path("/unused"), database_url="sqlite://")
    for kind in PROCESSES:
        if kind.instances_field is not None:
            config.set_instances(kind, modules[kind.module])
    return Stack(config)


def interpolations(compose_text: str) -> list[tuple[str, str, str]]:
    """(name, operator, argument) of every `${...}` in the file."""
    return [
        (m.group(1), m.group(2) or "", m.group(3) or "")
        for m in INTERPOLATION.finditer(compose_text.replace("$$", ""))
    ]


def dockerfile_env() -> dict[str, str]:
    text = (PROJECT_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for token in shlex.split(line[4:]):
                key, _, value = token.partition("=")
                found[key] = value
    return found


# --- the same processes ------------------------------------------------------------------


def test_compose_runs_the_launchers_processes_and_no_others(compose: dict[str, Any]) -> None:
    problems = differences(compose, PROCESSES)
    assert not problems, "\n".join(problems)


def test_a_process_added_to_the_launcher_and_not_to_compose_is_named(
    compose: dict[str, Any],
) -> None:
    audit = ProcessKind("audit", "services.audit", "persistence_instances")
    problems = differences(compose, [*PROCESSES, audit])
    assert len(problems) == 1
    assert "the launcher runs audit (`python -m services.audit`)" in problems[0]


def test_instances_have_distinct_stable_names(compose: dict[str, Any]) -> None:
    stack = launcher_for(compose)
    for process in stack.plan():
        service = services(compose)[process.name]
        assert environment(service)["INSTANCE"] == process.instance, process.name
    single = [kind for kind in PROCESSES if kind.instances_field is None]
    for kind in single:
        assert stack.config.instances_of(kind) == 1


# --- the same settings -------------------------------------------------------------------


def test_each_process_gets_the_settings_the_launcher_gives_it(compose: dict[str, Any]) -> None:
    stack = launcher_for(compose)
    for process in stack.plan():
        given = environment(services(compose)[process.name])
        missing = sorted(set(stack.process_settings(process)) - set(given))
        assert not missing, f"compose gives {process.name} no {missing} (the launcher does)"


def test_the_launcher_gives_each_service_process_its_own_metrics_port(
    compose: dict[str, Any],
) -> None:
    stack = launcher_for(compose)
    given = {process.name: stack.process_settings(process) for process in stack.plan()}
    assert "METRICS_PORT" not in given.pop("api")  # the API serves /metrics on API_PORT
    ports = {name: settings["METRICS_PORT"] for name, settings in given.items()}
    assert len(set(ports.values())) == len(ports)
    assert {name: str(port) for name, port in stack.metrics_ports.items()} == ports
    again = stack.process_settings(stack.plan()[1])
    assert again["METRICS_PORT"] == ports[stack.plan()[1].name]  # a restart keeps its port


def test_what_is_not_a_setting_the_image_sets() -> None:
    image_env = dockerfile_env()
    for key, value in PROCESS_ENVIRONMENT.items():
        assert key not in SETTINGS
        assert image_env.get(key) == value, f"the Dockerfile must set {key}={value}"


def test_every_variable_is_a_setting_documented_in_the_example(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        unknown = sorted(set(environment(service)) - set(SETTINGS))
        assert not unknown, f"{name} sets {unknown}, which are not settings (core/config.py)"
    example = (PROJECT_DIR / ".env.example").read_text()
    for variable, operator, argument in interpolations(COMPOSE_FILE.read_text()):
        assert variable in SETTINGS, f"${{{variable}}} is not a setting (core/config.py)"
        assert re.search(rf"^#?\s*{variable}=", example, re.M), f"{variable} not in .env.example"
        if operator == ":-":
            default = SETTINGS[variable].default
            assert argument == ("" if default is None else str(default)), (
                f"${{{variable}:-{argument}}}: the setting's default is {default!r}"
            )


def test_values_that_must_agree_inside_the_file(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in python_services(compose).items():
        env = environment(service)
        assert env["MQTT_HOST"] in all_services, f"{name}: MQTT_HOST names no service"
        assert env["ENVIRONMENT"] == "production", name
        assert env["LOG_FORMAT"] == "json", name
        if "METRICS_PORT" in env:
            check = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{env['METRICS_PORT']}/metrics" in check, name
    api = all_services["api"]
    media = PurePosixPath(environment(api)["DATA_DIR"]) / "media"
    assert f"media:{media}" in api["volumes"]
    assert "media" in compose["volumes"]


# --- the broker ------------------------------------------------------------------------


def test_the_broker_runs_the_rendered_config_on_its_volumes(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    setup, broker = all_services["broker-setup"], all_services["mosquitto"]
    assert is_one_shot(setup)
    assert setup["command"][:4] == ["python", "-m", "tools.broker", "prepare"]
    args = command_line().parse_args(setup["command"][3:])
    assert broker["image"].startswith("eclipse-mosquitto:2")
    assert broker["command"] == ["mosquitto", "-c", str(args.config)]
    assert broker["depends_on"]["broker-setup"]["condition"] == "service_completed_successfully"
    # The official image's plugin and user.
    assert (args.plugin, args.user, args.bind) == (
        "/usr/lib/mosquitto_dynamic_security.so",
        "mosquitto",
        "0.0.0.0",
    )

    def volume_at(service: Service, folder: Path) -> tuple[str, str]:
        for mount in service["volumes"]:
            source, target, *mode = mount.split(":")
            if PurePosixPath(target) == PurePosixPath(folder):
                return source, (mode or ["rw"])[0]
        raise AssertionError(f"nothing mounted at {folder}")

    config_volume, _ = volume_at(setup, args.config.parent)
    data_volume, _ = volume_at(setup, args.data_dir)
    assert volume_at(broker, args.config.parent) == (config_volume, "ro")
    assert volume_at(broker, args.data_dir) == (data_volume, "rw")
    assert {config_volume, data_volume} <= set(compose["volumes"])
    assert config_volume != data_volume


def test_the_set_up_step_gets_the_settings_it_renders(compose: dict[str, Any]) -> None:
    """Ports, accounts, TLS and the connection cap: what `prepare` reads."""
    env = environment(services(compose)["broker-setup"])
    wanted = {
        "MQTT_TCP_PORT",
        "MQTT_WS_PORT",
        "MQTT_ADMIN_USERNAME",
        "MQTT_ADMIN_PASSWORD",
        "MQTT_SERVICE_USERNAME",
        "MQTT_SERVICE_PASSWORD",
        "MQTT_MAX_CONNECTIONS",
        *(name for name in SETTINGS if name.startswith("MQTT_TLS_")),
    }
    assert wanted <= set(env)


def test_the_websocket_gateway_runs_as_the_launcher_runs_it(compose: dict[str, Any]) -> None:
    """Its own image (Node), the settings the launcher gives it, the broker's
    TCP listener behind it, and the port the API tells devices about."""
    all_services = services(compose)
    gateway = all_services["ws-gateway"]
    env = environment(gateway)
    assert set(env) == set(gateway_settings(9002, 1884, 1))
    assert env["MQTT_HOST"] in all_services and env["MQTT_WS_GATEWAY_BIND"] == "0.0.0.0"
    assert env["MQTT_WS_GATEWAY_PORT"] == environment(all_services["api"])["MQTT_WS_GATEWAY_PORT"]
    assert env["MQTT_TCP_PORT"] == environment(all_services["mosquitto"])["MQTT_TCP_PORT"]
    assert gateway["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    context = PROJECT_DIR / gateway["build"]
    dockerfile = (context / "Dockerfile").read_text()
    assert 'CMD ["node", "gateway.mjs"]' in dockerfile and (context / "gateway.mjs").is_file()
    assert "npm ci" in dockerfile and (context / "package-lock.json").is_file()
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])


# --- health, images, order ---------------------------------------------------------------


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if not is_one_shot(service):
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "/healthz" in " ".join(services(compose)["api"]["healthcheck"]["test"])


def test_one_project_image_for_every_python_process(compose: dict[str, Any]) -> None:
    runs_python = {
        name: s
        for name, s in services(compose).items()
        if isinstance(s.get("command"), list) and s["command"][0] in {"python", "alembic"}
    }
    assert runs_python.keys() == python_services(compose).keys()
    assert {s.get("build") for s in runs_python.values()} == {"."}
    assert (PROJECT_DIR / "Dockerfile").is_file()
    user = [line.split()[1] for line in (PROJECT_DIR / "Dockerfile").read_text().splitlines()
            if line.startswith("USER ")]  # fmt: skip
    assert user and user[-1] not in {"root", "0"}


def test_set_up_steps_run_before_what_needs_them(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    migrate = all_services["migrate"]
    assert is_one_shot(migrate) and migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in python_services(compose).items():
        if is_one_shot(service):
            continue
        needs = service["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["mosquitto"]["condition"] == "service_healthy", name


# --- the PostgreSQL entry point ------------------------------------------------------------


def run_postgres_entry(
    tmp_path: Path, database_url: str | None
) -> subprocess.CompletedProcess[str]:
    """docker/postgres-from-url.sh, with the image's entry point replaced by one
    that prints what it was given."""
    fake = tmp_path / "docker-entrypoint.sh"
    fake.write_text('#!/bin/sh\necho "$POSTGRES_USER|$POSTGRES_PASSWORD|$POSTGRES_DB|$*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        ["sh", str(PROJECT_DIR / "docker" / "postgres-from-url.sh"), "postgres"],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_the_database_takes_its_user_password_and_name_from_database_url(
    tmp_path: Path, compose: dict[str, Any]
) -> None:
    postgres = services(compose)["postgres"]
    assert postgres["entrypoint"] == ["sh", "/docker/postgres-from-url.sh"]
    assert "./docker/postgres-from-url.sh:/docker/postgres-from-url.sh:ro" in postgres["volumes"]
    url = "postgresql://chat:9f3kQ2@postgres:5432/chat?sslmode=disable"
    done = run_postgres_entry(tmp_path, url)
    assert (done.returncode, done.stdout.strip()) == (0, "chat|9f3kQ2|chat|postgres")


@pytest.mark.parametrize(
    "url",
    [
        None,
        "sqlite:///data/chat.db",
        "postgresql://postgres/chat",
        "postgresql://chat@postgres/chat",
        "postgresql://chat:secret@postgres",
        "postgresql://chat:p%40ss@postgres/chat",
    ],
)
def test_a_database_url_it_cannot_use_stops_the_database(tmp_path: Path, url: str | None) -> None:
    done = run_postgres_entry(tmp_path, url)
    assert done.returncode != 0 and done.stdout == "" and "DATABASE_URL" in done.stderr
