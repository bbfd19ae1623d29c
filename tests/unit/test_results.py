"""Results store: schema, atomic appends, resume semantics, failed runs."""

import hashlib
import json
import math

import pandas as pd
import pytest

from osad_lib.results import (
    COLUMNS, KEY_COLUMNS, Experiment, ResultsSchemaError, ResultsStore, validate_rows, variant_params,
)
import torch

from osad_lib.errors import CudaOutOfMemoryError, NonFiniteLossError


def make_experiment(seed: int = 0, method: str = "devnet") -> Experiment:
    return Experiment(notebook="01_devnet", paper="devnet", table="table2", dataset="elpv", method=method,
                      seed=seed, profile="smoke", setting="general", n_shots=10, backbone="resnet18/random")


def test_rows_fill_every_column_and_roundtrip(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    store.append(make_experiment().rows({"auroc": 0.8, "aupr": 0.6}, wall_time_s=1.5))
    df = store.read()
    assert list(df.columns) == list(COLUMNS)
    assert sorted(df["metric"]) == ["aupr", "auroc"]
    assert df.loc[df.metric == "auroc", "value"].item() == pytest.approx(0.8)
    assert df["n_shots"].dtype == "Int64" and df["n_shots"].iloc[0] == 10
    assert df["subset"].iloc[0] == ""  # empty strings survive the CSV round trip


def test_experiment_id_depends_on_key_only():
    a, b = make_experiment(0), make_experiment(1)
    assert a.experiment_id != b.experiment_id
    assert make_experiment(0).experiment_id == a.experiment_id
    different_device = Experiment(**{**a.__dict__, "device": "cuda"})
    assert different_device.experiment_id == a.experiment_id  # the device is recorded, not part of the key


def test_run_experiment_skips_stored_experiments(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    calls = []

    def run():
        calls.append(1)
        return {"auroc": 0.7}

    first = store.run_experiment(make_experiment(), run)
    second = store.run_experiment(make_experiment(), run)
    assert len(calls) == 1 and len(store.read()) == 1
    assert first["value"].item() == second["value"].item() == pytest.approx(0.7)
    store.run_experiment(make_experiment(), run, resume=False)
    assert len(calls) == 2


def test_non_finite_loss_is_recorded_as_failed_and_grid_continues(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")

    def diverges():
        raise NonFiniteLossError("loss is nan at epoch 3")

    rows = store.run_experiment(make_experiment(), diverges)
    assert rows["status"].item().startswith("failed") and math.isnan(rows["value"].item())
    store.run_experiment(make_experiment(seed=1), lambda: {"auroc": 0.9})
    assert len(store.read()) == 2


def test_other_exceptions_write_nothing(tmp_path):
    store = ResultsStore(tmp_path / "r.csv")
    with pytest.raises(RuntimeError):
        store.run_experiment(make_experiment(), lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert len(store.read()) == 0


def test_bad_rows_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ResultsSchemaError, match="lack columns"):
        validate_rows([{"metric": "auroc", "value": 1.0}])
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1,2\n")
    store = ResultsStore(path)
    with pytest.raises(ResultsSchemaError, match="do not match the results schema"):
        store.append(make_experiment().rows({"auroc": 0.5}, 0.1))
    assert path.read_text() == "a,b\n1,2\n"  # nothing already written is lost


def test_failed_write_leaves_previous_file(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "r.csv")
    store.append(make_experiment(0).rows({"auroc": 0.5}, 0.1))
    before = (tmp_path / "r.csv").read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("osad_lib.paths.os.replace", crash)  # the last step of atomic_write_text
    with pytest.raises(KeyboardInterrupt):
        store.append(make_experiment(1).rows({"auroc": 0.6}, 0.1))
    assert (tmp_path / "r.csv").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.csv.")] == []


def test_read_returns_typed_empty_frame(tmp_path):
    df = ResultsStore(tmp_path / "none.csv").read()
    assert len(df) == 0 and list(df.columns) == list(COLUMNS)
    assert isinstance(df, pd.DataFrame)


@pytest.mark.parametrize("error, advice", [
    (CudaOutOfMemoryError("CUDA ran out of memory in training at batch size 48; set batch_size=24 ..."), "batch_size=24"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB"), "eval_batch_size"),
])
def test_cuda_out_of_memory_stops_with_advice_and_keeps_stored_rows(tmp_path, error, advice):
    store = ResultsStore(tmp_path / "r.csv")
    store.run_experiment(make_experiment(seed=0), lambda: {"auroc": 0.9})

    def runs_out():
        raise error

    with pytest.raises(CudaOutOfMemoryError, match=advice) as info:
        store.run_experiment(make_experiment(seed=1), runs_out)
    message = str(info.value)
    assert "seed=1" in message or "seed 1" in message or make_experiment(seed=1).describe() in message
    assert "1 rows stored earlier are kept" in message and "\n" not in message
    assert len(store.read()) == 1  # not recorded as failed: a smaller batch can still succeed


def test_mode_and_report_are_columns_of_every_row():
    e = Experiment(**{**make_experiment().__dict__, "method": "bgad_fas", "report": "last_epoch", "mode": ""})
    rows = {r["metric"]: r for r in e.rows({"auroc": 0.8, "auroc@max_over_epochs": 0.9}, wall_time_s=1.0)}
    assert rows["auroc"]["report"] == "last_epoch" and rows["auroc@max_over_epochs"]["report"] == "max_over_epochs"
    assert Experiment(**{**make_experiment().__dict__, "mode": "clean"}).experiment_id == make_experiment().experiment_id
    with pytest.raises(ResultsSchemaError, match="mode 'paper'"):
        Experiment(**{**make_experiment().__dict__, "mode": "paper"})


def test_a_file_without_mode_and_report_columns_takes_them_from_its_deviations_once(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r.csv")
    dra = Experiment(**{**make_experiment().__dict__, "method": "dra", "deviations": "mode=faithful; epochs=2"})
    bgad = Experiment(**{**make_experiment(1).__dict__, "method": "bgad", "deviations": "report=last_epoch; x=1"})
    store.append(dra.rows({"auroc": 0.8}, 1.0) + bgad.rows({"auroc": 0.7, "auroc@max_over_epochs": 0.9}, 1.0))
    pd.read_csv(store.path, dtype=str, keep_default_na=False).drop(columns=["mode", "report"]).to_csv(store.path,
                                                                                                    index=False)
    rows = store.read().set_index(["method", "metric"])
    assert "older schema without columns ['mode', 'report']" in capsys.readouterr().err
    assert rows.loc[("dra", "auroc"), "mode"] == "faithful" and rows.loc[("dra", "auroc"), "report"] == ""
    assert rows.loc[("bgad", "auroc"), "report"] == "last_epoch" and rows.loc[("bgad", "auroc"), "mode"] == ""
    assert rows.loc[("bgad", "auroc@max_over_epochs"), "report"] == "max_over_epochs"
    assert rows.loc[("dra", "auroc"), "deviations"] == "epochs=2" and rows.loc[("bgad", "auroc"), "deviations"] == "x=1"
    assert list(pd.read_csv(store.path).columns) == list(COLUMNS)  # rewritten in the current schema


def test_marker_parts_written_into_deviations_by_earlier_versions_leave_it_when_read(tmp_path):
    """Before the mode and report columns took them over, rows said ``mode=faithful`` or
    ``report=last_epoch`` in ``deviations``; read back, only the real departures remain."""
    store = ResultsStore(tmp_path / "r.csv")
    rows = []
    for n, text in enumerate(("mode=faithful; epochs=2", "report=last_epoch", "base: mode=faithful; x=1",
                              "warmup=faithful (code: clean)", "")):
        rows += Experiment(**{**make_experiment(n).__dict__, "deviations": text}).rows({"auroc": 0.8}, 1.0)
    store.append(rows)
    read = store.read().sort_values("seed")
    assert read["deviations"].fillna("").tolist() == ["epochs=2", "", "base: mode=faithful; x=1",
                                                      "warmup=faithful (code: clean)", ""]


def test_source_is_a_key_column_that_leaves_the_ids_of_rows_without_one_unchanged():
    plain = make_experiment()
    crossed = Experiment(**{**plain.__dict__, "setting": "cross_domain", "source": "grid"})
    assert "source" in KEY_COLUMNS and crossed.rows({"auroc": 0.8}, 1.0)[0]["source"] == "grid"
    assert crossed.experiment_id != Experiment(**{**crossed.__dict__, "source": "carpet"}).experiment_id
    # the id of an experiment without a source hashes the key as it was before the column existed
    old_key = {c: getattr(plain, c) for c in KEY_COLUMNS if c != "source"}
    old_key["extra"] = {}
    old_id = hashlib.sha1(json.dumps(old_key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert plain.experiment_id == old_id


def test_a_file_before_the_source_column_is_migrated_and_its_old_cross_domain_rows_set_aside(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r.csv")
    kept = make_experiment()
    old_layout = Experiment(**{**make_experiment(1).__dict__, "setting": "cross_domain", "variant": "source=grid"})
    store.append(kept.rows({"auroc": 0.8}, 1.0) + old_layout.rows({"auroc": 0.7, "aupr": 0.6}, 1.0))
    pd.read_csv(store.path, dtype=str, keep_default_na=False).drop(columns=["source"]).to_csv(store.path, index=False)
    assert store.damaged_experiments() == {old_layout.experiment_id}  # so the runner reruns its notebook
    err = capsys.readouterr().err
    assert "older schema without columns ['source']" in err and "layout before the source column" in err
    rows = store.read()
    assert list(rows["experiment_id"]) == [kept.experiment_id] and (rows["source"] == "").all()
    assert store.completed() == {kept.experiment_id}  # its id still matches: not recomputed
    assert store.quarantine_path.read_text().count("source=grid") == 2


def test_a_variant_is_stored_with_its_parameters_as_json(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r.csv")
    swept = Experiment(**{**make_experiment().__dict__, "variant": "anoonly,la=0.05",
                          "params": {"la": 0.05, "anomaly_only": True}})
    store.append(swept.rows({"auroc": 0.8}, 1.0) + make_experiment(1).rows({"auroc": 0.7}, 1.0))
    rows = store.read().set_index("seed")
    assert rows.loc[0, "params"] == '{"anomaly_only": true, "la": 0.05}' and rows.loc[1, "params"] == ""
    assert variant_params(rows.loc[0, "params"]) == {"anomaly_only": True, "la": 0.05}
    assert variant_params(rows.loc[1, "params"]) == {}
    assert swept.experiment_id == Experiment(**{**swept.__dict__, "params": {}}).experiment_id  # recorded, not key
    text = store.path.read_text()
    store.path.write_text(text.replace('"{""anomaly_only"": true, ""la"": 0.05}"', '"{la: 0.05"', 1))
    assert store.damaged_experiments() == {swept.experiment_id}  # a damaged params field is a damaged row
    assert "params '{la: 0.05' is not a JSON object" in capsys.readouterr().err

