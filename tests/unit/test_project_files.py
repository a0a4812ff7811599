"""Pulumi.yaml, README.md and settings.py describe the same keys, types and defaults."""

import os
import re

import yaml

import harness
from components.settings import OPTIONS
from project_config import declaration


def _read(name):
    with open(os.path.join(harness.ROOT, name)) as fh:
        return fh.read()


def test_project_file():
    project = yaml.safe_load(_read("Pulumi.yaml"))
    assert project["name"] == "robot"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == "venv"


def test_pulumi_yaml_declares_every_key_as_settings_does():
    declared = yaml.safe_load(_read("Pulumi.yaml"))["config"]
    assert set(declared) == {f"robot:{o.key}" for o in OPTIONS}
    for option in OPTIONS:
        assert declared[f"robot:{option.key}"] == declaration(option), option.key


def test_readme_documents_every_key_with_its_default():
    rows = re.findall(r"^\| `(\w+)` \| ([\w, ]+) \| ([^|]+) \| ([^|]+) \|$", _read("README.md"), re.M)
    table = {key: (kind, default.strip()) for key, kind, default, _ in rows}
    assert set(table) == {o.key for o in OPTIONS}
    for o in OPTIONS:
        kind, default = table[o.key]
        assert kind == o.type + (", secret" if o.secret else ""), o.key
        if o.required:
            assert default == "required", o.key
        elif o.default is None:
            assert default == "—", o.key
        else:
            shown = str(o.default).lower() if isinstance(o.default, bool) else str(o.default)
            assert default == f"`{shown}`", o.key


def test_readme_test_command_is_what_ci_runs():
    assert "sudo bash tests/run.sh" in _read("README.md")
    assert "bash tests/run.sh" in _read(".ci/run")
