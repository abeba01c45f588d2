import pytest
from comfyui_sagemaker.core.endpoint_config import EndpointConfigInvalid, validate


def test_local_and_sagemaker_defaults():
    """A SageMaker endpoint is async and scales to zero unless told otherwise (issue 29: no surprise bills)."""
    assert validate({"kind": "local"}, 4) == {"kind": "local"}
    assert validate({"kind": "sagemaker"}, 4) == {"kind": "sagemaker", "instance_type": "ml.g5.xlarge",
                                                  "initial_count": 1, "mode": "async",
                                                  "autoscaling": {"min": 0, "max": 1}}
    assert validate({"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "mode": "async",
                     "autoscaling": {"min": 0, "max": 2}}, 4)["autoscaling"] == {"min": 0, "max": 2}
    # Types we do not list are accepted if well-formed: AWS is the judge.
    assert validate({"kind": "sagemaker", "instance_type": "ml.p5.48xlarge"}, 4)["instance_type"] == "ml.p5.48xlarge"


@pytest.mark.parametrize("config, needle", [
    ({"kind": "sagemaker", "initial_count": 0}, "at least 1"),
    ({"kind": "sagemaker", "initial_count": 9}, "cap"),
    ({"kind": "sagemaker", "autoscaling": {"min": 3, "max": 2}}, "over max"),
    ({"kind": "sagemaker", "autoscaling": {"min": 1, "max": 5}}, "cap"),
    ({"kind": "sagemaker", "mode": "realtime", "autoscaling": {"min": 0, "max": 2}}, "only for async"),
    ({"kind": "sagemaker", "autoscaling": {"min": -1, "max": 2}}, "0 or more"),
    ({"kind": "sagemaker", "autoscaling": {"min": 0}}, "autoscaling"),
    ({"kind": "sagemaker", "mode": "batch"}, "mode"),
    ({"kind": "sagemaker", "instance_type": "g5.xlarge"}, "instance_type"),
    ({"kind": "sagemaker", "initial_count": "1"}, "whole number"),
    ({"kind": "sagemaker", "initial_count": True}, "whole number"),
    ({"kind": "k8s"}, "kind"),
    ({}, "kind"),
    ({"kind": "local", "instance_type": "ml.g5.xlarge"}, "unknown endpoint fields"),
    ({"kind": "sagemaker", "gpus": 2}, "unknown endpoint fields"),
    ("local", "object"),
])
def test_out_of_range_configs_say_why(config, needle):
    with pytest.raises(EndpointConfigInvalid, match=needle):
        validate(config, 4)
