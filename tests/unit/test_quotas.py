"""The instance type's endpoint quota (aws/quotas.py), one lookup for a deploy's check and for `aws doctor`:
ListServiceQuotas page after page, then the defaults (botocore's Stubber, shapes from the service model);
Service Quotas' refusals as AWS sends them, through botocore's parser; and only botocore's errors count as
a quota that could not be read (anything else is a bug, raised)."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.aws import doctor, quotas
from comfyui_sagemaker.aws.doctor import SKIP, Target
from harness.service_quotas import listed, quota, refusing, stubbed_client

pytestmark = pytest.mark.stubber

TYPE = "ml.g5.xlarge"
TARGET = Target("team-store", "comfyui", "us-east-1", "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:latest")


def test_a_quota_on_a_later_page_is_found_without_reading_the_defaults(aws_env):
    sq, stub = stubbed_client([quota("ml.g4dn.xlarge", 9, "L-1")], [quota(TYPE, 4, "L-2")])
    reading = quotas.read(sq, TYPE)
    assert (reading.name, reading.quota["QuotaCode"], reading.failure) == (f"{TYPE} for endpoint usage", "L-2", None)
    stub.assert_no_pending_responses()


def test_a_quota_only_the_defaults_list_is_read_from_there_and_none_is_not_listed(aws_env):
    sq, stub = stubbed_client()
    listed(stub, [quota("ml.g4dn.xlarge", 9, "L-1")], defaults=[[], [quota(TYPE, 0, "L-2")]])
    assert quotas.read(sq, TYPE).quota["Value"] == 0
    listed(stub, [], defaults=[])
    assert quotas.read(sq, TYPE) == quotas.Reading(f"{TYPE} for endpoint usage")
    stub.assert_no_pending_responses()


def test_no_such_resource_is_a_deploys_warning_and_the_doctors_skip(aws_env):
    sq, sent = refusing("NoSuchResourceException", "The request failed because the specified service does not exist.")
    warning = quotas.check(sq, "us-east-1", TYPE, 2, "a new fleet of 2")
    assert warning == (f"the quota '{TYPE} for endpoint usage' could not be read (NoSuchResourceException: The request "
                       "failed because the specified service does not exist.): this deploy needs 2 at once (a new "
                       "fleet of 2)")
    line, offered = doctor._quota(TARGET, sq, TYPE)
    assert (line["status"], offered) == (SKIP, None)
    assert line["detail"].startswith("Service Quotas did not answer (NoSuchResourceException: ")
    assert len(sent) == 2  # one request each: a 4xx is not retried


def test_access_denied_is_a_deploys_warning_and_the_doctors_skip_that_names_the_grant(aws_env):
    said = ("User: arn:aws:sts::123456789012:assumed-role/designer/x is not authorized to perform: "
            "servicequotas:ListServiceQuotas")
    sq, _ = refusing("AccessDeniedException", said)
    assert quotas.check(sq, "us-east-1", TYPE, 1, "a new fleet of 1").startswith(
        f"the quota '{TYPE} for endpoint usage' could not be read (access denied: {said})")
    line, offered = doctor._quota(TARGET, sq, TYPE)
    assert line["detail"] == f"these credentials may not read Service Quotas (access denied: {said})"
    assert "servicequotas:ListServiceQuotas" in line["fix"] and offered is None


class Broken:
    """A client whose paginator fails with something that is not botocore's (an emulator's gap, a bug)."""

    def get_paginator(self, name):
        raise NotImplementedError(f"The {name} action has not been implemented")


def test_only_botocores_errors_are_a_quota_that_could_not_be_read():
    with pytest.raises(NotImplementedError):
        quotas.check(Broken(), "us-east-1", TYPE, 1, "a new fleet of 1")
    with pytest.raises(NotImplementedError):
        doctor._quota(TARGET, Broken(), TYPE)
