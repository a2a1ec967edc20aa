"""TrainConfig: presets, resolution order, config files, validation errors."""

import pytest

from fedtrain.config import DEFAULT_RHO, PRESET_RHO, PRESETS, TrainConfig, load_config_file, preset_config, resolve_config
from fedtrain.errors import ConfigError


def test_paper_preset_has_the_papers_cifar10_setting():
    cfg = preset_config("paper-cifar10", algorithm="fedasam")
    assert (cfg.dataset, cfg.num_clients, cfg.samples_per_client, cfg.clients_per_round) == ("cifar10", 100, 500, 5)
    assert (cfg.local_epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.rounds) == (1, 64, 0.01, 4e-4, 10_000)
    assert (cfg.rho, cfg.eta) == (0.7, 0.2)
    assert preset_config("paper-cifar10", algorithm="fedsam").rho == 0.1
    assert cfg.swa_start_round == 7500 and cfg.swa_c == 10 and cfg.swa_lr == 1e-4 and cfg.last_k == 100


def test_round_trips_through_a_dict():
    cfg = preset_config("quick", algorithm="fedsam", model_kwargs={"hidden": [8]}, checkpoint_rounds=[5, 2])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.checkpoint_rounds == (2, 5)


def test_resolution_order_preset_then_file_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "quick"\nrounds = 7\nlr = 0.2\n')
    cfg = resolve_config(config_file=toml, overrides={"lr": 0.3})
    assert cfg.preset == "quick" and cfg.rounds == 7 and cfg.lr == 0.3
    assert cfg.samples_per_client == PRESETS["quick"]["samples_per_client"]
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("train:\n  swa-start: 0.5\n  swa: true\n")
    assert resolve_config(preset="quick", config_file=yaml_file).swa_start_round == PRESETS["quick"]["rounds"] // 2


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"algorithm": "fedprox"}, "Unknown algorithm 'fedprox'"),
        ({"rounds": 0}, r"rounds \(--rounds\) must be an integer >= 1"),
        ({"clients_per_round": 200}, "cannot exceed num_clients"),
        ({"lr": -1.0}, r"lr \(--lr\) must be a finite number > 0"),
        ({"algorithm": "fedsam", "rho": -0.1}, r"rho \(--rho\) must be a finite number >= 0"),
        ({"swa": True, "swa_start": 100}, "SWA would start at round 100"),
        ({"swa_start": 1.5}, "swa_start"),
        ({"swa_collect": "middle"}, "swa_collect must be 'end' or 'reference'"),
        ({"bogus": 1}, "Unknown training setting"),
        ({"device": "gpu"}, r"device \(--device\) must be auto, cpu, cuda or cuda:N"),
        ({"device": "cuda:"}, r"device \(--device\) must be auto, cpu, cuda or cuda:N"),
        ({"deterministic": "yes"}, r"deterministic \(--deterministic\) must be true or false"),
    ],
)
def test_invalid_settings_are_refused_with_the_flag_named(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **changes})


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="No config file"):
        load_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3")
    with pytest.raises(ConfigError, match="could not be parsed as TOML"):
        load_config_file(bad)
    other = tmp_path / "cfg.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match="must end in .toml, .yaml or .yml"):
        load_config_file(other)
    with pytest.raises(ConfigError, match="Unknown preset"):
        preset_config("huge")


def test_evaluation_cadence_includes_every_kth_the_last_rounds_and_the_end():
    cfg = TrainConfig(rounds=20, eval_every=8, eval_last=3)
    assert [t + 1 for t in range(20) if cfg.evaluates_at(t)] == [8, 16, 18, 19, 20]


def test_replace_keeps_a_given_rho_and_re_resolves_a_defaulted_one():
    given = TrainConfig(algorithm="fedsam", rho=0.1)
    assert given.replace(algorithm="fedasam").rho == 0.1  # equal to FedSAM's default, but the user's value
    assert given.replace(rounds=5).replace(algorithm="fedasam").rho == 0.1
    defaulted = TrainConfig(algorithm="fedsam")
    assert defaulted.rho == 0.1 and defaulted.replace(algorithm="fedasam").rho == 0.7
    assert defaulted.replace(rounds=5).replace(algorithm="fedasam").rho == 0.7  # stays defaulted through replace
    assert defaulted.replace(algorithm="fedavg").rho is None
    assert defaulted.replace(algorithm="fedasam", rho=0.3).rho == 0.3
    assert TrainConfig(algorithm="fedavg", rho=0.2).replace(algorithm="fedsam").rho == 0.2
    assert preset_config("quick", algorithm="fedsam").replace(algorithm="fedasam").rho == PRESET_RHO["quick"]["fedasam"]


