"""PUT /sagemaker/config's `changes` are checked by the configuration's own model (core/config.py's Config) and
documented from it: each editable key's schema IS Config's, and a bad value is refused in the words of Config's
field (its description), with the code the Connect panel knows. Marked floor (pydantic 2.0 too)."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import config
from comfyui_sagemaker.core.config import Config, ConfigRefused
from comfyui_sagemaker.server_routes import schemas

pytestmark = pytest.mark.floor


def test_the_documented_changes_are_configs_own_fields():
    documented = schemas.ConfigChange.model_json_schema()["properties"]["changes"]
    fields = Config.model_json_schema()["properties"]
    assert set(documented["properties"]) == set(config.EDITABLE) and documented["additionalProperties"] is False
    for key in config.EDITABLE:
        assert documented["properties"][key] == {"anyOf": [fields[key], {"type": "null"}]}, key


@pytest.mark.parametrize("key, value", [("max_instances", 0), ("max_instances", "4"), ("s3_max_concurrency", True),
                                        ("region", "Mars"), ("role", "admin"), ("token", "short"),
                                        ("webhook_retry_seconds", 86401)])
def test_a_bad_value_is_refused_in_the_words_of_configs_field(tmp_path, key, value):
    with pytest.raises(ConfigRefused) as caught:
        config.preview(tmp_path, {key: value}, environ={})
    assert caught.value.message.startswith(f"{key} (from the change) must be {Config.model_fields[key].description}")
    assert caught.value.code == "config_invalid"


def test_the_keys_rules_stay_the_routes_words(tmp_path):
    with pytest.raises(ConfigRefused, match="store_path cannot be changed here"):
        config.preview(tmp_path, {"store_path": "/x"}, environ={})
    with pytest.raises(ConfigRefused, match="unknown configuration key 'colour'"):
        config.preview(tmp_path, {"colour": "red"}, environ={})
    with pytest.raises(ConfigRefused, match="must be an object"):
        config.preview(tmp_path, ["region"], environ={})
