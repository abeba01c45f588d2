"""The IAM actions AWS checks for each operation the extension calls (data only: no boto3, no I/O).

An IAM action is not always named like the API operation: HeadObject is authorised
as s3:GetObject, a streamed invoke as sagemaker:InvokeEndpoint, and some calls need
actions on other services (CreateModel passes a role; RegisterScalableTarget lets
Application Auto Scaling act on the endpoint and on CloudWatch alarms). So each
operation is mapped here, explicitly, from AWS's documentation; the unit test reads
the operations from the code and fails on any operation missing from this table.

Keys: (boto3 service name, operation name as in the service model) or, for boto3's
transfer manager, (service, method name) such as ("s3", "upload_file").
Values: every IAM action the caller needs for that call (a list, no wildcards).
"""

from __future__ import annotations

# Application Auto Scaling checks, with the caller's own permissions, that it may act on the target and on
# CloudWatch before it registers a target or puts a policy.
# Sources: "Application Auto Scaling identity-based policy examples" (Permissions required for actions on target
# services and CloudWatch: SageMaker endpoints), "Permissions validation for API calls on target resources",
# and SageMaker's "Auto scaling prerequisites".
AUTOSCALING_ON_SAGEMAKER = [
    "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig", "sagemaker:UpdateEndpointWeightsAndCapacities",
    "cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms",
]

