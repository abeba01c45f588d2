"""Templates on both stores: the same answers, the same errors."""

import multiprocessing
import threading

import pytest
from comfyui_sagemaker.core import errors
from comfyui_sagemaker.core.templates import TemplateService, decode_name, encode_name, key_of
from harness import race

WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "extra": {}}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


@pytest.fixture
def templates(store):
    known = {"prod"}
    return TemplateService(store, lambda name: name.lower() in known)


@pytest.mark.parametrize("name", ["Foo", "foo", "FOO", "fOo", "a1B2", "Z" * 20, "0"])
def test_name_encoding_round_trips_and_is_lowercase(name):
    enc = encode_name(name)
    assert decode_name(enc) == name
    assert enc == enc.lower()  # safe on a case-insensitive file system


def test_case_variants_encode_to_distinct_keys():
    variants = ["foo", "Foo", "fOo", "foO", "FOo", "FoO", "fOO", "FOO"]
    assert len({key_of(v).lower() for v in variants}) == len(variants)


def test_publish_get_list(templates):
    t = templates.create("Foo", WORKFLOW, PROMPT)
    assert (t.name, t.version, t.environment) == ("Foo", 1, None)
    assert templates.get("Foo").workflow == WORKFLOW
    listed = templates.list()
    assert listed == [{"name": "Foo", "environment": None, "environment_version": None, "proof": False,
                       "version": 1, "created_at": t.created_at, "updated_at": t.updated_at}]


def test_foo_and_foo_are_distinct(templates):
    templates.create("Foo", WORKFLOW, PROMPT)
    templates.create("foo", WORKFLOW, PROMPT, environment="prod")
    assert templates.get("Foo").environment is None
    assert templates.get("foo").environment == "prod"
    assert [t["name"] for t in templates.list()] == ["Foo", "foo"]


def test_duplicate_is_template_exists(templates):
    templates.create("Foo", WORKFLOW, PROMPT)
    with pytest.raises(errors.TemplateExists):
        templates.create("Foo", WORKFLOW, PROMPT)


@pytest.mark.parametrize("workflow, prompt, needle", [
    ([], PROMPT, "workflow"),
    ("x", PROMPT, "workflow"),
    ({"nodes": {}}, PROMPT, "nodes"),
    (WORKFLOW, {}, "no nodes to run"),
    # the frontend drops the type of a node this ComfyUI lacks: the workflow names it
    (WORKFLOW, {"1": {"inputs": {}}}, "node type EmptyImage is not installed"),
    (WORKFLOW, {"9": {"inputs": {}}}, "node #9 has no node type"),
    (WORKFLOW, {"1": {"class_type": "X", "inputs": []}}, "inputs"),
])
def test_bad_bodies(templates, workflow, prompt, needle):
    with pytest.raises(errors.BadRequest, match=needle):
        templates.create("Foo", workflow, prompt)


def test_unknown_environment_is_refused(templates):
    with pytest.raises(errors.EnvironmentNotFound):
        templates.create("Foo", WORKFLOW, PROMPT, environment="nope")
    with pytest.raises(errors.NameInvalid):
        templates.create("Foo", WORKFLOW, PROMPT, environment="bad name")


def test_update_rebinds_replaces_and_counts_versions(templates):
    templates.create("Foo", WORKFLOW, PROMPT)
    t = templates.update("Foo", environment="prod")
    assert (t.version, t.environment) == (2, "prod")
    new_prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16}}}
    t = templates.update("Foo", workflow=WORKFLOW, prompt=new_prompt, expected_version=2)
    assert t.version == 3 and templates.get("Foo").prompt == new_prompt
    t = templates.update("Foo", environment=None)
    assert (t.version, t.environment) == (4, None)


def test_update_errors(templates):
    with pytest.raises(errors.TemplateNotFound):
        templates.update("Nope", environment=None)
    templates.create("Foo", WORKFLOW, PROMPT)
    with pytest.raises(errors.BadRequest, match="together"):
        templates.update("Foo", workflow=WORKFLOW)
    with pytest.raises(errors.BadRequest, match="nothing to change"):
        templates.update("Foo")
    with pytest.raises(errors.Conflict):
        templates.update("Foo", environment=None, expected_version=7)


def test_delete(templates):
    templates.create("Foo", WORKFLOW, PROMPT)
    templates.delete("Foo")
    with pytest.raises(errors.TemplateNotFound):
        templates.get("Foo")
    with pytest.raises(errors.TemplateNotFound):
        templates.delete("Foo")


