"""nasgen.train.config: TrainConfig's checks, defaults, config.json form and step identity."""

from __future__ import annotations

import pytest

from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture
from nasgen.train.config import TrainConfig

from .conftest import ARCHS, tiny_config


def test_config_rejects_architectures_of_another_space():
    foreign = Architecture(kernel=((3,),), stride=((1,),))  # 1-D: not in the 8x8 -> 2x2 space
    with pytest.raises(ArchitectureError, match="architecture 2 is not in the chain space"):
        tiny_config(architectures=[ARCHS[0], foreign.to_dict()])
    with pytest.raises(ArchitectureError, match="resnet18 space"):
        TrainConfig.from_dict({"architectures": [foreign.to_dict()], "model": "resnet18", "dataset": "mnist"})
    with pytest.raises(NasgenError, match="mixing"):
        tiny_config(mixing="average")


def test_paper_defaults_for_mnist():
    config = TrainConfig.from_dict({"architectures": [{"kernel": [[3, 3], [2, 2], [2, 2]], "stride": [[2, 2], [1, 1], [1, 1]]}],
                                    "model": "resnet18", "dataset": "mnist"})
    assert (config.epochs, config.batch_size, config.learning_rate, config.weight_decay, config.seed) == (10, 512, 1e-4, 1e-4, 42)
    assert (config.optimizer, config.mixing) == ("adam-l2", "logits")
    assert config.network.init_scale == 0.01 and tiny_config().network.init_scale == "lecun"
    assert tiny_config(init_scale=0.5).network.init_scale == 0.5
    for bad in (0, float("nan"), "big", True):
        with pytest.raises(NasgenError, match="init scale must be a positive number or 'lecun'"):
            tiny_config(init_scale=bad)


def test_step_identity_leaves_out_only_what_the_step_does_not_depend_on():
    base = tiny_config()
    same = [tiny_config(seed=8), tiny_config(epochs=5), tiny_config(train_limit=128, test_limit=50),
            tiny_config(eval_batch_size=10), tiny_config(init_scale=0.5)]
    assert all(c.step_identity() == base.step_identity() for c in same)
    different = [tiny_config(learning_rate=1e-3), tiny_config(weight_decay=0.1), tiny_config(batch_size=16),
                 tiny_config(width=8), tiny_config(optimizer="adamw"), tiny_config(mixing="probabilities"),
                 tiny_config(architectures=ARCHS[:1]), tiny_config(bn_momentum=0.5)]
    identities = {c.step_identity() for c in different}
    assert len(identities) == len(different) and base.step_identity() not in identities
