"""Every IAM policy the program writes passes parliament with no finding above LOW."""

import json

import parliament
import pytest

import harness


@pytest.mark.parametrize("topology", ["single", "pair"])
def test_policies_pass_the_linter(topology):
    run = harness.run({"topology": topology})
    assert run.error is None, run.error
    documents = [(p.name, p.props["policy"]) for p in run.of_type("aws:iam/policy:Policy")]
    # (Trust policies are resource policies without a Resource element; test_components checks them.)
    assert len(documents) == (2 if topology == "single" else 3)
    problems = []
    for name, document in documents:
        json.loads(document)
        for finding in parliament.analyze_policy_string(document).findings:
            severity = parliament.config.get(finding.issue, {}).get("severity", "UNKNOWN")
            if severity not in ("LOW", "INFO", "MUTE"):
                problems.append((name, finding.issue, severity, finding.detail))
    assert problems == []


def test_the_linter_does_flag_a_bad_policy():
    bad = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "*"}]})
    issues = {f.issue for f in parliament.analyze_policy_string(bad).findings}
    assert issues  # an unknown action is reported: the lint above is not a no-op
