"""The CloudFormation stack that gives a designer everything on AWS in one command (`aws setup`):

- the store bucket (encrypted, public access blocked, TLS only; execution records, async requests and
  results, worker reports and published input-sync sets expire after RetentionDays, the days of
  core/retention.py's one constant, the retention a designer's ComfyUI applies too; idempotency keys after a
  day, unfinished multipart uploads after 2; blobs have no rule: they are content-addressed and shared, so
  only the designer's blob sweep, which knows what still refers to them, removes them);
- an ECR repository for the worker image (immutable tags, one per build; only untagged images expire) and a
  CodeBuild project that builds the image from this repository's source (a zip the CLI uploads to the
  bucket) and pushes it;
- the SageMaker execution role, and managed policies for designers, artists and the gateway;
- the SNS topic async endpoints announce each run's end on (aws/notifications.py: each ComfyUI subscribes a
  queue of its own to it while it runs; a topic bills per message published, nothing while idle).

The IAM documents are aws/iam/*.json themselves, their placeholders turned into CloudFormation
references: one source of truth for the policies, whether applied by hand or by the stack.
`aws/comfyui-sagemaker.template.json` is this module's output (a test keeps the two equal), for
the console or any other tool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..core import instance_allowlist
from ..core.retention import RETENTION_DAYS, SYNCED_INPUTS
from ..core.worker_contract import REPORTS
from .endpoint_logs import LOG_RETENTION_DAYS, RETENTION_VALUES

IAM = Path(__file__).resolve().parent / "iam"
TEMPLATE_FILE = Path(__file__).resolve().parent / "comfyui-sagemaker.template.json"
SOURCE_KEY = "source/comfyui-sagemaker.zip"  # under the store prefix
INSTANCE_TAG = "comfyui-sagemaker-instance"  # its value: the instance id of the artist's ComfyUI (core/identity.py)
# Placeholders of aws/iam/*.json -> what the stack puts there.
SUBSTITUTIONS = {
    "STORE_BUCKET": "${StoreBucket}",
    "STORE_PREFIX": "${StorePrefix}",
    "ACCOUNT_ID": "${AWS::AccountId}",
    "REGION": "${AWS::Region}",
    "EXECUTION_ROLE_NAME": "${ExecutionRole}",
    "WORKER_REPOSITORY": "${Repository}",  # Ref of an ECR repository is its name
    "NOTIFICATION_TOPIC": "${AsyncResultsTopic.TopicName}",
    # One managed policy for every artist, each scoped to its own ComfyUI by a tag on the artist's IAM user or
    # role (IAM User Guide, "IAM policy elements: Variables and tags": ${aws:PrincipalTag/...}; `${!` is
    # CloudFormation's escape, IAM receives `${`). An artist without the tag writes none of the per-owner keys.
    "ARTIST_INSTANCE_ID": "${!aws:PrincipalTag/" + INSTANCE_TAG + "}",
}
# aws/iam/*.json name the commercial partition; the stack's ARNs are in the partition it is deployed to
# (aws-cn, aws-us-gov): CloudFormation User Guide, "Pseudo parameters reference" (AWS::Partition, AWS::URLSuffix).
PARTITION_ARN = re.compile(r"^arn:aws:")
KMS_SID = "StoreKmsKeyWhenSseKms"
# What S3 expires after RetentionDays (lifecycle rule id, prefix): a run's record and its async request and
# result live equally long (a ComfyUI back within the retention still finds its result); worker reports of
# an endpoint that lives on (one per instance start) and input-sync sets of a ComfyUI that is gone go too.
RETAINED = (("expired-execution-records", "executions/"), ("async-requests-and-results", "async/"),
            ("worker-reports", REPORTS), ("input-sync-sets", SYNCED_INPUTS))
# The designer policy's statement whose sagemaker:InstanceTypes condition is the configuration's
# allowed_instance_types (core/instance_allowlist.py): in the stack, the AllowedInstanceTypes parameter.
INSTANCE_TYPES_SID = "EndpointConfigsOnAllowedInstanceTypes"
# IMAGE_TAG comes with each build (aws setup: the source's digest, aws/worker_image.py); a build started by
# hand gets one of its own. The repository's tags are immutable: a tag is never pushed twice.
BUILDSPEC = """version: 0.2
phases:
  pre_build:
    commands:
      - REGISTRY=${REPOSITORY_URI%%/*}
      - IMAGE_TAG=${IMAGE_TAG:-build-$CODEBUILD_BUILD_NUMBER}
      - aws ecr get-login-password --region $AWS_REGION | docker login --username AWS --password-stdin $REGISTRY
  build:
    commands:
      - docker build -f worker/Dockerfile -t $REPOSITORY_URI:$IMAGE_TAG .
  post_build:
    commands:
      - docker push $REPOSITORY_URI:$IMAGE_TAG
      - docker inspect --format '{{index .RepoDigests 0}}' $REPOSITORY_URI:$IMAGE_TAG
"""


# `aws setup --monthly-budget N --budget-email ADDRESS`: an AWS Budgets cost budget of N USD a month that emails
# when AWS forecasts the month's spend above it (CloudFormation Template Reference, "AWS::Budgets::Budget"; the
# values are the Budgets API's: BudgetType COST, TimeUnit MONTHLY, NotificationType FORECASTED, ComparisonOperator
# GREATER_THAN, ThresholdType PERCENTAGE, SubscriptionType EMAIL). It counts the whole account's spend: a budget
# filtered by tag counts only tags activated as cost allocation tags in the Billing console (up to a day, by the
# payer account), and an inactive tag would count $0, an alarm that never rings. A budget costs nothing for the
# first two per account (AWS Budgets pricing).
BUDGET_PARAMETERS = {
    "MonthlyBudget": {"Type": "Number", "Default": 0, "MinValue": 0, "MaxValue": 1000000,
                      "Description": "USD a month: AWS Budgets emails BudgetEmail when the month's forecast spend of "
                                     "the whole account passes it (0: no budget)"},
    "BudgetEmail": {"Type": "String", "Default": "", "AllowedPattern": r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
                    "Description": "who is emailed when the forecast passes MonthlyBudget"},
}
HAS_BUDGET = {"Fn::Not": [{"Fn::Equals": [{"Ref": "MonthlyBudget"}, "0"]}]}
BUDGET_RULES = {"BudgetNeedsAnEmail": {"RuleCondition": HAS_BUDGET, "Assertions": [{
    "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": "BudgetEmail"}, ""]}]},
    "AssertDescription": "a MonthlyBudget needs a BudgetEmail to tell"}]}}
BUDGET = {
    "Type": "AWS::Budgets::Budget",
    "Condition": "HasBudget",
    "Properties": {
        "Budget": {"BudgetName": {"Fn::Sub": "${AWS::StackName}-monthly"}, "BudgetType": "COST", "TimeUnit": "MONTHLY",
                   "BudgetLimit": {"Amount": {"Ref": "MonthlyBudget"}, "Unit": "USD"}},
        "NotificationsWithSubscribers": [{
            "Notification": {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN", "Threshold": 100,
                             "ThresholdType": "PERCENTAGE"},
            "Subscribers": [{"SubscriptionType": "EMAIL", "Address": {"Ref": "BudgetEmail"}}]}],
    },
}


def _sub(value: object) -> object:
    """A policy document with its placeholders as Fn::Sub references."""
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    if isinstance(value, str) and (any(p in value for p in SUBSTITUTIONS) or PARTITION_ARN.match(value)):
        # An IAM policy variable (${aws:username}) reaches IAM as it is written: `${!` is Fn::Sub's escape.
        out = PARTITION_ARN.sub("arn:${AWS::Partition}:", value.replace("${aws:", "${!aws:"))
        for placeholder, ref in SUBSTITUTIONS.items():
            out = re.sub(rf"\b{placeholder}\b", ref.replace("\\", "\\\\"), out)
        return {"Fn::Sub": out} if "${" in out else out
    return value


def policy_document(name: str) -> dict:
    """aws/iam/<name>-policy.json for the stack: the KMS statement only when a key is given."""
    doc = json.loads((IAM / f"{name}-policy.json").read_text())
    without_kms: list[object] = []
    with_kms: list[object] = []
    for statement in doc["Statement"]:
        if statement.get("Sid") == KMS_SID:
            via = {"Fn::Sub": "s3.${AWS::Region}.${AWS::URLSuffix}"}
            statement = {**statement, "Resource": {"Ref": "KmsKeyArn"},
                         "Condition": {"StringEquals": {"kms:ViaService": via}}}
            with_kms.append(_sub(statement))
        elif statement.get("Sid") == INSTANCE_TYPES_SID:
            condition = {**statement["Condition"], "ForAllValues:StringLike": {
                "sagemaker:InstanceTypes": {"Ref": "AllowedInstanceTypes"}}}
            rest = _sub({k: v for k, v in statement.items() if k != "Condition"})
            assert isinstance(rest, dict)
            statement = {**rest, "Condition": condition}
            without_kms.append(statement)
            with_kms.append(statement)
        else:
            without_kms.append(_sub(statement))
            with_kms.append(_sub(statement))
    # One list or the other as a whole: an AWS::NoValue inside the list is not understood by every tool.
    return {"Version": doc["Version"], "Statement": {"Fn::If": ["HasKmsKey", with_kms, without_kms]}}


# What CodeBuild does: read the source zip, push to the repository, log. CodeBuild reads the bucket's ACL and
# location before it downloads an S3 source (CodeBuild User Guide, "Allow CodeBuild to interact with other AWS
# services": the service role's S3BucketIdentity statement), granted here on the store's bucket only.
BUILD_STATEMENTS = [
    {"Effect": "Allow", "Action": ["s3:GetBucketAcl", "s3:GetBucketLocation"],
     "Resource": {"Fn::GetAtt": ["StoreBucket", "Arn"]}},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
     "Resource": {"Fn::Sub": "${StoreBucket.Arn}/${StorePrefix}/" + SOURCE_KEY}},
    {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    {"Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                                   "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage"],
     "Resource": {"Fn::GetAtt": ["Repository", "Arn"]}},
    # The build's own log group (BuildLogs, made by the stack with a retention), nothing else: its Arn ends in
    # `:*`, which covers its streams (CloudFormation User Guide, "AWS::Logs::LogGroup": return values).
    {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
     "Resource": {"Fn::GetAtt": ["BuildLogs", "Arn"]}},
]

# SageMaker assumes the execution role only for this account's SageMaker resources in the stack's region: SageMaker
# Developer Guide, "Cross-service confused deputy prevention", SageMaker AI Inference (real-time, serverless and
# async hosting): aws:SourceArn `arn:<partition>:sagemaker:<region>:<account>:*` in exactly that form ("do not
# replace it with the full ARN of a specific model or endpoint"), with aws:SourceAccount (IAM User Guide, "AWS
# global condition context keys": its account must be the one in aws:SourceArn).
EXECUTION_ROLE_TRUST = {
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                  "ArnLike": {"aws:SourceArn": {
                      "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*"}}},
}


def template() -> dict:
    bucket_encryption = {"Fn::If": ["HasKmsKey",
                                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                       "KMSMasterKeyID": {"Ref": "KmsKeyArn"}},
                                     "BucketKeyEnabled": True},
                                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "comfyui-sagemaker: store bucket, worker image build, SageMaker execution role, "
                       "designer, artist and gateway policies",
        "Parameters": {
            "BucketName": {"Type": "String", "Default": "",
                           "Description": "the store bucket's name (empty: CloudFormation makes one up)",
                           "AllowedPattern": "^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"},
            "StorePrefix": {"Type": "String", "Default": "comfyui", "AllowedPattern": "^[A-Za-z0-9._-]{1,100}$",
                            "Description": "the store's key prefix in the bucket"},
            "RepositoryName": {"Type": "String", "Default": "",
                               "AllowedPattern": "^$|^[a-z0-9]+(?:[._-][a-z0-9]+)*$",
                               "Description": "the ECR repository of the worker image (empty: CloudFormation "
                                              "makes one up, so two stacks in one account and region never "
                                              "collide)"},
            "RetentionDays": {
                "Type": "Number", "Default": RETENTION_DAYS, "MinValue": 1, "MaxValue": 3650,
                "Description": "days S3 keeps execution records, async requests and results, and worker "
                               "reports (the ComfyUI's execution_retention_days: `aws setup` passes it); the "
                               "blobs nothing refers to any more are then removed by a designer's ComfyUI"},
            "LogRetentionDays": {
                "Type": "Number", "Default": LOG_RETENTION_DAYS, "MinValue": 1, "MaxValue": RETENTION_VALUES[-1],
                "AllowedValues": list(RETENTION_VALUES),
                "Description": "days CloudWatch Logs keeps the image build's log (one of CloudWatch's "
                               "retention values)"},
            "AllowedInstanceTypes": {
                "Type": "CommaDelimitedList", "Default": ",".join(instance_allowlist.DEFAULT),
                "Description": "what designers may run endpoints on: instance types (ml.g5.xlarge) or families "
                               "(ml.g5.*), the designer policy's sagemaker:InstanceTypes condition on "
                               "CreateEndpointConfig and the configuration's allowed_instance_types"},
            "KmsKeyArn": {"Type": "String", "Default": "",
                          "Description": "a KMS key for the bucket (empty: SSE-S3)",
                          "AllowedPattern": "^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$"},
            **BUDGET_PARAMETERS,
        },
        "Conditions": {
            "HasBucketName": {"Fn::Not": [{"Fn::Equals": [{"Ref": "BucketName"}, ""]}]},
            "HasRepositoryName": {"Fn::Not": [{"Fn::Equals": [{"Ref": "RepositoryName"}, ""]}]},
            "HasKmsKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]},
            "HasBudget": HAS_BUDGET,
        },
        "Rules": BUDGET_RULES,
        "Resources": {
            "Budget": BUDGET,
            "StoreBucket": {
                "Type": "AWS::S3::Bucket",
                "DeletionPolicy": "Retain",  # `aws teardown` empties and deletes it only when told
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "BucketName": {"Fn::If": ["HasBucketName", {"Ref": "BucketName"}, {"Ref": "AWS::NoValue"}]},
                    "BucketEncryption": {"ServerSideEncryptionConfiguration": [bucket_encryption]},
                    "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
                    "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                    "LifecycleConfiguration": {"Rules": [
                        *({"Id": rule, "Status": "Enabled", "ExpirationInDays": {"Ref": "RetentionDays"},
                           "Prefix": {"Fn::Sub": "${StorePrefix}/" + prefix}} for rule, prefix in RETAINED),
                        # Idempotency keys live 24 hours (the Comfy API v2's window; core/v2/idempotency.py).
                        {"Id": "expired-idempotency-keys", "Status": "Enabled", "ExpirationInDays": 1,
                         "Prefix": {"Fn::Sub": "${StorePrefix}/idempotency/"}},
                        {"Id": "unfinished-uploads", "Status": "Enabled",
                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
                    ]},
                },
            },
            "StoreBucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "StoreBucket"}, "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                   "Resource": [{"Fn::GetAtt": ["StoreBucket", "Arn"]},
                                                {"Fn::Sub": "${StoreBucket.Arn}/*"}],
                                   "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}},
            },
            "Repository": {
                "Type": "AWS::ECR::Repository",
                "Properties": {
                    "RepositoryName": {"Fn::If": ["HasRepositoryName", {"Ref": "RepositoryName"},
                                                  {"Ref": "AWS::NoValue"}]},
                    "ImageScanningConfiguration": {"ScanOnPush": True},
                    # One tag per build, never moved (aws/worker_image.py), and endpoint configs name images by
                    # digest. The lifecycle rule selects untagged images only (left by a push that failed half
                    # way), so it never expires an image an endpoint config names: ECR User Guide, "Lifecycle
                    # policy properties" (tagStatus untagged, countType sinceImagePushed).
                    "ImageTagMutability": "IMMUTABLE",
                    "LifecyclePolicy": {"LifecyclePolicyText": json.dumps({"rules": [{
                        "rulePriority": 1, "description": "expire untagged images after 14 days",
                        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                      "countUnit": "days", "countNumber": 14},
                        "action": {"type": "expire"}}]})},
                },
            },
            "BuildRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"},
                        "Action": "sts:AssumeRole"}]},
                    "Policies": [{"PolicyName": "build-the-worker-image", "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": {"Fn::If": ["HasKmsKey", [*BUILD_STATEMENTS, {
                            "Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Ref": "KmsKeyArn"}}],
                            BUILD_STATEMENTS]}}}],
                },
            },
            # CodeBuild would make /aws/codebuild/<project> itself, kept for good; the stack makes the group the
            # project logs to (LogsConfig), with a retention, and deletes it with the stack.
            "BuildLogs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": {"Fn::Sub": "/aws/codebuild/${AWS::StackName}-worker-image"},
                               "RetentionInDays": {"Ref": "LogRetentionDays"}},
            },
            "ImageBuild": {
                "Type": "AWS::CodeBuild::Project",
                "Properties": {
                    "Description": "builds the comfyui-sagemaker worker image from the uploaded source",
                    "ServiceRole": {"Fn::GetAtt": ["BuildRole", "Arn"]},
                    "Source": {"Type": "S3", "Location": {"Fn::Sub": "${StoreBucket}/${StorePrefix}/" + SOURCE_KEY},
                               "BuildSpec": BUILDSPEC},
                    "Artifacts": {"Type": "NO_ARTIFACTS"},
                    "Environment": {
                        "Type": "LINUX_CONTAINER", "ComputeType": "BUILD_GENERAL1_LARGE",
                        "Image": "aws/codebuild/standard:7.0", "PrivilegedMode": True,  # docker build
                        "EnvironmentVariables": [
                            {"Name": "REPOSITORY_URI", "Value": {"Fn::GetAtt": ["Repository", "RepositoryUri"]}}]},
                    "LogsConfig": {"CloudWatchLogs": {"Status": "ENABLED", "GroupName": {"Ref": "BuildLogs"}}},
                    "TimeoutInMinutes": 60,
                },
            },
            # Unencrypted: a notice names a run and where its result is, never its content (the topic would need
            # a KMS key policy letting SageMaker's role use the key).
            "AsyncResultsTopic": {"Type": "AWS::SNS::Topic", "Properties": {
                "DisplayName": "comfyui-sagemaker async results"}},
            "ExecutionRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [EXECUTION_ROLE_TRUST]},
                    "Policies": [{"PolicyName": "comfyui-sagemaker-endpoint",
                                  "PolicyDocument": policy_document("execution-role")}],
                },
            },
            "DesignerPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Description": "comfyui-sagemaker: publish, deploy, scale, delete, invoke "
                               "(aws/iam/designer-policy.json)",
                "PolicyDocument": policy_document("designer")}},
            "ArtistPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Description": "comfyui-sagemaker: read and run templates, writing only the runs of the ComfyUI "
                               f"named by the artist's tag {INSTANCE_TAG} (aws/iam/artist-policy.json)",
                "PolicyDocument": policy_document("artist")}},
            # A second policy for artists: IAM's 6,144 characters of a managed policy leave no room in the first
            # with the longest bucket name and prefix the stack accepts (IAM User Guide, "IAM and AWS STS quotas").
            "ArtistNoticesPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Description": "comfyui-sagemaker: an artist's ComfyUI receives its async runs' ends on a queue of its "
                               f"own, named by the artist's tag {INSTANCE_TAG} (aws/iam/artist-notices-policy.json)",
                "PolicyDocument": policy_document("artist-notices")}},
            "GatewayPolicy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "Description": "comfyui-sagemaker: the gateway serves runs and the Comfy API v2 for every owner "
                               "(aws/iam/gateway-policy.json)",
                "PolicyDocument": policy_document("gateway")}},
        },
        "Outputs": {
            "StoreBucket": {"Value": {"Ref": "StoreBucket"}},
            "StorePrefix": {"Value": {"Ref": "StorePrefix"}},
            "Region": {"Value": {"Ref": "AWS::Region"}},
            "SageMakerRoleArn": {"Value": {"Fn::GetAtt": ["ExecutionRole", "Arn"]}},
            "RepositoryUri": {"Value": {"Fn::GetAtt": ["Repository", "RepositoryUri"]}},
            "BuildProject": {"Value": {"Ref": "ImageBuild"}},
            "DesignerPolicyArn": {"Value": {"Ref": "DesignerPolicy"}},
            "ArtistPolicyArn": {"Value": {"Ref": "ArtistPolicy"}},
            "ArtistNoticesPolicyArn": {"Value": {"Ref": "ArtistNoticesPolicy"}},
            "GatewayPolicyArn": {"Value": {"Ref": "GatewayPolicy"}},
            "KmsKeyArn": {"Value": {"Ref": "KmsKeyArn"}},
            "NotificationTopicArn": {"Value": {"Ref": "AsyncResultsTopic"}},
            "BudgetName": {"Condition": "HasBudget", "Value": {"Ref": "Budget"}},
            "AllowedInstanceTypes": {"Value": {"Fn::Join": [",", {"Ref": "AllowedInstanceTypes"}]}},
        },
    }


def template_json() -> str:
    return json.dumps(template(), indent=2) + "\n"


def write_template_file() -> Path:
    TEMPLATE_FILE.write_text(template_json())
    return TEMPLATE_FILE
