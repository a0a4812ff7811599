"""The harness itself: it cannot let a test pass on something that never happened."""

import pulumi
import pulumi_aws as aws
import pytest
from pulumi.runtime import mocks as pulumi_mocks

import harness


def test_a_lookup_of_an_unregistered_resource_fails():
    run = harness.run(program=lambda: None)
    assert run.error is None and run.registrations == []
    with pytest.raises(AssertionError):
        run.resource("aws:ec2/instance:Instance")


def test_additional_secret_outputs_come_back_secret():
    def program():
        pulumi.export("plain", "x")
        key = aws.ec2.KeyPair("k", public_key="ssh-ed25519 AAAA")
        pulumi.export("arn", key.arn)
        pulumi.export("hidden", pulumi.Output.secret("y"))

    run = harness.run(program=program)
    assert run.error is None, run.error
    assert run.outputs["plain"] == harness.Output("x", False)
    assert run.outputs["hidden"] == harness.Output("y", True)
    assert not run.outputs["arn"].secret


def test_runs_do_not_share_outputs():
    harness.run(program=lambda: pulumi.export("first", "1"))
    second = harness.run(program=lambda: pulumi.export("second", "2"))
    assert set(second.outputs) == {"second"}


def test_an_unmodelled_resource_type_or_invoke_is_an_error_not_a_silent_pass():
    mocks = harness.RobotMocks()
    resource = pulumi_mocks.MockResourceArgs("aws:s3/bucket:Bucket", "b", {}, provider="", resource_id="", custom=True)
    with pytest.raises(NotImplementedError, match="aws:s3/bucket:Bucket"):
        mocks.new_resource(resource)
    with pytest.raises(NotImplementedError, match="aws:s3/getBucket:getBucket"):
        mocks.call(pulumi_mocks.MockCallArgs("aws:s3/getBucket:getBucket", {}, ""))