ACTIONS: dict[tuple[str, str], list[str]] = {
    # --- Amazon S3 ---------------------------------------------------------------------------------------------
    # "Actions, resources, and condition keys for Amazon S3"; the S3 API Reference pages of each operation.
    # A missing key answers 404 (what the code tells "not found" by) only to a caller allowed s3:ListBucket,
    # else 403 ("HeadObject" / "GetObject": Permissions), so reads need s3:ListBucket on the bucket as well,
    # granted without an s3:prefix condition: a GET or HEAD carries no s3:prefix, and a condition on a key
    # absent from the request is false (IAM User Guide, "Condition operators"), so a prefix-conditioned
    # grant would not count and a missing key would answer 403.
    ("s3", "GetObject"): ["s3:GetObject", "s3:ListBucket"],
    ("s3", "HeadObject"): ["s3:GetObject", "s3:ListBucket"],
    # Conditional writes (If-None-Match / If-Match) and ChecksumSHA256 are still s3:PutObject.
    ("s3", "PutObject"): ["s3:PutObject"],
    ("s3", "DeleteObject"): ["s3:DeleteObject"],
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    # boto3's transfer manager. "Multipart upload API and permissions": CreateMultipartUpload, UploadPart and
    # CompleteMultipartUpload are s3:PutObject, AbortMultipartUpload (sent when an upload fails) is its own
    # action; s3transfer never lists parts, so s3:ListMultipartUploadParts is not needed.
    ("s3", "upload_file"): ["s3:PutObject", "s3:AbortMultipartUpload"],
    # HeadObject for the size, then ranged GetObject.
    ("s3", "download_file"): ["s3:GetObject", "s3:ListBucket"],

    # --- Amazon SageMaker (control plane) ----------------------------------------------------------------------
    # "Actions, resources, and condition keys for Amazon SageMaker AI": CreateModel's dependent actions are
    # iam:PassRole (the execution role) and sagemaker:AddTags (the request carries Tags); the create calls
    # that carry Tags need sagemaker:AddTags too.
    ("sagemaker", "CreateModel"): ["sagemaker:CreateModel", "sagemaker:AddTags", "iam:PassRole"],
    ("sagemaker", "CreateEndpointConfig"): ["sagemaker:CreateEndpointConfig", "sagemaker:AddTags"],
    ("sagemaker", "CreateEndpoint"): ["sagemaker:CreateEndpoint", "sagemaker:AddTags"],
    ("sagemaker", "UpdateEndpoint"): ["sagemaker:UpdateEndpoint"],
    ("sagemaker", "DeleteModel"): ["sagemaker:DeleteModel"],
    ("sagemaker", "DeleteEndpointConfig"): ["sagemaker:DeleteEndpointConfig"],
    ("sagemaker", "DeleteEndpoint"): ["sagemaker:DeleteEndpoint"],
    ("sagemaker", "DescribeEndpoint"): ["sagemaker:DescribeEndpoint"],
    ("sagemaker", "DescribeEndpointConfig"): ["sagemaker:DescribeEndpointConfig"],
    ("sagemaker", "ListEndpoints"): ["sagemaker:ListEndpoints"],
    ("sagemaker", "ListEndpointConfigs"): ["sagemaker:ListEndpointConfigs"],
    ("sagemaker", "ListModels"): ["sagemaker:ListModels"],
    ("sagemaker", "ListTags"): ["sagemaker:ListTags"],

    # --- Amazon SageMaker Runtime ------------------------------------------------------------------------------
    # API Reference "InvokeEndpointWithResponseStream": "your IAM permissions must allow the
    # sagemaker:InvokeEndpoint action"; the Service Authorization Reference also lists
    # sagemaker:InvokeEndpointWithResponseStream, granted too so either evaluation allows the call.
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream"): [
        "sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream"],
    # SageMaker's "Asynchronous inference" prerequisites: sagemaker:InvokeEndpointAsync.
    ("sagemaker-runtime", "InvokeEndpointAsync"): ["sagemaker:InvokeEndpointAsync"],

    # --- Amazon SQS and Amazon SNS: async results by notification (aws/notifications.py) -------------------------
    # "Actions, resources, and condition keys for Amazon SQS" / "... for Amazon SNS". The queue is made with its
    # policy as one of its attributes: sqs:SetQueueAttributes is granted too, so either evaluation allows the call.
    ("sqs", "CreateQueue"): ["sqs:CreateQueue", "sqs:SetQueueAttributes"],
    ("sqs", "ReceiveMessage"): ["sqs:ReceiveMessage"],
    ("sqs", "DeleteMessage"): ["sqs:DeleteMessage"],
    ("sqs", "DeleteQueue"): ["sqs:DeleteQueue"],
    ("sns", "Subscribe"): ["sns:Subscribe"],

    # --- Application Auto Scaling ------------------------------------------------------------------------------
    # "Service-linked roles for Application Auto Scaling" / "Permissions required to create a service-linked
    # role": the first RegisterScalableTarget for SageMaker in an account creates
    # AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint with the caller's iam:CreateServiceLinkedRole
    # (granted only on that role and service: see SCOPED).
    ("application-autoscaling", "RegisterScalableTarget"): [
        "application-autoscaling:RegisterScalableTarget", *AUTOSCALING_ON_SAGEMAKER, "iam:CreateServiceLinkedRole"],
    ("application-autoscaling", "PutScalingPolicy"): [
        "application-autoscaling:PutScalingPolicy", *AUTOSCALING_ON_SAGEMAKER],
    ("application-autoscaling", "DescribeScalingPolicies"): ["application-autoscaling:DescribeScalingPolicies"],
    ("application-autoscaling", "DeleteScalingPolicy"): ["application-autoscaling:DeleteScalingPolicy"],
    ("application-autoscaling", "DescribeScalableTargets"): ["application-autoscaling:DescribeScalableTargets"],
    ("application-autoscaling", "DeregisterScalableTarget"): ["application-autoscaling:DeregisterScalableTarget"],

    # --- Amazon CloudWatch ("Actions, resources, and condition keys for Amazon CloudWatch") ----------------------
    ("cloudwatch", "PutMetricAlarm"): ["cloudwatch:PutMetricAlarm"],
    ("cloudwatch", "DeleteAlarms"): ["cloudwatch:DeleteAlarms"],
    # Which alarm rolled an update back (aws/deploy_guardrails.py's rollback_alarm).
    ("cloudwatch", "DescribeAlarms"): ["cloudwatch:DescribeAlarms"],
    # What endpoints cost (aws/endpoint_usage.py): their instance metrics, read by designers and artists alike.
    # cloudwatch:GetMetricData has no resource type and no condition key: granted on "*".
    ("cloudwatch", "GetMetricData"): ["cloudwatch:GetMetricData"],

    # --- Amazon CloudWatch Logs ("CloudWatch Logs permissions reference") -----------------------------------------
    # An endpoint's logs: group /aws/sagemaker/Endpoints/<endpoint> (see ENDPOINT_LOG_GROUPS).
    ("logs", "DescribeLogStreams"): ["logs:DescribeLogStreams"],
    ("logs", "FilterLogEvents"): ["logs:FilterLogEvents"],
    ("logs", "GetLogEvents"): ["logs:GetLogEvents"],
    # A deploy makes that group first, with a retention (aws/endpoint_logs.py's keep_logs).
    ("logs", "CreateLogGroup"): ["logs:CreateLogGroup"],
    ("logs", "PutRetentionPolicy"): ["logs:PutRetentionPolicy"],

    # --- The Connect panel's Check (aws/connect.py) ----------------------------------------------------------------
    # STS API Reference "GetCallerIdentity": "No permissions are required to perform this operation."
    ("sts", "GetCallerIdentity"): [],
    # The bucket check is a ListObjectsV2 under the store's prefix and a PutObject / DeleteObject (above).
    ("iam", "GetRole"): ["iam:GetRole"],
    ("iam", "SimulatePrincipalPolicy"): ["iam:SimulatePrincipalPolicy"],
    ("ecr", "BatchGetImage"): ["ecr:BatchGetImage"],

    # --- Service Quotas ---------------------------------------------------------------------------------------------
    # A deploy reads the instance type's endpoint quota before it creates anything (aws/quotas.py, shared with
    # `aws doctor`): the applied value, else AWS's default.
    ("service-quotas", "ListServiceQuotas"): ["servicequotas:ListServiceQuotas"],
    ("service-quotas", "ListAWSDefaultServiceQuotas"): ["servicequotas:ListAWSDefaultServiceQuotas"],
}

