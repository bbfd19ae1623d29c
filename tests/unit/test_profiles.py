"""Profiles and notebook configuration: one place, validated up front."""

import pytest

from osad_lib import limits
from osad_lib.profiles import (
    EMPTY, GRID_OPTIONS, METHOD_OVERRIDES, PROFILES, MethodSettings, configure, get_profile, method_settings,
)
from osad_lib.validate import ConfigError, choose, parse_int_list


def test_profiles_exist_and_differ():
    assert set(PROFILES) == {"smoke", "demo", "paper", "paper-dry-run", "paper-dry-run-ci"}
    assert PROFILES["smoke"].image_datasets == ("synthetic",)
    assert "elpv" in PROFILES["demo"].image_datasets
    assert PROFILES["paper"].image_size == 448 and PROFILES["paper"].backbone == "resnet18"
    assert PROFILES["paper"].deviations == ""


def test_override_blocks_name_known_profiles_and_reach_the_profile():
    for method, per_profile in METHOD_OVERRIDES.items():
        assert set(per_profile) <= set(PROFILES), method
    assert get_profile("demo").method("devnet").config["frozen_stages"] == 4  # the demo fine-tunes Lite0's last stage
    assert get_profile("paper").method("devnet") == EMPTY  # the paper profile runs the defaults
    assert get_profile("smoke").method("patchcore") == EMPTY  # no smoke block: the defaults
    with pytest.raises(ConfigError, match="'no_such_method' is not one of devnet"):
        get_profile("smoke").method("no_such_method")


def test_every_built_in_block_is_typed_and_reads_back_from_its_file_form():
    """Grid options sit in ``grid`` and nowhere else, parts are known, and a profile file that
    writes a built-in block out (its flat form) reads back to the same typed settings."""
    from osad_lib.experiments import cross_domain

    assert set(GRID_OPTIONS) == set(METHOD_OVERRIDES)
    assert set(GRID_OPTIONS["cross_domain"]) == set(cross_domain.DEFAULTS)  # its defaults cover every option
    for method, per_profile in METHOD_OVERRIDES.items():
        for profile, block in per_profile.items():
            assert isinstance(block, MethodSettings), (method, profile)
            assert set(block.grid) <= set(GRID_OPTIONS[method]), (method, profile)
            assert not set(block.config) & set(GRID_OPTIONS[method]), (method, profile)
            assert method_settings(method, block.flat(method)) == block, (method, profile)


