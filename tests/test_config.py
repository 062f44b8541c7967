"""Config knobs: untrusted values are clamped or replaced with a notice, never a crash."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labs import convnets, playground
from labs.core.config import ConfigError, check, from_params, knobs, log_ladder, to_params


def test_defaults_are_valid_for_every_chapter_config():
    from labs import autograd, initialization, normalization, optimizers, regularization

    for cls in (
        autograd.Config,
        playground.Config,
        optimizers.Config,
        optimizers.SurfaceConfig,
        optimizers.FinderConfig,
        initialization.Config,
        normalization.Config,
        regularization.Config,
        convnets.Config,
    ):
        check(cls())


def test_a_multi_choice_may_be_empty_only_where_that_means_something():
    from labs import normalization, regularization

    cfg, notices = from_params(regularization.Config, {"augment": ""})  # no augmentation: valid
    assert cfg.augment == () and notices == []
    assert from_params(regularization.Config, to_params(cfg))[0].augment == ()
    cfg, notices = from_params(normalization.Config, {"variants": ""})  # nothing to compare
    assert cfg.variants == normalization.Config().variants and "choose at least one" in notices[0]
    with pytest.raises(ConfigError, match="choose at least one"):
        check(normalization.Config(variants=()))


def test_out_of_range_numbers_are_clamped_with_a_notice():
    cfg, notices = from_params(playground.Config, {"units": "999", "noise": "-3"})
    assert cfg.units == 16 and cfg.noise == 0.0
    assert len(notices) == 2 and "outside" in notices[0]


def test_garbage_values_fall_back_to_defaults_with_a_notice():
    raw = {
        "activation": "banana",
        "epochs": "lots",
        "batchnorm": "maybe",
        "learning_rate": "nan",
        "features": "x,zz",
        "kernel_size": "4",
    }
    cfg, notices = from_params(playground.Config, raw)
    assert cfg.activation == "relu" and cfg.epochs == playground.Config().epochs
    assert cfg.batchnorm is False and cfg.features == ("x",)
    assert len(notices) == 5  # kernel_size is not a playground knob: ignored silently
    ccfg, cnotices = from_params(convnets.Config, {"kernel_size": "4"})
    assert ccfg.kernel_size == 3 and cnotices


def test_a_config_survives_the_round_trip_through_a_link():
    cfg = playground.Config(dataset="xor", features=("x", "xy"), batchnorm=True, learning_rate=0.3)
    back, notices = from_params(playground.Config, to_params(cfg))
    assert back == cfg and notices == []


def test_learning_rates_snap_to_the_ladder_and_check_refuses_out_of_range():
    assert 3e-3 in log_ladder(1e-5, 1.0)
    cfg, _ = from_params(convnets.Config, {"learning_rate": "0.0031"})
    assert cfg.learning_rate == 3e-3
    with pytest.raises(ConfigError, match="Units"):
        check(playground.Config(units=40))


# ---------------------------------------------------------------- hostile links (property)

HOSTILE = st.one_of(
    st.sampled_from(
        ["inf", "-inf", "Infinity", "nan", "1e309", "-1e309", "9" * 100_000, "²³", "①②③", "", " ", "١٢"]
    ),
    st.text(max_size=60),
    st.integers().map(str),
    st.floats().map(repr),
)


def every_config_class():
    from tests.test_bounded_runs import EXPERIMENTS

    return sorted({e.config for _, _, e in EXPERIMENTS}, key=lambda c: c.__module__ + c.__qualname__)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_no_value_in_a_link_breaks_any_chapter_config(data):
    """Whatever a link holds, every Config comes out valid, with short notices."""
    for cls in every_config_class():
        names = [name for name, _, _ in knobs(cls)]
        raw = {name: data.draw(HOSTILE, label=f"{cls.__qualname__}.{name}") for name in names}
        cfg, notices = from_params(cls, raw)
        check(cfg)  # raises on anything out of range
        assert all(len(n) < 200 for n in notices), max(notices, key=len)