def test_a_preset_with_tuned_radii_gives_them_to_runs_that_name_no_rho_and_never_overrides_a_given_one():
    assert preset_config("quick", algorithm="fedsam").rho == PRESET_RHO["quick"]["fedsam"] != DEFAULT_RHO["fedsam"]
    assert preset_config("quick", algorithm="fedasam").rho == PRESET_RHO["quick"]["fedasam"] != DEFAULT_RHO["fedasam"]
    assert preset_config("quick", algorithm="fedasam", rho=0.7).rho == 0.7
    assert preset_config("quick", algorithm="fedavg").rho is None
    assert preset_config("paper-cifar10", algorithm="fedasam").rho == DEFAULT_RHO["fedasam"]  # the paper's radii, untuned
    assert TrainConfig.from_dict(preset_config("quick", algorithm="fedsam").to_dict()).rho == PRESET_RHO["quick"]["fedsam"]


def test_the_resolved_rho_is_what_to_dict_records_and_from_dict_round_trips():
    for cfg in (TrainConfig(algorithm="fedasam"), TrainConfig(algorithm="fedsam", rho=0.1), TrainConfig()):
        values = cfg.to_dict()
        assert "rho_given" not in values and values["rho"] == cfg.rho
        assert TrainConfig.from_dict(values) == cfg
    assert TrainConfig(algorithm="fedasam").to_dict()["rho"] == 0.7
    with pytest.raises(ConfigError, match="Unknown training setting"):
        TrainConfig.from_dict({"rho_given": True})


def test_the_choice_lists_agree_with_the_registries_that_implement_them():
    from fedtrain import config, data, models, partition, swa
    from fedtrain.client import ClientConfig

    assert tuple(models.MODELS) == config.MODEL_NAMES
    assert data.DATASETS is config.DATASETS
    for table in (data._NORMALISATION, data._NUM_CLASSES, data._AUGMENTATION):
        assert tuple(table) == config.DATASETS
    assert partition.PARTITION_SCHEMES is config.PARTITION_SCHEMES
    assert set(config.OPTIMIZERS) == {"sgd", "sam", "asam"} and ClientConfig(lr=1.0).optimizer in config.OPTIMIZERS
    assert all(swa.collects(0, start=0, cycle=1, collect=mode) in (True, False) for mode in config.SWA_COLLECT_MODES)
    with pytest.raises(ValueError, match="collect must be one of"):
        swa.collects(0, start=0, cycle=1, collect="middle")
    for name in config.PRESETS:
        preset_config(name)
    for field, names in (("dataset", config.DATASETS), ("model", config.MODEL_NAMES), ("partition", config.PARTITION_SCHEMES),
                         ("algorithm", tuple(config.ALGORITHMS)), ("swa_collect", config.SWA_COLLECT_MODES)):
        assert all(getattr(TrainConfig(**{field: name}), field) == name for name in names)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"dataset": "imagenet"}, "Unknown dataset 'imagenet'. Available datasets: fashion-mnist"),
        ({"model": "vgg"}, "Unknown model 'vgg'. Available models: cnn"),
        ({"partition": "shards"}, "Unknown partition scheme 'shards'. Available schemes: dirichlet"),
    ],
)
def test_unknown_names_are_refused_by_the_record(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes)


