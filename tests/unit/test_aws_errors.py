"""AWS failures in the user's words."""

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError
from comfyui_sagemaker.aws.errors import AwsError, AwsNotConfigured, InstanceTypeRefused, QuotaExceeded, translate

pytestmark = pytest.mark.stubber


def client_error(code, message, status=400):
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateEndpoint")


@pytest.mark.parametrize("err, cls, needle", [
    (NoCredentialsError(), AwsNotConfigured, "no AWS credentials"),
    (NoRegionError(), AwsNotConfigured, "region"),
    (EndpointConnectionError(endpoint_url="https://api.sagemaker.xx-nowhere-1.amazonaws.com"), AwsError,
     "is the region right"),
    (client_error("ResourceLimitExceeded", "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0"),
     QuotaExceeded, "ml.g5.xlarge for endpoint usage"),
    (client_error("ValidationException", "Instance type ml.g9.huge is not supported"), InstanceTypeRefused,
     "instance type refused"),
    (client_error("AccessDeniedException", "not authorized to perform: sagemaker:CreateModel", 403), AwsError,
     "access denied"),
    (client_error("ThrottlingException", "Rate exceeded"), AwsError, "throttling"),
])
def test_translate(err, cls, needle):
    out = translate(err, "xx-nowhere-1")
    assert isinstance(out, cls) and needle in out.message
