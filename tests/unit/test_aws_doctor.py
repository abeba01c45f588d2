"""`aws doctor` (aws/doctor.py) against AWS's documented answers, each request checked by botocore's Stubber
(its service models): each check's pass and each failure's message and fix; then one run end to end on moto,
where what moto cannot answer is a skip with the reason, never a pass (Service Quotas, which moto lacks, is
answered there by the Stubber as its API reference says)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import doctor, naming
from comfyui_sagemaker.aws.doctor import FAIL, PASS, SKIP, Target
from harness import service_quotas

pytestmark = pytest.mark.stubber

BUCKET, PREFIX, REGION = "team-store", "comfyui", "us-east-1"
REPO = "comfyui-sagemaker-worker"
IMAGE = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{REPO}:latest"
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
ENDPOINT = "cs-flux-1a2b3c4d"
ARN = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}"
TARGET = Target(BUCKET, PREFIX, REGION, IMAGE)
KEY = {"Bucket": BUCKET, "Key": ANY}


@pytest.fixture
def stubs(aws_env):
    made: dict[str, tuple] = {}

    def client(service):
        if service not in made:
            c = boto3.client(service, region_name=REGION)
            made[service] = (c, Stubber(c))
            made[service][1].activate()
        return made[service][0]

    def stub(service):
        client(service)
        return made[service][1]

    yield client, stub
    for _, s in made.values():
        s.assert_no_pending_responses()
        s.deactivate()


def s3_error(stub, op, status, code, params):
    stub.add_client_error(op, service_error_code=code, http_status_code=status, expected_params=params)


def head_404(stub):
    s3_error(stub, "head_object", 404, "404", KEY)


def store_ok(stub):
    head_404(stub)
    stub.add_response("put_object", {"ETag": '"e1"'}, {**KEY, "Body": ANY, "IfNoneMatch": "*"})
    s3_error(stub, "put_object", 412, "PreconditionFailed", {**KEY, "Body": ANY, "IfNoneMatch": "*"})
    s3_error(stub, "put_object", 412, "PreconditionFailed", {**KEY, "Body": ANY, "IfMatch": ANY})
    stub.add_response("list_objects_v2", {"Contents": [], "IsTruncated": True},
                      {"Bucket": BUCKET, "Prefix": f"{PREFIX}/doctor/", "MaxKeys": 1000})
    stub.add_response("delete_object", {}, KEY)


def endpoint(sm, status="InService", resolved=DIGEST, reason=None):
    sm.add_response("list_endpoints", {"Endpoints": [{"EndpointName": ENDPOINT, "EndpointArn": ARN,
                                                      "CreationTime": "2026-12-01T00:00:00Z",
                                                      "LastModifiedTime": "2026-12-01T00:00:00Z",
                                                      "EndpointStatus": status}]}, {"NameContains": "cs-"})
    sm.add_response("list_tags", {"Tags": [{"Key": naming.TAG_STORE, "Value": naming.store_digest(TARGET.store_uri)}]},
                    {"ResourceArn": ARN})
    d = {"EndpointName": ENDPOINT, "EndpointArn": ARN, "EndpointConfigName": f"{ENDPOINT}-v1",
         "EndpointStatus": status, "CreationTime": "2026-12-01T00:00:00Z", "LastModifiedTime": "2026-12-01T00:00:00Z",
         "ProductionVariants": [{"VariantName": "AllTraffic", "DeployedImages": [
             {"SpecifiedImage": IMAGE, "ResolvedImage": f"{IMAGE.rsplit(':', 1)[0]}@{resolved}"}]}]}
    if reason:
        d["FailureReason"] = reason
    sm.add_response("describe_endpoint", d, {"EndpointName": ENDPOINT})
    return d


def no_endpoint(sm):
    sm.add_response("list_endpoints", {"Endpoints": []}, {"NameContains": "cs-"})


def config(sm, instance_type="ml.g5.xlarge"):
    sm.add_response("describe_endpoint_config", {
        "EndpointConfigName": f"{ENDPOINT}-v1", "EndpointConfigArn": ARN + "-config",
        "CreationTime": "2026-12-01T00:00:00Z",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": instance_type}]},
        {"EndpointConfigName": f"{ENDPOINT}-v1"})


def logs_ok(logs):
    group = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
    logs.add_response("describe_log_streams", {"logStreams": [{"logStreamName": "AllTraffic/i-1"}]},
                      {"logGroupName": group, "orderBy": "LastEventTime", "descending": True, "limit": 5})
    logs.add_response("get_log_events", {"events": [{"timestamp": 1, "message": "worker ready"}]},
                      {"logGroupName": group, "logStreamName": "AllTraffic/i-1", "limit": 1, "startFromHead": False})


def image(ecr, digest=DIGEST, images=True):
    missing = {"imageId": {"imageTag": "latest"}, "failureCode": "ImageNotFound",
               "failureReason": "Requested image not found"}
    ecr.add_response("batch_get_image", {"images": [{"registryId": "123456789012", "repositoryName": REPO,
                                                      "imageId": {"imageDigest": digest, "imageTag": "latest"},
                                                      "imageManifest": "{}"}] if images else [],
                                         "failures": [] if images else [missing]},
                     {"repositoryName": REPO, "imageIds": [{"imageTag": "latest"}], "acceptedMediaTypes": ANY})


def quota(sq, value=4.0, instance_type="ml.g5.xlarge", listed=True):
    if listed:
        service_quotas.listed(sq, [service_quotas.quota(instance_type, value)])
    else:
        service_quotas.listed(sq, [], defaults=[])


def all_ok(stub):
    store_ok(stub("s3"))
    endpoint(stub("sagemaker"))
    config(stub("sagemaker"))
    logs_ok(stub("logs"))
    image(stub("ecr"))
    quota(stub("service-quotas"))


def by_name(lines):
    return {x["name"]: x for x in lines}


def test_every_check_passes_on_an_account_as_aws_documents_it(stubs):
    client, stub = stubs
    all_ok(stub)
    lines = doctor.run(TARGET, client)
    assert [x["status"] for x in lines] == [PASS] * len(lines), lines
    assert [x["name"] for x in lines] == [
        "missing key reads as 404", "conditional create", "create of an existing key", "replace with a wrong ETag",
        "list the prefix", "clean-up", "describe endpoint", "endpoint log", "worker image", "instance quota",
        "region offers the type"]
    assert not doctor.failed(lines)


def test_a_403_on_a_missing_key_says_listbucket_is_missing(stubs):
    client, stub = stubs
    s3 = stub("s3")
    s3_error(s3, "head_object", 403, "403", KEY)
    line = doctor._head_missing(TARGET, client("s3"), "")
    assert line["status"] == FAIL and "403, not 404" in line["detail"]
    assert "s3:ListBucket" in line["fix"] and "without an s3:prefix condition" in line["fix"]


@pytest.mark.parametrize("which", ["create of an existing key", "replace with a wrong ETag"])
def test_a_conditional_write_that_is_accepted_is_a_failure(stubs, which):
    client, stub = stubs
    s3 = stub("s3")
    head_404(s3)
    s3.add_response("put_object", {"ETag": '"e1"'}, {**KEY, "Body": ANY, "IfNoneMatch": "*"})
    if which == "create of an existing key":
        s3.add_response("put_object", {"ETag": '"e2"'}, {**KEY, "Body": ANY, "IfNoneMatch": "*"})
        s3_error(s3, "put_object", 412, "PreconditionFailed", {**KEY, "Body": ANY, "IfMatch": ANY})
    else:
        s3_error(s3, "put_object", 412, "PreconditionFailed", {**KEY, "Body": ANY, "IfNoneMatch": "*"})
        s3.add_response("put_object", {"ETag": '"e2"'}, {**KEY, "Body": ANY, "IfMatch": ANY})
    s3.add_response("list_objects_v2", {"IsTruncated": True}, {"Bucket": BUCKET, "Prefix": ANY, "MaxKeys": 1000})
    s3.add_response("delete_object", {}, KEY)
    line = by_name(doctor._store(TARGET, client("s3"), ""))[which]
    assert line["status"] == FAIL and "ignores conditional writes" in line["detail"] and "S3" in line["fix"]


def test_an_s3_that_does_not_implement_conditional_writes_is_a_skip(stubs):
    """S3's 501 NotImplemented ("a header you provided implies functionality that is not implemented"): the
    check was not made there, so a skip, neither a pass nor the account's failure."""
    client, stub = stubs
    s3_error(stub("s3"), "put_object", 501, "NotImplemented", {**KEY, "Body": b"x", "IfNoneMatch": "*"})
    line = doctor._expect_412("conditional create", lambda: client("s3").put_object(
        Bucket=BUCKET, Key="k", Body=b"x", IfNoneMatch="*"), "If-None-Match: *")
    assert line["status"] == SKIP and "did not evaluate If-None-Match: * (NotImplemented)" in line["detail"]


