import json

import pytest
from comfyui_sagemaker.core import config
from comfyui_sagemaker.core.errors import ConfigInvalid

pytestmark = pytest.mark.floor  # also on the lowest pydantic allowed (tests/unit/test_boto3_floor.py)


def test_defaults_are_the_embedded_folder_store(tmp_path):
    cfg = config.load(tmp_path, environ={})
    assert cfg.store == "folder"
    assert cfg.store_path == str(tmp_path / "store")
    assert cfg.allowed_hosts == ()


def test_environment_wins_over_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"store": "s3", "s3_bucket": "from-file", "region": "eu-west-1"}))
    cfg = config.load(tmp_path, environ={"COMFYUI_SAGEMAKER_S3_BUCKET": "from-env"})
    assert (cfg.store, cfg.s3_bucket, cfg.region) == ("s3", "from-env", "eu-west-1")


def test_allowed_hosts_from_env_is_a_list(tmp_path):
    cfg = config.load(tmp_path, environ={"COMFYUI_SAGEMAKER_ALLOWED_HOSTS": "Studio.local, box"})
    assert cfg.allowed_hosts == ("studio.local", "box")


@pytest.mark.parametrize(
    "content, needle",
    [
        ("not json", "not readable JSON"),
        ("[1]", "JSON object"),
        ('{"store": "ftp"}', "store"),
        ('{"max_instances": "many"}', "max_instances"),
        ('{"max_instances": 0}', "from 1 to 100"),
        ('{"surprise": 1}', "unknown keys"),
        ('{"store": "s3"}', "s3_bucket"),
        ('{"allowed_hosts": "a"}', None),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, content, needle):
    (tmp_path / "config.json").write_text(content)
    if needle is None:
        assert config.load(tmp_path, environ={}).allowed_hosts == ("a",)
        return
    with pytest.raises(ConfigInvalid) as exc:
        config.load(tmp_path, environ={})
    assert needle in exc.value.message


def test_public_view_never_carries_the_token(tmp_path):
    cfg = config.load(tmp_path, environ={"COMFYUI_SAGEMAKER_TOKEN": "s3cret-token"})
    assert cfg.token == "s3cret-token"
    assert "s3cret-token" not in json.dumps(cfg.public())
