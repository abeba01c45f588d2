"""A conditional write whose answer is lost is not a lost race.

The PUT lands, its answer never comes back (a dropped connection), and botocore's standard retry
mode sends it again: the resend meets our own object and S3 answers 412. The store must tell that
from another writer's object. The answer is dropped inside botocore's real send path (a
`before-send` handler that lets moto apply the PUT, then raises ConnectionClosedError, which
botocore catches as a failed attempt), so the retry that runs is the one production runs, with the
client `aws/clients.py` makes. The folder store has no such path: `os.link` / `os.replace` answer
in the same call, and nothing resends them."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.aws import clients
from comfyui_sagemaker.aws.s3_store import WRITE_NONCE, S3Store
from comfyui_sagemaker.core.store import KeyExists, PreconditionFailed

BUCKET, KEY = "lost-answer", "leases/env.json"


class LoseFirstAnswer:
    """On the first `count` PutObject calls: moto stores the object, then the answer is lost."""

    def __init__(self, count: int = 1):
        self.count, self.lost, self.sent = count, 0, 0

    def __call__(self, request, **kwargs):
        from botocore.exceptions import ConnectionClosedError
        from moto.core.models import botocore_stubber

        self.sent += 1
        if self.lost >= self.count:
            return None  # moto's own handler answers
        self.lost += 1
        botocore_stubber(event_name="before-send.s3.PutObject", request=request)  # the PUT lands
        raise ConnectionClosedError(endpoint_url=request.url)


@pytest.fixture
def s3(aws_env):
    import moto  # noqa: F401 - moto's botocore hook must be in place before the client is made
    from moto import mock_aws

    clients.reset()
    with mock_aws():
        client = clients.client("s3", "us-east-1")  # the production client: standard mode, 5 attempts
        client.create_bucket(Bucket=BUCKET)
        yield client
    clients.reset()


def lose_answers(client, count: int = 1) -> LoseFirstAnswer:
    handler = LoseFirstAnswer(count)
    client.meta.events.register_first("before-send.s3.PutObject", handler)
    return handler


def test_create_whose_answer_was_lost_is_the_callers_own(s3):
    store = S3Store(BUCKET, "team", s3_client=s3)
    lost = lose_answers(s3)
    etag = store.create(KEY, b"mine")
    assert lost.sent == 2  # the first attempt landed, its answer lost; the retry met our own object
    assert (store.get(KEY).data, store.get(KEY).etag) == (b"mine", etag)


def test_replace_whose_answer_was_lost_is_the_callers_own(s3):
    store = S3Store(BUCKET, "team", s3_client=s3)
    first = store.create(KEY, b"v1")
    lost = lose_answers(s3)
    etag = store.replace(KEY, b"v2", if_match=first)
    assert lost.sent == 2
    assert (store.get(KEY).data, store.get(KEY).etag) == (b"v2", etag)
    assert store.replace(KEY, b"v3", if_match=etag)  # the holder keeps its lease


def test_a_lost_answer_then_another_writer_is_still_a_lost_race(s3):
    """Our PUT was refused; the retry's 412 is someone else's object: a real conflict."""
    store = S3Store(BUCKET, "team", s3_client=s3)
    store.put(KEY, b"theirs")  # before any conditional write of ours
    lose_answers(s3)
    with pytest.raises(KeyExists):
        store.create(KEY, b"mine")  # the first attempt's 412 is lost; the retry gets 412 too
    assert store.get(KEY).data == b"theirs"


def test_a_retried_replace_that_lost_to_another_writer_is_precondition_failed(s3):
    store = S3Store(BUCKET, "team", s3_client=s3)
    first = store.create(KEY, b"v1")
    store.replace(KEY, b"theirs", if_match=first)
    lose_answers(s3)
    with pytest.raises(PreconditionFailed):
        store.replace(KEY, b"mine", if_match=first)


def test_every_conditional_write_carries_its_nonce(s3):
    store = S3Store(BUCKET, "team", s3_client=s3)
    store.create(KEY, b"x")
    nonce = s3.head_object(Bucket=BUCKET, Key=f"team/{KEY}")["Metadata"][WRITE_NONCE]
    assert len(nonce) == 32
