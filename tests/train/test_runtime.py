"""nasgen.train.runtime: default step programs."""

from __future__ import annotations

from nasgen.train.runtime import default_step_programs


def test_the_default_step_programs_hold_about_five_networks_each_on_a_cpu_and_one_elsewhere():
    for networks in range(1, 200):
        programs = default_step_programs(networks, "cpu")
        assert 1 <= programs <= networks
        if networks >= 3:
            assert 2.5 <= networks / programs < 7.5, networks
        for platform in ("gpu", "tpu"):
            assert default_step_programs(networks, platform) == 1
    assert default_step_programs(21, "cpu") == 4  # M = 20, the figure in bench/results/train.md
