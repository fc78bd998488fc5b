"""Every rollout source and learner implements the whole protocol the schedules talk to
(`dashrl.train.schedules.RolloutSource`, `Learner`): one process, Ray and SFT alike, so no caller
has to ask which one it holds."""

from __future__ import annotations

import pytest

from dashrl.distributed.backend import RayLearner
from dashrl.distributed.source import RaySource
from dashrl.rollout.samples import LocalSource
from dashrl.train.learner import Learner
from dashrl.train.schedules import Learner as LearnerProtocol
from dashrl.train.schedules import RolloutSource
from dashrl.train.sft import SFTSource


def methods(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}


@pytest.mark.parametrize("cls", [LocalSource, RaySource, SFTSource])
def test_sources_implement_the_rollout_source_protocol(cls):
    assert {"rollout", "ahead", "hold", "eval_sampler", "warm_up", "state_dict"} <= methods(RolloutSource)
    missing = sorted(n for n in methods(RolloutSource) if not callable(getattr(cls, n, None)))
    assert not missing, f"{cls.__name__} lacks {missing}"


@pytest.mark.parametrize("cls", [Learner, RayLearner])
def test_learners_implement_the_learner_protocol(cls):
    assert "sync" in methods(LearnerProtocol)
    missing = sorted(n for n in methods(LearnerProtocol) if not callable(getattr(cls, n, None)))
    assert not missing, f"{cls.__name__} lacks {missing}"