def test_a_refused_create_and_listing_say_which_permission(stubs):
    client, stub = stubs
    s3 = stub("s3")
    head_404(s3)
    s3_error(s3, "put_object", 403, "AccessDenied", {**KEY, "Body": ANY, "IfNoneMatch": "*"})
    s3_error(s3, "list_objects_v2", 403, "AccessDenied", {"Bucket": BUCKET, "Prefix": ANY, "MaxKeys": 1000})
    lines = by_name(doctor._store(TARGET, client("s3"), ""))
    assert lines["conditional create"]["status"] == FAIL and "s3:PutObject" in lines["conditional create"]["fix"]
    assert lines["list the prefix"]["status"] == FAIL and "s3:ListBucket" in lines["list the prefix"]["fix"]


def test_no_endpoint_skips_describe_and_logs_and_the_default_type_is_checked(stubs):
    client, stub = stubs
    store_ok(stub("s3"))
    no_endpoint(stub("sagemaker"))
    image(stub("ecr"))
    quota(stub("service-quotas"))
    lines = by_name(doctor.run(TARGET, client))
    assert lines["describe endpoint"]["status"] == SKIP and "no endpoint" in lines["describe endpoint"]["detail"]
    assert lines["endpoint log"]["status"] == SKIP
    assert "ml.g5.xlarge" in lines["instance quota"]["detail"]