# `aws setup | status | teardown` (aws/setup.py) run by an account administrator, not by a designer's
# ComfyUI: CloudFormation creates the stack's resources with the caller's own permissions (IAM roles and
# policies among them), so these operations are listed for the README and the test, not granted by a
# generated policy. Sources: each service's "Actions, resources, and condition keys" page.
# A SageMaker worker's idle stop (worker/idle_stop.py) runs aws/sagemaker_endpoints.py's stop on its own
# endpoint with the execution role: these calls, beyond what the worker's own files call.
IDLE_STOP: list[tuple[str, str]] = [
    ("sagemaker", "DescribeEndpoint"), ("sagemaker", "DeleteEndpoint"),
    ("application-autoscaling", "DescribeScalingPolicies"), ("application-autoscaling", "DeleteScalingPolicy"),
    ("application-autoscaling", "DescribeScalableTargets"), ("application-autoscaling", "DeregisterScalableTarget"),
    ("cloudwatch", "DeleteAlarms"), ("s3", "GetObject"), ("s3", "PutObject"),
]

ADMIN: dict[tuple[str, str], list[str]] = {
    ("sts", "GetCallerIdentity"): [],
    ("cloudformation", "DescribeStacks"): ["cloudformation:DescribeStacks"],
    ("cloudformation", "DescribeStackEvents"): ["cloudformation:DescribeStackEvents"],
    ("cloudformation", "CreateStack"): ["cloudformation:CreateStack"],
    ("cloudformation", "UpdateStack"): ["cloudformation:UpdateStack"],
    ("cloudformation", "DeleteStack"): ["cloudformation:DeleteStack"],
    ("cloudformation", "DetectStackDrift"): ["cloudformation:DetectStackDrift"],
    ("cloudformation", "DescribeStackDriftDetectionStatus"): ["cloudformation:DescribeStackDriftDetectionStatus"],
    ("s3", "PutObject"): ["s3:PutObject"],
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    ("s3", "DeleteObjects"): ["s3:DeleteObject"],
    ("s3", "DeleteBucket"): ["s3:DeleteBucket"],
    ("codebuild", "StartBuild"): ["codebuild:StartBuild"],
    ("codebuild", "BatchGetBuilds"): ["codebuild:BatchGetBuilds"],
    ("logs", "GetLogEvents"): ["logs:GetLogEvents"],
    ("ecr", "DescribeImages"): ["ecr:DescribeImages"],
    ("ecr", "ListImages"): ["ecr:ListImages"],
    ("ecr", "BatchDeleteImage"): ["ecr:BatchDeleteImage"],
    # aws/price_list.py (`aws prices refresh`): whoever refreshes the price table, not a designer's ComfyUI.
    ("pricing", "GetProducts"): ["pricing:GetProducts"],
    ("sts", "AssumeRole"): ["sts:AssumeRole"],
    ("s3", "HeadObject"): ["s3:GetObject"],
    ("s3", "DeleteObject"): ["s3:DeleteObject"],
    ("ecr", "BatchGetImage"): ["ecr:BatchGetImage"],
    ("sagemaker", "DescribeEndpointConfig"): ["sagemaker:DescribeEndpointConfig"],
    # aws/doctor.py and aws/teardown.py: this store's endpoints (teardown: and the configs and models stopped
    # endpoints keep).
    ("sagemaker", "ListEndpoints"): ["sagemaker:ListEndpoints"],
    ("sagemaker", "ListTags"): ["sagemaker:ListTags"],
    ("sagemaker", "DescribeEndpoint"): ["sagemaker:DescribeEndpoint"],
    # `aws status` reads the stack's budget: "Actions, resources, and condition keys for AWS Budget Service".
    ("budgets", "DescribeBudget"): ["budgets:ViewBudget"],
    ("sagemaker", "ListEndpointConfigs"): ["sagemaker:ListEndpointConfigs"],
    ("sagemaker", "ListModels"): ["sagemaker:ListModels"],
    ("sagemaker", "DeleteEndpoint"): ["sagemaker:DeleteEndpoint"],
    ("sagemaker", "DeleteEndpointConfig"): ["sagemaker:DeleteEndpointConfig"],
    ("sagemaker", "DeleteModel"): ["sagemaker:DeleteModel"],
    # aws/teardown.py: the log groups SageMaker made for the store's endpoints and CodeBuild for the build.
    ("logs", "DescribeLogGroups"): ["logs:DescribeLogGroups"],
    ("logs", "DeleteLogGroup"): ["logs:DeleteLogGroup"],
}

