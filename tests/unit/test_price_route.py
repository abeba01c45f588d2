"""GET /sagemaker/prices: the endpoint form's price, from core/prices.py's one table, through the extension's
own routes in-process: the configuration's region by default, "price unknown" for what the table lacks, and
a bad query refused in the route's words."""

from __future__ import annotations

import json
import os

import pytest
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core import prices
from harness.inprocess import InProcess


@pytest.fixture
def app(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith(config_mod.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    config_dir = tmp_path / "user" / "__sagemaker"
    config_dir.mkdir(parents=True)
    (config_dir / "config.json").write_text(json.dumps({"region": "us-east-1"}))
    started = InProcess(tmp_path).start()
    yield started
    started.stop()


def test_the_default_endpoint_scales_to_zero_and_says_so(app):
    r = app.request("GET", "/sagemaker/prices?instance_type=ml.g5.xlarge")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == prices.quote("us-east-1", "ml.g5.xlarge", 0, 1)
    assert body["monthly_min"] == 0 and body["hourly_max"] == pytest.approx(1.408)
    assert body["as_of"] == prices.table().as_of


def test_always_on_is_priced_per_hour_and_month(app):
    body = app.request("GET", "/sagemaker/prices?instance_type=ml.g5.xlarge&min=1&max=1").json()
    assert body["text"] == "keeps 1 × ml.g5.xlarge running: about $1.41/h, $1,028/month even when idle"
    assert body["monthly_min"] == pytest.approx(1.408 * 730)


def test_what_the_table_lacks_is_price_unknown(app):
    body = app.request("GET", "/sagemaker/prices?instance_type=ml.g5.xlarge&region=ap-south-2").json()
    assert body["hourly"] is None and body["monthly_max"] is None and "price unknown" in body["text"]


@pytest.mark.parametrize("query, said", [("instance_type=g5", "instance_type must be a SageMaker instance type"),
                                         ("max=0", "max must be a whole number"),
                                         ("region=Mars", "region must be an AWS region")])
def test_a_bad_query_is_a_400_in_the_routes_words(app, query, said):
    r = app.request("GET", f"/sagemaker/prices?{query}")
    assert r.status_code == 400 and said in r.json()["error"]["message"], r.text
