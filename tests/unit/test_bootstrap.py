"""The Bootstrap component: ordering, triggers, the connection, and no secret on the wire."""

import os
import shutil

import harness
from components import bootstrap

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"


def _run(config=None):
    run = harness.run(config)
    assert run.error is None, run.error
    return run


def _depends_on(run, resource, other):
    return other.urn in resource.dependencies


def test_steps_run_in_order_wait_copy_bootstrap():
    run = _run()
    wait = run.resource(COMMAND, "robot-bootstrap-wait")
    staging = run.resource(COMMAND, "robot-bootstrap-staging")
    copies = run.of_type(COPY)
    final = run.resource(COMMAND, "robot-bootstrap-run")
    assert {c.name for c in copies} == {"robot-bootstrap-copy-scripts", "robot-bootstrap-copy-robot", "robot-bootstrap-copy-settings"}
    assert _depends_on(run, staging, wait)
    for copy in copies:
        assert _depends_on(run, copy, staging), copy.name
        assert _depends_on(run, final, copy), copy.name
    assert "cloud-init status --wait" in wait.props["create"]
    assert final.props["create"] == (
        "sudo bash /home/ubuntu/robot-staging/scripts/bootstrap.sh "
        "--source /home/ubuntu/robot-staging --settings /home/ubuntu/robot-staging/settings.env"
    )
    assert final.props["update"] == final.props["create"]
    assert "systemctl stop robot" in final.props["delete"] and "|| true" in final.props["delete"]
    # The component belongs to its instance.
    node = run.resource("robot:aws:RobotInstance", "robot")
    assert run.resource("robot:aws:Bootstrap", "robot-bootstrap").parent == node.urn


def test_connection_uses_the_elastic_ip_and_keeps_dialing():
    run = _run({"os": "debian-12"})
    eip = run.resource("aws:ec2/eip:Eip")
    for step in run.of_type(COMMAND) + run.of_type(COPY):
        connection = step.inputs["connection"]
        assert harness.plain(connection)["host"] == eip.state["publicIp"], step.name
        assert harness.plain(connection)["user"] == "admin"
        assert harness.is_secret(connection) or harness.is_secret(connection["privateKey"])
        assert harness.plain(connection)["dialErrorLimit"] == bootstrap.DIAL_ERROR_LIMIT > 10


def test_run_output_is_secret_and_logging_is_limited():
    final = _run().resource(COMMAND, "robot-bootstrap-run")
    assert set(final.additional_secret_outputs) >= {"stdout", "stderr"}
    assert final.props["logging"] == "stderr"
    assert harness.is_secret(final.state["stdout"]) and harness.is_secret(final.state["stderr"])


def test_triggers_cover_files_settings_secret_version_and_instance():
    run = _run()
    final = run.resource(COMMAND, "robot-bootstrap-run")
    instance = run.resource("aws:ec2/instance:Instance")
    version = run.resource("aws:secretsmanager/secretVersion:SecretVersion")
    settings_copy = run.resource(COPY, "robot-bootstrap-copy-settings")
    triggers = final.props["triggers"]
    assert triggers[0] == instance.id
    assert triggers[1] == bootstrap.tree_digest()
    assert triggers[2] == settings_copy.inputs["source"].text  # the exact settings.env shipped
    assert settings_copy.props["remotePath"] == "/home/ubuntu/robot-staging/settings.env"
    assert triggers[3] == version.state["versionId"]
    assert len(triggers) == 4


def test_settings_file_is_the_host_contract_without_secrets():
    run = _run({"basicAuth": "true", "exposeRobotPort": "false"})
    text = run.resource(COMMAND, "robot-bootstrap-run").props["triggers"][2]
    values = harness.settings_env(run, "robot-bootstrap")
    secret_arn = run.resource("aws:secretsmanager/secret:Secret").state["arn"]
    assert values["ROBOT_SECRET_ID"] == secret_arn
    assert values["ROBOT_PORT"] == "18789" and values["ROBOT_HEALTH_PATH"] == "/health"
    assert values["ROBOT_BASIC_AUTH"] == "true" and values["ROBOT_TOPOLOGY"] == "single"
    assert values["ROBOT_EXPOSE_PORT"] == "false"
    assert values["ROBOT_DDOS_RPS"] == "1000" and values["ROBOT_DDOS_CONN_PER_IP"] == "500"
    assert values["ROBOT_ALLOWED_CIDRS"] == "203.0.113.0/24" and values["AWS_REGION"] == harness.REGION
    token = harness.plain(run.resource("random:index/randomPassword:RandomPassword", "keys-token").state["result"])
    for secret in [*harness.REQUIRED_SECRETS.values(), token]:
        assert secret not in text
        for step in run.of_type(COMMAND):
            for field in ("create", "update", "delete"):
                assert secret not in str(step.props.get(field, "")), (step.name, field)
            assert "environment" not in step.props or secret not in str(step.props["environment"])


def test_digest_changes_with_any_shipped_file_and_ignores_caches(tmp_path):
    for top in bootstrap.SHIPPED:
        shutil.copytree(os.path.join(harness.ROOT, top), tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    before = bootstrap.tree_digest(str(tmp_path))
    assert before == bootstrap.tree_digest(harness.ROOT)
    (tmp_path / "robot" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "robot" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    assert bootstrap.tree_digest(str(tmp_path)) == before  # no perpetual diff from caches
    template = next((tmp_path / "scripts").rglob("*.sh"))
    template.write_text(template.read_text() + "\n# changed\n")
    assert bootstrap.tree_digest(str(tmp_path)) != before


def test_render_settings_quotes_values():
    text = bootstrap.render_settings({"B": "two words", "A": "x'y", "C": ""})
    assert text == "A='x'\"'\"'y'\nB='two words'\nC=''\n"