# When the configuration sets s3_sse to "aws:kms": what each S3 operation needs on the store's KMS key, besides
# ACTIONS. Every S3 operation in ACTIONS has an entry here ([] = none), so a new one must be decided.
# Sources: S3 User Guide "Using server-side encryption with AWS KMS keys (SSE-KMS)" (upload: kms:GenerateDataKey,
# download: kms:Decrypt) and "Multipart upload API and permissions" / AWS Knowledge Center "Why do I need
# permission to decrypt the AWS KMS key when I run Amazon S3 multipart uploads with SSE-KMS?" (a multipart
# upload needs kms:Decrypt too). HeadObject, ListObjectsV2 and DeleteObject read or drop no object data.
KMS_WHEN_SSE_KMS: dict[tuple[str, str], list[str]] = {
    ("s3", "GetObject"): ["kms:Decrypt"],
    ("s3", "HeadObject"): [],
    ("s3", "PutObject"): ["kms:GenerateDataKey"],
    ("s3", "DeleteObject"): [],
    ("s3", "ListObjectsV2"): [],
    ("s3", "upload_file"): ["kms:GenerateDataKey", "kms:Decrypt"],
    ("s3", "download_file"): ["kms:Decrypt"],
}

# What the execution role passed to CreateModel must allow SageMaker to do for what the call creates (the
# worker's own calls come on top: see the unit test). Sources: SageMaker's "How to use SageMaker AI execution
# roles" (CreateModel API: Execution Role Permissions) and "Asynchronous inference" prerequisites (SageMaker
# reads InputLocation and writes S3OutputPath / S3FailurePath with the execution role).
EXECUTION_ROLE: dict[tuple[str, str], list[str]] = {
    ("sagemaker", "CreateModel"): [
        "cloudwatch:PutMetricData", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
        "logs:DescribeLogStreams", "s3:GetObject", "s3:ListBucket", "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
    # An async config's NotificationConfig: "In order to receive Amazon SNS notifications, your IAM role must have
    # sns:Publish permissions" (Developer Guide, "Check prediction results"), on the stack's topic only.
    ("sagemaker", "CreateEndpointConfig"): [
        "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket", "sns:Publish"],
    # Developer Guide, "Auto-Rollback Configuration and Monitoring": "Ensure that your IAM execution role has
    # permission to perform the cloudwatch:DescribeAlarms action on the auto-rollback alarms you specify" (the
    # alarm every UpdateEndpoint names, aws/deploy_guardrails.py; granted on alarm:cs-* only).
    ("sagemaker", "UpdateEndpoint"): ["cloudwatch:DescribeAlarms"],
}

# Actions granted only on one resource and under one condition, wherever they appear.
SERVICE_LINKED_ROLE_ARN = ("arn:aws:iam::*:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                           "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
SCOPED: dict[str, dict] = {
    "iam:CreateServiceLinkedRole": {
        "Resource": SERVICE_LINKED_ROLE_ARN,
        "Condition": {"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
    },
    "iam:PassRole": {
        "Resource": "arn:aws:iam::ACCOUNT_ID:role/EXECUTION_ROLE_NAME",
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    },
}

# Everything SageMaker-side the extension makes is named with aws/naming.py's PREFIX (`cs-`): models, endpoint
# configs, endpoints, the backlog alarm, and so the endpoints' log groups. The policies grant SageMaker's
# resource-level actions on these names only (ARN formats: Service Authorization Reference, "Actions, resources,
# and condition keys for Amazon SageMaker AI", Resource types; SageMaker lowercases names in ARNs, and so do ours).
NAMED = "cs-*"
SAGEMAKER_RESOURCES = {kind: f"arn:aws:sagemaker:*:ACCOUNT_ID:{kind}/{NAMED}"
                       for kind in ("model", "endpoint-config", "endpoint")}
# The log groups SageMaker hosting writes an endpoint's logs to (/aws/sagemaker/Endpoints/<endpoint>); readers and
# the execution role are scoped to the extension's endpoints' groups (their streams' ARNs lie below the group's).
ENDPOINT_LOG_GROUPS = f"arn:aws:logs:*:ACCOUNT_ID:log-group:/aws/sagemaker/Endpoints/{NAMED}"
# What the execution role pulls: the stack's repository only (ECR User Guide, "Private repository policies";
# Service Authorization Reference, "Actions, resources, and condition keys for Amazon ECR").
WORKER_REPOSITORY_ARN = "arn:aws:ecr:REGION:ACCOUNT_ID:repository/WORKER_REPOSITORY"
# Connect's Check simulates its caller (aws/connect.py: the user, or for a role session its role). A user may
# simulate only itself (IAM User Guide, "IAM policy elements: Variables and tags": ${aws:username}, the example
# "Allow IAM users to manage their own credentials"; a user name is unique in the account whatever its path, so
# user/*/${aws:username} is that user under a path). A role session has no variable that names its role (its
# aws:userid is the role's id and the session, and IAM takes only ARNs or "*" in Resource), so roles stay roles
# of this account, never users: no more than a designer working through a role must simulate. Nothing simulates
# the stack's own roles.
SIMULATED_PRINCIPALS = ["arn:aws:iam::ACCOUNT_ID:user/${aws:username}",
                        "arn:aws:iam::ACCOUNT_ID:user/*/${aws:username}", "arn:aws:iam::ACCOUNT_ID:role/*"]

# Every action a policy grants on Resource "*", and why it cannot be narrowed. Source of "takes no resource": the
# Service Authorization Reference page of its service (the action's Resource types column is empty).
UNSCOPED: dict[str, str] = {
    "sagemaker:ListEndpoints": "takes no resource (Actions, resources, and condition keys for Amazon SageMaker AI)",
    "sagemaker:ListEndpointConfigs": "takes no resource (ibid.)",
    "sagemaker:ListModels": "takes no resource (ibid.)",
    "application-autoscaling:DescribeScalableTargets": "takes no resource (Actions, resources, and condition keys "
                                                       "for AWS Application Auto Scaling)",
    "application-autoscaling:DescribeScalingPolicies": "takes no resource (ibid.)",
    # Scalable-target ARNs carry an id Application Auto Scaling assigns, not the endpoint's name. What limits
    # them to the extension's endpoints is Application Auto Scaling's check, with the caller's permissions, of
    # sagemaker:DescribeEndpoint / UpdateEndpointWeightsAndCapacities on the target (granted on cs-* only).
    "application-autoscaling:RegisterScalableTarget": "its ScalableTarget ARN has no name to scope by (ibid.)",
    "application-autoscaling:DeregisterScalableTarget": "its ScalableTarget ARN has no name to scope by (ibid.)",
    "application-autoscaling:PutScalingPolicy": "its ScalableTarget ARN has no name to scope by (ibid.)",
    "application-autoscaling:DeleteScalingPolicy": "its ScalableTarget ARN has no name to scope by (ibid.)",
    # Application Auto Scaling User Guide, "Permissions validation for API calls on target resources": before
    # RegisterScalableTarget / PutScalingPolicy it calls PutMetricAlarm and DeleteAlarms with no parameters and
    # DescribeAlarms with MaxRecords 1, as the caller; a grant on alarm:cs-* does not cover an alarm that has no
    # name, and every scaling set-up would fail.
    "cloudwatch:DescribeAlarms": "Application Auto Scaling's permissions validation names no alarm",
    "cloudwatch:PutMetricAlarm": "Application Auto Scaling's permissions validation names no alarm",
    "cloudwatch:DeleteAlarms": "Application Auto Scaling's permissions validation names no alarm",
    "cloudwatch:PutMetricData": "takes no resource (Actions, resources, and condition keys for Amazon CloudWatch)",
    "cloudwatch:GetMetricData": "takes no resource (ibid.)",
    "ecr:GetAuthorizationToken": "takes no resource (Actions, resources, and condition keys for Amazon ECR)",
    "servicequotas:ListServiceQuotas": "takes no resource (Actions, resources, and condition keys for Service Quotas)",
    "servicequotas:ListAWSDefaultServiceQuotas": "takes no resource (ibid.)",
}
# The store's KMS key (placeholder, like STORE_BUCKET) and the statement that grants it, only used through S3.
KMS_KEY_ARN = "arn:aws:kms:REGION:ACCOUNT_ID:key/KMS_KEY_ID"
KMS_STATEMENT_SID = "StoreKmsKeyWhenSseKms"
KMS_CONDITION = {"StringEquals": {"kms:ViaService": "s3.REGION.amazonaws.com"}}