def test_a_failed_endpoint_says_sagemakers_reason(stubs):
    client, stub = stubs
    out: list = []
    endpoint(stub("sagemaker"), status="Failed", reason="The primary container did not pass the ping health check")
    doctor._describe(TARGET, client("sagemaker"), doctor._project_endpoint(TARGET, client("sagemaker"), out), out)
    assert out[0]["status"] == FAIL and "ping health check" in out[0]["detail"]


def test_access_denied_on_the_log_names_the_actions(stubs):
    client, stub = stubs
    stub("logs").add_client_error("describe_log_streams", "AccessDeniedException", "not authorized to perform: "
                                  "logs:DescribeLogStreams", 400)
    line = doctor._logs(TARGET, client("logs"), ENDPOINT)
    assert line["status"] == FAIL and "access denied" in line["detail"]
    assert "logs:DescribeLogStreams" in line["fix"] and "/aws/sagemaker/Endpoints/*" in line["fix"]


def test_a_missing_image_and_a_missing_repository_fail(stubs):
    client, stub = stubs
    image(stub("ecr"), images=False)
    line = doctor._image(TARGET, client("ecr"), None)
    assert line["status"] == FAIL and "is not in ECR" in line["detail"] and "aws setup" in line["fix"]
    stub("ecr").add_client_error("batch_get_image", "RepositoryNotFoundException", "The repository does not exist",
                                 400)
    line = doctor._image(TARGET, client("ecr"), None)
    assert line["status"] == FAIL and f"no repository {REPO}" in line["detail"]


def test_an_endpoint_running_another_digest_is_a_failure(stubs):
    client, stub = stubs
    described = endpoint(stub("sagemaker"), resolved=OTHER)
    client("sagemaker").list_endpoints(NameContains="cs-")
    client("sagemaker").list_tags(ResourceArn=ARN)
    client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    image(stub("ecr"), digest=DIGEST)
    line = doctor._image(TARGET, client("ecr"), described)
    assert line["status"] == FAIL and OTHER in line["detail"] and DIGEST in line["detail"]
    assert "deploy the environment again" in line["fix"]


def test_a_pinned_digest_ecr_does_not_have_is_a_failure(stubs):
    client, stub = stubs
    pinned = Target(BUCKET, PREFIX, REGION, IMAGE.rsplit(":", 1)[0] + "@" + OTHER)
    stub("ecr").add_response("batch_get_image", {"images": [{"imageId": {"imageDigest": DIGEST}}], "failures": []},
                             {"repositoryName": REPO, "imageIds": [{"imageDigest": OTHER}], "acceptedMediaTypes": ANY})
    line = doctor._image(pinned, client("ecr"), None)
    assert line["status"] == FAIL and f"names {OTHER}" in line["detail"]


