"""nasgen.nn.spec: ModelSpec's one-line refusals and its JSON round trip."""

from __future__ import annotations

import pytest

from nasgen.common.errors import NasgenError
from nasgen.nn.spec import LECUN, RESNET_INIT_SCALE, ModelSpec


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("chain", {"width": 2.0}, "width must be an integer >= 1, got 2.0"),
        ("chain", {"width": True}, "width must be an integer >= 1, got True"),
        ("chain", {"width": "16"}, "width must be an integer >= 1, got '16'"),
        ("chain", {"num_classes": 0}, "num_classes must be an integer >= 1"),
        ("chain", {"norm": "layer"}, "norm 'layer' is not one of 'batch', None"),
        ("chain", {"activation": "swish"}, "activation 'swish' is not one of"),
        ("chain", {"width_multiplier": 2.0}, r"options \['width_multiplier'\] do not apply to chain"),
        ("chain", {"colour": 1}, r"unknown model options \['colour'\]"),
        ("resnet18", {"width_multiplier": float("inf")}, "width_multiplier must be a finite number, got inf"),
        ("resnet18", {"width_multiplier": float("nan")}, "width_multiplier must be a finite number, got nan"),
        ("resnet18", {"width_multiplier": -1}, "width_multiplier must be a positive number, got -1"),
        ("resnet18", {"width_multiplier": "1"}, "width_multiplier must be a finite number"),
        ("resnet18", {"bn_momentum": 1}, r"bn_momentum must be a number in \[0, 1\)"),
        ("resnet18", {"init_scale": float("inf")}, "init_scale must be a finite positive number"),
        ("resnet18", {"init_scale": "he"}, "init_scale must be a finite positive number or 'lecun'"),
        ("resnet18", {"in_channels": 3, "image_shape": (32, 32, 1)}, "disagrees with in_channels 3"),
        ("resnet18", {"image_shape": "32,32"}, "image shape must be"),
        ("resnet18", {"image_shape": (32.0, 32)}, "image shape entries must be an integer"),
        ("resnet18", {"width": 8}, r"options \['width'\] do not apply to resnet18"),
        ("mlp", {}, "model kind 'mlp' is not one of 'chain', 'resnet18'"),
    ],
)
def test_model_spec_refuses_bad_options_in_one_line(kind, options, message):
    with pytest.raises(NasgenError, match=message) as info:
        ModelSpec.from_options(kind, **options)
    assert "\n" not in str(info.value)


def test_model_spec_round_trips_through_json():
    import json

    specs = [
        ModelSpec.from_options("chain", width=3, norm=None, head="features", pooling="avg", activation="gelu"),
        ModelSpec.from_options("resnet18", width_multiplier=0.25, image_shape=(64, 48, 3), bn_momentum=0.9),
        ModelSpec.from_options("resnet18", init_scale=LECUN),
    ]
    for spec in specs:
        again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec and hash(again) == hash(spec)
    # One encoding of init_scale: resolved per kind, never None once stored.
    assert ModelSpec("chain").init_scale == LECUN and ModelSpec("resnet18").init_scale == RESNET_INIT_SCALE
    assert ModelSpec.from_options("chain", init_scale=1).init_scale == 1.0
    with pytest.raises(NasgenError, match="unknown model spec keys"):
        ModelSpec.from_dict({"kind": "chain", "depth": 3})
    with pytest.raises(NasgenError, match="an object with a 'kind'"):
        ModelSpec.from_dict(["chain"])


# -- checkpoints ------------------------------------------------------------------
