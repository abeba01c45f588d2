"""A model download refused for its host's address names the Connect panel's setting in its words, and carries
which setting (the page offers "Open Connect" beside it): issue 32, point 7. Webhooks name their own setting."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core.net.fetch import DownloadRefused, check_url
from comfyui_sagemaker.core.webhooks import WEBHOOK_HOSTS
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints


def test_a_download_from_this_machine_is_refused_naming_the_connect_setting(tmp_path):
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    comfy = FakeComfy(tmp_path / "designer", store, fake)
    try:
        r = comfy.post("/sagemaker/models/download",
                       json={"folder": "checkpoints", "name": "x.safetensors", "url": "http://127.0.0.1:9/x.safetensors"})
    finally:
        comfy.close()
        fake.close()
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "download_refused"
    assert '"Model downloads may also reach" in Connect' in error["message"]
    assert error["details"] == {"setting": "download_allowed_hosts", "host": "127.0.0.1"}


def test_a_webhook_refusal_names_the_webhooks_setting():
    with pytest.raises(DownloadRefused) as refused:
        check_url("http://127.0.0.1:9/hook", setting=WEBHOOK_HOSTS)
    assert '"Webhooks may also reach"' in refused.value.message and "webhook_allowed_hosts" in refused.value.message
    assert refused.value.details == {"setting": "webhook_allowed_hosts", "host": "127.0.0.1"}