def test_two_concurrent_updates_one_conflict(templates, store):
    """Both read version 1, both write: compare-and-swap lets exactly one through."""
    templates.create("Foo", WORKFLOW, PROMPT)
    barrier = threading.Barrier(2)
    real_get = store.get
    results = []
    first = threading.local()

    def get_then_wait(key):
        got = real_get(key)
        if not getattr(first, "done", False):  # the service's read, not the store's own check
            first.done = True
            barrier.wait(timeout=120)  # both have read before either writes
        return got

    store.get = get_then_wait

    def update(env):
        try:
            results.append(templates.update("Foo", environment=env).version)
        except errors.Conflict as err:
            results.append(err)

    threads = [threading.Thread(target=update, args=(e,)) for e in ("prod", None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.get = real_get
    assert sorted(map(type, results), key=str) == sorted([int, errors.Conflict], key=str), results
    assert templates.get("Foo").version == 2


def test_twenty_concurrent_publishes_from_processes_one_wins(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(4) as pool:
            pending = pool.map_async(race.publish, [(tmp_path, i, start) for i in range(20)])
            start.set()
            results = pending.get(timeout=300)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, results
    from comfyui_sagemaker.local.folder_store import FolderStore

    stored = TemplateService(FolderStore(tmp_path), lambda n: False).get("Race")
    assert stored.prompt["1"]["inputs"]["width"] == winners[0]
    assert [p.name for p in sorted((tmp_path / "templates").iterdir()) if not p.name.startswith(".")] == \
        ["_race.json", "index.json"]  # the one template, and the index naming only it
    assert [t["name"] for t in TemplateService(FolderStore(tmp_path), lambda n: False).list()] == ["Race"]


def test_list_follows_changes_after_caching(templates):
    templates.create("Foo", WORKFLOW, PROMPT)
    templates.create("Bar", WORKFLOW, PROMPT)
    assert [t["version"] for t in templates.list()] == [1, 1]
    templates.update("Foo", environment="prod")
    templates.delete("Bar")
    assert templates.list() == [{**templates.get("Foo").summary()}]
    assert templates.list()[0]["environment"] == "prod"


def test_a_template_created_while_another_process_builds_the_index_is_listed(store):
    """A fresh store: a reader builds the index from a listing taken before this template existed and wins
    the create; the template's own entry is still set on that index."""
    import json

    from comfyui_sagemaker.core.templates import INDEX_KEY

    svc = TemplateService(store, lambda name: False)
    real_create, raced = store.create, []

    def racing_create(key, data, *args, **kwargs):
        if key == INDEX_KEY and not raced:
            raced.append(key)
            real_create(INDEX_KEY, json.dumps({"entries": {}}).encode())  # the other reader's, stale
        return real_create(key, data, *args, **kwargs)

    store.create = racing_create
    svc.create("Foo", WORKFLOW, PROMPT)
    assert raced and [t["name"] for t in svc.list()] == ["Foo"]


@pytest.mark.parametrize("change", ["create", "update", "delete"])
def test_a_reconcile_racing_a_change_never_undoes_it(store, change):
    """The hourly reconcile lists the templates, reads each, then writes the index it built. A template created,
    updated or deleted (its index entry set by compare-and-swap) while it reads is kept as the change left it:
    the rebuilt index replaces only the index the reconcile started from."""
    known = {"prod"}
    svc = TemplateService(store, lambda name: name in known)
    svc.create("Old", WORKFLOW, PROMPT)
    svc.list()  # the index exists
    real_get, raced = store.get, []

    def racing_get(key, *args, **kwargs):
        got = real_get(key, *args, **kwargs)
        if key == key_of("Old") and not raced:  # another ComfyUI changes a template once the reconcile read Old
            raced.append(change)
            store.get = real_get
            {"create": lambda: svc.create("New", WORKFLOW, PROMPT),
             "update": lambda: svc.update("Old", environment="prod"),
             "delete": lambda: svc.delete("Old")}[change]()
        return got

    store.get = racing_get
    svc.reconcile()
    store.get = real_get
    listed = {t["name"]: t for t in svc.list()}
    assert raced
    if change == "create":
        assert sorted(listed) == ["New", "Old"]
    elif change == "update":
        assert listed["Old"]["environment"] == "prod" and listed["Old"]["version"] == 2
    else:
        assert listed == {}
