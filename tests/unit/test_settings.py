"""osad_lib.settings: the one unknown-key check, override rule, lower bound and config diff that
every settings dataclass and every result row's ``deviations`` use."""

from dataclasses import dataclass

import pytest

from osad_lib.experiments import baselines as xbaselines
from osad_lib.experiments.dra import config_deviations as dra_deviations
from osad_lib.methods.baselines.kdad import KDADConfig
from osad_lib.methods.devnet.model import DevNetConfig
from osad_lib.methods.dra import DRAConfig
from osad_lib.settings import apply_overrides, check_known, config_diff, require_at_least
from osad_lib.validate import ConfigError


@dataclass(frozen=True)
class Toy:
    epochs: int = 10
    lr: float = 1e-3
    levels: tuple[int, ...] = (1, 2)


def test_unknown_keys_fail_in_one_line_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown Toy setting\(s\) \['epoch'\] \(did you mean 'epochs'\?\)") as err:
        apply_overrides(Toy, {"epoch": 3}, "Toy")
    assert "\n" not in str(err.value) and "known: ['epochs', 'levels', 'lr']" in str(err.value)
    check_known({"lr": 1}, ("lr",), "Toy")  # known keys pass


def test_overrides_apply_to_a_class_or_an_instance_and_lists_become_tuples():
    assert apply_overrides(Toy, {"levels": [0, 1]}, "Toy") == Toy(levels=(0, 1))
    assert apply_overrides(Toy(epochs=3), {"lr": 0.1}, "Toy") == Toy(epochs=3, lr=0.1)


def test_lower_bounds_name_the_field():
    require_at_least(Toy(), ("epochs",))
    with pytest.raises(ConfigError, match=r"Toy\.epochs must be >= 1, got 0"):
        require_at_least(Toy(epochs=0), ("epochs",))
    with pytest.raises(ConfigError, match=r"DevNetConfig\.epochs must be >= 1"):
        DevNetConfig(epochs=0)


def test_config_diff_lists_changed_fields_in_order_with_skip_shown_and_notes():
    changed = Toy(epochs=3, lr=0.1)
    assert config_diff(changed, Toy(), "paper") == ["epochs=3 (paper: 10)", "lr=0.1 (paper: 0.001)"]
    assert config_diff(changed, Toy(), "code", skip=("epochs",)) == ["lr=0.1 (code: 0.001)"]
    assert config_diff(changed, Toy(epochs=3), "paper", shown=Toy()) == ["lr=0.1 (paper: 0.001)"]
    assert config_diff(changed, Toy(), "default", notes={("lr", 0.1): "Table 4"})[1] == "lr=0.1 (default: 0.001; Table 4)"
    assert config_diff(Toy(), Toy(), "paper") == []


def test_result_rows_deviations_come_from_the_one_diff():
    """DevNet, DRA and the baselines name each changed setting against their reference the same way."""
    dra = dra_deviations(DRAConfig(epochs=3), "elpv")
    assert "mode=" not in dra and "epochs=3 (code: 30)" in dra.split("; ")  # the mode is a column
    kdad = xbaselines.baseline_deviations("kdad", "elpv", KDADConfig(epochs=2))
    assert f"epochs=2 (paper: {KDADConfig().epochs})" in kdad.split("; ")
