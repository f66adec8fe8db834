"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every command
names a real entry point, every variable a real setting."""

from __future__ import annotations

import importlib
import re
from typing import Any

import click
import pytest
import yaml

from newsletter.cli import main
from newsletter.config import Settings
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if "build" in s}
LONG_RUNNING = {name for name, s in SERVICES.items() if name != "migrate"}


def setting_names() -> set[str]:
    return {(f.alias or name).upper() for name, f in Settings.model_fields.items()}


def option_value(command: list[str], *names: str) -> str:
    for i, arg in enumerate(command):
        if arg in names:
            return command[i + 1]
    raise AssertionError(f"{command} has none of {names}")


def test_the_expected_services_exist() -> None:
    assert {"postgres", "redis", "migrate", "web", "worker", "worker-mail", "beat"} <= set(
        SERVICES)
    assert all("command" in s for s in OURS.values())


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_command_names_a_real_entry_point(name: str) -> None:
    from workers.app import QUEUES, app

    command: list[str] = OURS[name]["command"]
    program = command[0]
    if program == "newsletter":
        group: click.Command = main
        for word in command[1:]:
            if word.startswith("-"):
                break
            assert isinstance(group, click.Group), f"{command}: {word} after a command"
            found = group.get_command(click.Context(group), word)
            assert found is not None, f"`newsletter {word}` does not exist"
            group = found
        assert not isinstance(group, click.Group), f"{command} names a group, not a command"
    elif program == "celery":
        target = option_value(command, "-A", "--app")
        assert importlib.import_module(target).app is app
        action = command[command.index(target) + 1]
        assert action in {"worker", "beat"}
        if action == "worker":
            queues = option_value(command, "-Q", "--queues").split(",")
            routed = {route["queue"] for route in app.conf.task_routes.values()}
            assert set(queues) <= routed | {app.conf.task_default_queue}
            assert set(queues) <= set(QUEUES)
    elif program == "gunicorn":
        module, _, call = command[-1].partition(":")
        factory = getattr(importlib.import_module(module), call.removesuffix("()"))
        assert callable(factory)
        if "--logger-class" in command:
            path = option_value(command, "--logger-class")
            owner, _, name = path.rpartition(".")
            assert getattr(importlib.import_module(owner), name)
    else:
        pytest.fail(f"{name}: unknown program {program}")


def test_the_workers_between_them_consume_every_queue() -> None:
    from workers.app import QUEUES

    consumed: set[str] = set()
    for service in OURS.values():
        command = service["command"]
        if command[:4] == ["celery", "-A", "workers.app", "worker"]:
            consumed |= set(option_value(command, "-Q", "--queues").split(","))
    assert consumed == set(QUEUES)


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_variable_set_is_a_setting(name: str) -> None:
    env = OURS[name].get("environment", {})
    assert env, f"{name} sets no environment"
    unknown = set(env) - setting_names()
    assert not unknown, f"{name} sets {unknown}, which no setting reads"
    values = {k.lower(): v for k, v in env.items()}
    Settings(**values)  # and the values validate


def test_every_env_example_variable_is_a_setting() -> None:
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M)
    # LOG_LEVEL is read by the CLI itself, before any setting.
    assert set(names) - setting_names() == {"LOG_LEVEL"}


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_restart_and_report_health(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    if name != "beat":  # beat has no endpoint to ask; a crash restarts it
        assert "healthcheck" in service


def test_state_lives_in_volumes_and_beat_runs_once() -> None:
    assert {"pgdata", "redisdata", "appdata"} <= set(COMPOSE["volumes"])
    assert "deploy" not in SERVICES["beat"]
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    for name in ("web", "worker", "worker-mail", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_image_installs_the_built_wheel_and_nothing_else() -> None:
    build, final = dockerfile_stages()
    # The build stage has what the wheel is built from, and builds it as a user would.
    copied = {line.split()[1] for line in build if line.startswith("COPY ")}
    assert copied >= {"pyproject.toml", "newsletter", "workers"}
    assert all((REPO / name).exists() for name in copied)
    assert any("python -m build --wheel" in line for line in build)
    # The final stage takes only the wheel from it: no source tree, no editable install.
    stage_name = build[0].split()[-1]
    copies = [line for line in final if line.startswith("COPY ")]
    assert copies and all(line.startswith(f"COPY --from={stage_name} ") for line in copies)
    installs = [line for line in final if "pip install" in line]
    assert installs and all(".whl" in line and " -e " not in line for line in installs)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}


def test_the_build_context_leaves_out_local_state() -> None:
    """.dockerignore admits the wheel's sources only: no venv, git, outbox, databases or
    .env reach the build context (patterns are Go's filepath.Match, later lines win)."""
    from fnmatch import fnmatch

    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.removeprefix("!").removeprefix("**/")
            if fnmatch(path, bare) or fnmatch(path.rsplit("/", 1)[-1], bare) or \
                    path.startswith(bare.rstrip("/") + "/"):
                verdict = not negate
        return verdict

    for kept in ("pyproject.toml", "README.md", "newsletter/cli/__init__.py", "workers/app.py",
                 "email_templates/digest.mjml", "alembic/env.py"):
        assert not ignored(kept), kept
    for left_out in (".venv/bin/python", ".git/HEAD", "outbox/1.eml", "paperwire.db", ".env",
                     "tests/conftest.py", "newsletter/__pycache__/cli.cpython-311.pyc"):
        assert ignored(left_out), left_out


def test_the_compose_test_only_adds_services_and_never_changes_the_apps() -> None:
    """deploy/compose-test runs this file for real; its override may add test services and
    dependencies, never replace what an app service runs."""
    override = yaml.safe_load((REPO / "deploy/compose-test.yml").read_text())["services"]
    for name, service in override.items():
        if name in OURS:
            assert set(service) <= {"depends_on"}, f"{name}: {set(service)}"
        else:
            assert name not in SERVICES and "image" in service and "build" not in service
