"""Quiet when nobody looks (core/pages.py): a ComfyUI reads the store for its pages' live lists only while a
page looks, and otherwise only for the maintenance that cannot wait for one (the sweep for runs whose
follower died, once a minute). Driven by a fake clock: the loops sleep on it, the test moves it."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import changes, followers
from comfyui_sagemaker.core.pages import CONNECT_GRACE_S, LEASE_S, Pages
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.services import Services
from harness.fake_clock import CountingStore, FakeClock
from harness.fake_comfy import FakeComfy
from harness.fake_endpoints import FakeEndpoints
from harness.waiting import wait_for


@pytest.fixture
def comfyui(tmp_path):
    """A ComfyUI's services on a counting folder store, their change feed and follower sweep started on a fake
    clock, with pages whose websockets the test opens and closes."""
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    comfy = FakeComfy(tmp_path / "c", store, fake)
    clock = FakeClock(loops=2)
    sockets: set[str] = set()
    pages = Pages(lambda client_id: client_id in sockets, clock=clock.time)
    services = Services(comfy.ctx.config, comfy.ctx.host, comfy.config_dir, providers={fake.kind: lambda: fake},
                        pages=pages, wait=clock.wait)
    counting = CountingStore(store)
    services.store = counting  # the services' cached store, counted
    told: list[str] = []
    services.changes.start(told.append)
    services.executions.sweeper.start()
    wait_for(clock.settled, 60, "the loops to sleep")
    counting.taken()  # the feed's starting point (once, at start-up)
    yield clock, counting, pages, sockets, told
    services.close()  # the loops' sleeps end with their stop
    wait_for(lambda: clock.sleeps() == [], 60, "the loops to stop")
    comfy.close()
    fake.close()


def test_no_page_no_store_request_but_the_maintenance_tick(comfyui):
    clock, counting, _, _, _ = comfyui
    assert clock.sleeps() == [changes.IDLE_S, followers.IDLE_PERIOD]
    for _ in range(3):  # a minute at a time: the sweep's one listing, nothing else
        clock.advance(followers.IDLE_PERIOD - 1)
        assert counting.taken() == []
        clock.advance(1)
        assert counting.taken() == ["list_stamps"]


def test_a_page_subscribing_wakes_the_feed_at_once_and_it_looks_while_the_page_does(comfyui):
    clock, counting, pages, sockets, told = comfyui
    sockets.add("page-1")
    pages.subscribe("page-1")  # no time passes: the feed looks now, not at the end of its idle minute
    wait_for(lambda: counting.calls.count("get_if_changed") == len(changes.MARKERS), 60, "the feed's first look")
    wait_for(clock.settled, 60, "the loops to sleep")
    assert counting.taken().count("get_if_changed") == len(changes.MARKERS)
    assert clock.sleeps()[0] == changes.INTERVAL
    clock.advance(changes.INTERVAL)
    assert counting.taken() == ["get_if_changed"] * len(changes.MARKERS)
    changes.ChangeFeed(counting.inner, "elsewhere").touch("environments")  # another ComfyUI's change
    clock.advance(changes.INTERVAL)
    assert told == ["environments"]
    # The page closes: its websocket is gone, its lease still runs. Nobody looks: the feed reads nothing.
    sockets.discard("page-1")
    clock.advance(changes.INTERVAL)
    counting.taken()
    clock.advance(changes.IDLE_S - 1)
    assert set(counting.taken()) <= {"list_stamps"}  # the sweep's, at its pace set while the page looked


def test_a_subscription_lasts_its_lease_and_its_websocket_and_a_reload_renews_it(comfyui):
    _, _, pages, sockets, _ = comfyui
    clock = comfyui[0]
    pages.subscribe("page-1")  # before its websocket opens: counted for the grace
    assert pages.looking()
    clock.now += CONNECT_GRACE_S
    assert not pages.looking()  # no websocket came
    sockets.add("page-1")
    assert pages.looking()  # ... it came: the subscription holds
    clock.now += LEASE_S - CONNECT_GRACE_S - 1
    pages.subscribe("page-1")  # a reload (same client id) or the minute's renewal
    clock.now += LEASE_S - 1
    assert pages.looking()
    clock.now += 1  # not renewed (a hidden tab): its lease ends, websocket open or not
    assert not pages.looking() and pages.count() == 0


def test_without_the_hosts_websockets_the_lease_alone_decides():
    now = [0.0]
    pages = Pages(None, clock=lambda: now[0])
    pages.subscribe("page-1")
    now[0] += LEASE_S - 1
    assert pages.looking()
    now[0] += 1
    assert not pages.looking()


def test_the_hosts_websockets_are_read_from_prompt_servers_sockets(caplog):
    from comfyui_sagemaker.comfy_facts import connected_pages

    class Server:  # ComfyUI's PromptServer: its open websockets by client id
        def __init__(self):
            self.sockets: dict = {}

    server = Server()
    connected = connected_pages(server)
    assert connected is not None and not connected("page-1")
    server.sockets["page-1"] = object()  # the page's websocket opens (a reload reopens it under the same id)
    assert connected("page-1")
    del server.sockets["page-1"]
    assert not connected("page-1")
    # A host without that dict: said in the log, and the lease alone decides.
    assert connected_pages(object()) is None and "PromptServer.sockets" in caplog.text
