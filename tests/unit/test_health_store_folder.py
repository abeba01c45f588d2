"""/health names the store folder in use: a second designer sees which folder the team shares (issue 32, point 7)."""

from __future__ import annotations

from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints


def test_health_names_the_store_folder_the_same_for_two_comfyuis_on_it(tmp_path):
    store = FolderStore(tmp_path / "shared-store")
    fake = FakeEndpoints(store)
    first = FakeComfy(tmp_path / "dana", store, fake, name="Dana")
    second = FakeComfy(tmp_path / "eli", store, fake, name="Eli")
    try:
        stores = [c.get("/sagemaker/health").json()["store"] for c in (first, second)]
    finally:
        first.close()
        second.close()
        fake.close()
    assert stores[0] == stores[1] == {"kind": "folder", "path": str(tmp_path / "shared-store")}
