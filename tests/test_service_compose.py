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


def test_the_image_holds_what_the_package_reads_at_run_time() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for folder in ("newsletter", "workers"):
        assert re.search(rf"^COPY {folder} {folder}$", dockerfile, re.M), folder
        assert (REPO / folder).is_dir()
    assert "pip install" in dockerfile