def test_importing_the_config_and_the_cli_choices_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, fedtrain.config, fedtrain.errors; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_the_device_is_a_spec_recorded_as_given_and_auto_by_default():
    assert (TrainConfig().device, TrainConfig().deterministic) == ("auto", False)
    for spec in ("auto", "cpu", "cuda", "cuda:3"):  # not resolved here: a record may name a GPU this machine lacks
        cfg = TrainConfig(device=spec, deterministic=True)
        assert cfg.to_dict()["device"] == spec and TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict({k: v for k, v in TrainConfig().to_dict().items() if k not in ("device", "deterministic")}) == TrainConfig()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"checkpoint_rounds": "abc"}, r"checkpoint_rounds \(--checkpoint-round\) must be a list of round numbers"),
        ({"checkpoint_rounds": [2.5]}, r"checkpoint_rounds \(--checkpoint-round\) must be a list of round numbers"),
        ({"checkpoint_rounds": [True]}, r"checkpoint_rounds \(--checkpoint-round\) must be a list of round numbers"),
        ({"checkpoint_rounds": [5, 200], "rounds": 100}, r"\[5, 200\] include rounds after the last \(100\)"),
        ({"data_dir": 5}, r"data_dir \(--data-dir\) must be a folder path \(a string\) or null, got 5"),
        ({"alpha": "abc"}, r"alpha \(--alpha\) must be a finite number >= 0 or null, got 'abc'"),
        ({"alpha": float("nan")}, r"alpha \(--alpha\) must be a finite number >= 0"),
        ({"alpha": -1.0}, r"alpha \(--alpha\) must be a finite number >= 0"),
        ({"alpha": None}, r"partition 'dirichlet' needs alpha \(--alpha\)"),
        ({"model_kwargs": "abc"}, r"model_kwargs \(config key model_kwargs\) must be a mapping of model options"),
        ({"rounds": True}, r"rounds \(--rounds\) must be an integer >= 1, got True"),
        ({"num_clients": 10.0}, r"num_clients \(--num-clients\) must be an integer >= 1, got 10.0"),
        ({"samples_per_client": 0}, r"samples_per_client \(--samples-per-client\) must be an integer >= 1 or null"),
        ({"eval_examples": "x"}, r"eval_examples \(--eval-examples\) must be an integer >= 1 or null"),
        ({"lr": float("nan")}, r"lr \(--lr\) must be a finite number > 0, got nan"),
        ({"lr": float("inf")}, r"lr \(--lr\) must be a finite number > 0, got inf"),
        ({"lr": True}, r"lr \(--lr\) must be a finite number > 0, got True"),
        ({"weight_decay": "0.1"}, r"weight_decay \(--weight-decay\) must be a finite number >= 0, got '0.1'"),
        ({"momentum": 1.0}, r"momentum \(--momentum\) must be a finite number in \[0, 1\)"),
        ({"server_momentum": float("nan")}, r"server_momentum \(--server-momentum\) must be a finite number in \[0, 1\)"),
        ({"rho": float("nan")}, r"rho \(--rho\) must be a finite number >= 0"),  # FedAvg too: a rho is never nonsense
        ({"swa": "yes"}, r"swa \(--swa\) must be true or false, got 'yes'"),
        ({"swa_start": True}, r"swa_start \(--swa-start\) must be a fraction in \[0, 1\) or a whole round number"),
        ({"swa_start": float("inf")}, r"swa_start \(--swa-start\) must be a fraction"),
        ({"seed": -1}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1 \(9223372036854775807\), got -1"),
        ({"seed": 2**63}, r"seed \(--seed\) must be an integer from 0 to 2\*\*63 - 1"),
        ({"seed": 2**70}, r"got 1180591620717411303424"),
        ({"seed": 2**20000}, r"got an integer of 20001 bits"),  # its repr would be refused by Python itself
        ({"seed": 1.5}, r"seed \(--seed\) must be an integer"),
        ({"seed": "3"}, r"seed \(--seed\) must be an integer"),
        ({"algorithm": ["fedsam"]}, r"algorithm \(--algorithm\) must be a name \(a string\)"),
        ({"preset": "huge"}, r"preset \(--preset\) must be null or a preset name"),
    ],
)
def test_every_setting_has_its_type_finiteness_and_range_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **changes})


def test_the_seed_range_is_exactly_what_the_generators_take():
    import numpy as np
    import torch

    from fedtrain.config import MAX_SEED, check_seed

    assert TrainConfig(seed=MAX_SEED).seed == MAX_SEED and check_seed(0) == 0
    torch.Generator().manual_seed(MAX_SEED + 2)  # the largest seed a Hessian analysis derives
    np.random.default_rng(MAX_SEED + 2)
    with pytest.raises(ValueError, match="Overflow"):  # what --seed 2**70 hit before the record refused it
        torch.Generator().manual_seed(2**70)
    assert TrainConfig(partition="iid", alpha=None).alpha is None and TrainConfig(checkpoint_rounds=[100]).checkpoint_rounds == (100,)


def test_thread_counts_are_bounded_where_torch_gets_them():
    import torch

    from fedtrain._numerics import run_numerics
    from fedtrain.config import MAX_THREADS, check_threads

    assert check_threads(1) == 1 and check_threads(MAX_THREADS) == MAX_THREADS
    for bad in (0, MAX_THREADS + 1, 10**11, True, 2.0, "4"):
        with pytest.raises(ConfigError, match=r"threads \(--threads\) must be an integer from 1 to 1024"):
            check_threads(bad)
    with pytest.raises(ConfigError, match="threads"):  # a count recorded in a damaged checkpoint, before torch sees it
        with run_numerics(torch.device("cpu"), deterministic=False, threads=10**11):
            pass