def test_a_quota_of_0_says_where_to_ask_for_more(stubs):
    client, stub = stubs
    quota(stub("service-quotas"), value=0.0)
    line, offered = doctor._quota(TARGET, client("service-quotas"), "ml.g5.xlarge")
    assert line["status"] == FAIL and "is 0" in line["detail"] and offered is True
    assert "Service Quotas" in line["fix"] and "L-1234ABCD" in line["fix"]
    assert doctor._region(TARGET, "ml.g5.xlarge", offered)["status"] == PASS


def test_a_type_the_region_does_not_list_fails_the_region_line(stubs):
    client, stub = stubs
    quota(stub("service-quotas"), listed=False)
    line, offered = doctor._quota(TARGET, client("service-quotas"), "ml.g5.xlarge")
    assert line["status"] == FAIL and offered is False
    region = doctor._region(TARGET, "ml.g5.xlarge", offered)
    assert region["status"] == FAIL and "lists no endpoint quota" in region["detail"]


def test_unreadable_quotas_are_a_skip_and_an_unknown_type_a_failure(aws_env):
    sq, _ = service_quotas.refusing("AccessDeniedException", "not authorized")  # through botocore's parser
    line, offered = doctor._quota(TARGET, sq, "ml.g5.xlarge")
    assert line["status"] == SKIP and "may not read Service Quotas" in line["detail"] and offered is None
    assert doctor._region(TARGET, "ml.g5.xlarge", None)["status"] == SKIP
    assert doctor._region(TARGET, "ml.zz9.huge", None)["status"] == FAIL


def test_an_assumed_role_reads_the_store_with_its_own_credentials(stubs):
    client, stub = stubs
    role = "arn:aws:iam::123456789012:role/team-artist"
    creds = {"AccessKeyId": "ASIAEXAMPLEEXAMPLE", "SecretAccessKey": "s", "SessionToken": "t",
             "Expiration": "2026-12-01T01:00:00Z"}
    stub("sts").add_response("assume_role", {"Credentials": creds},
                             {"RoleArn": role, "RoleSessionName": doctor.SESSION_NAME})
    role_s3 = boto3.client("s3", region_name=REGION)
    with Stubber(role_s3) as rs:
        s3_error(rs, "head_object", 403, "403", KEY)
        rs.add_response("list_objects_v2", {"IsTruncated": False}, {"Bucket": BUCKET, "Prefix": ANY, "MaxKeys": 1000})
        lines = doctor._as_role(TARGET, client, role, lambda creds: (lambda service: role_s3))
        rs.assert_no_pending_responses()
    assert [(x["name"], x["status"]) for x in lines] == [
        ("assume role (as team-artist)", PASS), ("missing key reads as 404 (as team-artist)", FAIL),
        ("list the prefix (as team-artist)", PASS)]


def test_end_to_end_on_moto(aws_env):
    """moto answers S3's conditional writes, ECR, SageMaker and Logs (no endpoint there: their lines are skips
    with the reason, never passes); Service Quotas, which moto lacks, is the Stubber's documented answer."""
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        ecr = boto3.client("ecr", region_name=REGION)
        ecr.create_repository(repositoryName=REPO)
        manifest = ('{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":'
                    '{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"' + DIGEST
                    + '"},"layers":[]}')
        ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="latest")
        sq, quotas = service_quotas.stubbed_client([service_quotas.quota("ml.g5.xlarge", 4)])
        lines = doctor.run(TARGET, lambda service: sq if service == "service-quotas"
                           else boto3.client(service, region_name=REGION))
        quotas.assert_no_pending_responses()
        status = {x["name"]: x["status"] for x in lines}
        assert status == {
            "missing key reads as 404": PASS, "conditional create": PASS, "create of an existing key": PASS,
            "replace with a wrong ETag": PASS, "list the prefix": PASS, "clean-up": PASS, "describe endpoint": SKIP,
            "endpoint log": SKIP, "worker image": PASS, "instance quota": PASS, "region offers the type": PASS}, lines
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # the doctor's keys are gone