def test_a_flat_table_is_sorted_into_config_grid_and_parts():
    ahl = method_settings("ahl", {"epochs": 3, "bases": ("dra",), "dra": {"epochs": 5}})
    assert ahl == MethodSettings(config={"epochs": 3}, grid={"bases": ("dra",)},
                                 parts={"dra": MethodSettings(config={"epochs": 5})})
    assert ahl.part("devnet") == EMPTY and ahl.flat("ahl") == {"epochs": 3, "bases": ("dra",), "dra": {"epochs": 5}}
    studies = method_settings("ablations", {"studies": ("dra_fig3",), "options": {"dra_fig3": {"max_seeds": 1}}})
    assert studies.grid == {"studies": ("dra_fig3",)} and studies.part("dra_fig3").grid == {"max_seeds": 1}
    with pytest.raises(ConfigError, match=r"\[methods.ahl\].dra must be a table"):
        method_settings("ahl", {"dra": 5})
    with pytest.raises(ConfigError, match="'dr' is not a part of ahl .did you mean 'dra'"):
        method_settings("ahl", {"dr": {"epochs": 5}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['study'\]"):
        method_settings("ablations", {"study": ("dra_fig3",)})


def _resolve_every_method(profile: str) -> dict[str, object]:
    """Every method's settings under ``profile``, through the resolvers the notebooks use."""
    from osad_lib.experiments import ahl, anoonly, baselines, bgad, cross_domain, devnet_settings, dra

    def cfg(notebook):
        return configure(notebook, profile=profile, check_data=False)

    resolved = {m: devnet_settings.devnet_config(cfg("01_devnet"), m) for m in devnet_settings.DEVNET_METHODS}
    resolved |= {m: baselines.method_config(cfg("01_devnet"), m) for m in baselines.RUNNERS}
    resolved |= {"dra": dra.dra_config(cfg("02_dra")), "bgad": bgad.bgad_config(cfg("03_bgad")),
                 "anoonly": anoonly.anoonly_config(cfg("04_anoonly")),
                 "cross_domain_ahl": cross_domain.ahl_config(cfg("07_cross_domain"))}
    resolved |= {f"ahl_{base}": ahl.ahl_config(cfg("05_ahl"), base) for base in ("devnet", "dra")}
    return resolved


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_method_resolves_under_every_profile(profile):
    """One resolution of every (method, profile) pair: a bad override key or value fails here."""
    resolved = _resolve_every_method(profile)
    assert len(resolved) == 13
    paper = _resolve_every_method("paper")
    if profile.startswith("paper"):
        assert resolved == paper  # the dry runs change limits only, never a setting
    else:
        assert resolved["devnet"] != paper["devnet"] and resolved["dra"] != paper["dra"]
        assert resolved["devnet"].image_size < paper["devnet"].image_size


@pytest.mark.parametrize("name", ["paper-dry-run", "paper-dry-run-ci"])
def test_dry_run_profiles_keep_the_paper_settings_and_only_add_limits(name):
    """A dry run changes no setting a row records: only its limits, one seed, and (CI) the datasets."""
    dry, paper = get_profile(name), get_profile("paper")
    assert dry.limits.max_steps == 1 and dry.limits.max_test_images >= 2 and dry.seeds == (0,)
    same = {f for f in paper.__dataclass_fields__ if f not in ("name", "description", "seeds", "limits", "overrides_of",
                                                               "deviations", "image_datasets", "needs_data_root")}
    assert paper.needs_data_root and not dry.needs_data_root  # run_all.py generates its data when none is given
    assert all(getattr(dry, f) == getattr(paper, f) for f in same)
    assert all(dry.method(m) == paper.method(m) for m in METHOD_OVERRIDES)
    assert dry.deviations.startswith("dry run: 1 optimisation step") and paper.limits == limits.NONE
    if name == "paper-dry-run":
        assert dry.image_datasets == paper.image_datasets and not dry.limits.one_run_per_path
    else:  # one dataset per family, batches of 4, one run per code path
        assert dry.image_datasets[0] == "mvtecad/carpet" and dry.image_datasets[1:] == paper.image_datasets[1:]
        assert dry.limits.max_batch_size == 2 and dry.limits.max_test_images == 2 and dry.limits.one_run_per_path


def test_configure_installs_the_profiles_run_limits(tmp_path):
    try:
        configure("01_devnet", profile="paper-dry-run", data_root=str(tmp_path), output_dir=str(tmp_path))
        assert limits.active() == get_profile("paper-dry-run").limits
        configure("01_devnet", profile="smoke", output_dir=str(tmp_path))
        assert limits.active() == limits.NONE
    finally:
        limits.install(limits.NONE)


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "dmeo"}, "did you mean 'demo'"),
    ({"device": "gpu"}, "parameter 'device'"),
    ({"seeds": "0,x"}, "parameter 'seeds'"),
    ({"data_root": "/definitely/not/here"}, "parameter 'data_root'"),
    ({"profile": "paper"}, "needs your datasets"),
    ({"resume": "yes"}, "parameter 'resume'"),
])
def test_configure_rejects_bad_parameters_in_one_line(kwargs, message, monkeypatch):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    with pytest.raises(ConfigError, match=message) as info:
        configure("01_devnet", **kwargs)
    assert "\n" not in str(info.value)


def test_configure_resolves_seeds_paths_and_device(tmp_path):
    cfg = configure("01_devnet", profile="smoke", device="cpu", seeds="3,4", output_dir=str(tmp_path))
    assert cfg.seeds == (3, 4) and cfg.device == "cpu"
    assert cfg.store.path == tmp_path / "runs" / "smoke" / "results" / "01_devnet.csv"
    assert cfg.figures_dir == tmp_path / "figures" / "smoke"
    assert configure("x", profile="smoke", output_dir=str(tmp_path)).seeds == PROFILES["smoke"].seeds


def test_plan_configuration_needs_no_data(monkeypatch):
    monkeypatch.delenv("OSAD_DATA", raising=False)
    cfg = configure("01_devnet", profile="paper", check_data=False)
    assert cfg.data_root is None and cfg.profile.name == "paper"


def test_validation_helpers():
    assert choose("x", "a", ["a", "b"]) == "a"
    assert parse_int_list("seeds", "0, 1,2") == (0, 1, 2)
    assert parse_int_list("seeds", 5) == (5,)


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_every_variant_of_every_grid_says_what_it_stands_for(profile, tmp_path, monkeypatch):
    """A row's ``variant`` is a label; its ``params`` hold what the label stands for, in every
    notebook's grid (06: every study), so no table has to parse a label back."""
    from osad_lib.experiments import ablations as ab
    from osad_lib.experiments import grid_of

    monkeypatch.delenv("OSAD_DATA", raising=False)
    without = []
    for notebook in ("01_devnet", "02_dra", "03_bgad", "04_anoonly", "05_ahl", "06_ablations", "07_cross_domain"):
        cfg = configure(notebook, profile, check_data=False, data_root=str(tmp_path), output_dir=str(tmp_path))
        items = grid_of(notebook, cfg, {"studies": ",".join(ab.STUDIES)} if notebook == "06_ablations" else {})[0]
        without += sorted({(notebook, i.experiment.table, i.experiment.variant) for i in items
                           if i.experiment.variant and not i.experiment.params})
    assert without == []
