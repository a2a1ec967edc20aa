"""The method extension point: registry and import paths, typed settings, the generic loop equal to the built-in one, states, cohort."""

import sys
from dataclasses import dataclass

import pytest
import torch

from fedtrain.client import ClientUpdate
from fedtrain.config import ALGORITHMS, TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.methods import BUILTIN_METHODS, Method, load_method, method_class
from fedtrain.methods.fedavg import FedAvg
from fedtrain.round import RoundData, federated_round
from fedtrain.server import ServerState
from tests.fedtrain.test_round import _config, _data, _equal, _one_thread, _state  # noqa: F401 (autouse fixture)


def test_the_builtin_methods_are_exactly_the_config_choice_list():
    assert list(BUILTIN_METHODS) == list(ALGORITHMS)
    for name, cls in BUILTIN_METHODS.items():
        assert cls.name == name and isinstance(load_method(TrainConfig(algorithm=name)), cls)


def test_only_the_three_local_optimiser_methods_run_vectorised():
    assert {n for n, cls in BUILTIN_METHODS.items() if cls.supports_vmap} == {"fedavg", "fedsam", "fedasam"}


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match="choose one of fedavg, fedsam, fedasam, mofedsam, fedgamma"):
        TrainConfig(algorithm="fedyogi")
    with pytest.raises(ConfigError, match="choose one of fedavg, fedsam, fedasam, mofedsam, fedgamma"):
        method_class("fedyogi")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``usermethods`` in tmp_path, importable by path, removed from sys.modules afterwards."""
    (tmp_path / "usermethods.py").write_text(
        "from dataclasses import dataclass\n"
        "from fedtrain.methods import Method\n"
        "class Scaled(Method):\n"
        "    name = 'scaled'\n"
        "    @dataclass(frozen=True)\n"
        "    class Settings:\n"
        "        factor: float = 1.0\n"
        "        steps: int = 2\n"
        "        label: str = 'x'\n"
        "        flag: bool = False\n"
        "not_a_method = 3\n"
        "class Untyped(Method):\n"
        "    class Settings:\n"
        "        factor = 1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "usermethods"
    sys.modules.pop("usermethods", None)


def test_an_import_path_names_a_users_method_with_typed_settings_from_strings(user_module):
    config = TrainConfig(algorithm=f"{user_module}:Scaled", method_args={"factor": "0.5", "steps": "3", "flag": "true"})
    method = load_method(config)
    assert method.name == "scaled" and method.settings_record() == {"factor": 0.5, "steps": 3, "label": "x", "flag": True}
    assert config.optimizer == "sgd" and config.to_dict()["method_args"] == {"factor": "0.5", "steps": "3", "flag": "true"}


@pytest.mark.parametrize("args, match", [
    ({"nope": 1}, r"has no setting\(s\) nope .*its settings: factor, steps, label, flag"),
    ({"steps": "2.5"}, r"setting steps \(--method-arg steps=...\) must be a int, got '2.5'"),
    ({"steps": 2.5}, "must be a int"),
    ({"factor": "inf"}, "must be a float"),
    ({"factor": True}, "must be a float"),
    ({"flag": "maybe"}, "must be a bool"),
])
def test_bad_method_settings_are_one_clear_error(user_module, args, match):
    with pytest.raises(ConfigError, match=match):
        load_method(TrainConfig(algorithm=f"{user_module}:Scaled", method_args=args))


def test_an_import_path_to_something_else_or_nothing_is_refused(user_module):
    with pytest.raises(ConfigError, match="not a federated method: it must be a class deriving from fedtrain.methods.Method"):
        method_class(f"{user_module}:not_a_method")
    with pytest.raises(ConfigError, match="no module named 'nomodule'"):
        method_class("nomodule:Thing")
    with pytest.raises(ConfigError, match=r"its Settings must be a dataclass .* got <class 'usermethods.Untyped.Settings'>"):
        method_class(f"{user_module}:Untyped")


def test_method_args_must_be_plain_values():
    with pytest.raises(ConfigError, match=r"method_args \(--method-arg\) must be a mapping"):
        TrainConfig(method_args={"a": [1, 2]})


class _FedAvgThroughTheMethodPath(FedAvg):
    """FedAvg whose client update is overridden (by itself), so the loop takes the generic method path."""

    supports_vmap = False

    def client_update(self, global_params, shard, client_state, ctx):
        return super().client_update(global_params, shard, client_state, ctx)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedsam", "fedasam"])
def test_the_generic_method_path_is_bit_identical_to_the_builtin_loop(algorithm, monkeypatch):
    config = _config(algorithm=algorithm)
    expected, state = _state(), _state()
    for r in range(3):
        expected, _ = federated_round(expected, config, _data(), r)
    monkeypatch.setattr("fedtrain.round.load_method", lambda c: _FedAvgThroughTheMethodPath())
    for r in range(3):
        state, _ = federated_round(state, config, _data(), r)
    assert _equal(state.params, expected.params) and _equal(state.momentum, expected.momentum)
    assert state.method_state == {} and state.client_states == {}


class _Counting(Method):
    """Counts per client how often it trained and, on the server, the rounds; adds 1 to every weight."""

    def client_update(self, global_params, shard, client_state, ctx):
        assert ctx.server_state.get("rounds", torch.tensor(0)).item() == ctx.round
        delta = {k: torch.ones_like(v) for k, v in global_params.items()}
        seen = client_state.get("seen", torch.tensor(0)) + 1
        return ClientUpdate(delta=delta, num_examples=shard.num_examples, metrics={"train_loss": 0.0}), {"seen": seen}

    def server_step(self, global_params, updates, server_state, ctx):
        params, state = super().server_step(global_params, updates, server_state, ctx)
        return params, {**state, "rounds": server_state.get("rounds", torch.tensor(0)) + 1}


def test_client_and_server_states_persist_across_rounds_and_the_fedopt_momentum_keeps_its_field(monkeypatch):
    monkeypatch.setattr("fedtrain.round.load_method", lambda c: _Counting())
    config, state, trained = _config(), _state(), {}
    for r in range(4):
        state, metrics = federated_round(state, config, _data(), r)
        for k in metrics.clients:
            trained[k] = trained.get(k, 0) + 1
    assert {k: int(s["seen"]) for k, s in state.client_states.items()} == trained
    assert int(state.method_state["rounds"]) == 4 and "server_momentum" not in state.method_state
    assert state.momentum is not None  # server_momentum 0.5: FedAvgM's buffer in ServerState.momentum, as before


def test_a_method_without_vmap_runs_sequential_under_auto_and_refuses_vmap(monkeypatch):
    monkeypatch.setattr("fedtrain.round.load_method", lambda c: _Counting())
    federated_round(_state(), _config(cohort="auto"), _data(), 0)
    with pytest.raises(ConfigError, match="--cohort vmap cannot train this run: method 'method' has a client update of its own"):
        federated_round(_state(), _config(cohort="vmap"), _data(), 0)


def test_a_config_files_method_args_merge_key_by_key_with_the_flags(tmp_path):
    from fedtrain.config import resolve_config

    path = tmp_path / "run.yaml"
    path.write_text("algorithm: mofedsam\nmethod_args:\n  alpha: 0.2\n  max_grad_norm: 5\n")
    config = resolve_config(config_file=path, overrides={"method_args": {"alpha": "0.4"}})
    assert config.method_args == {"alpha": "0.4", "max_grad_norm": 5}
    assert load_method(config).settings_record() == {"alpha": 0.4, "max_grad_norm": 5.0}
    path.write_text("method_args: [1]\n")
    with pytest.raises(ConfigError, match=r"method_args \(--method-arg\) must be a mapping"):
        resolve_config(config_file=path)


def test_auto_is_sequential_for_a_method_without_vmap_even_where_auto_would_vectorise(monkeypatch):
    from fedtrain.cohort import cohort_settings

    monkeypatch.setitem(__import__("fedtrain.cohort").cohort.AUTO_MODE, "cpu", "vmap")  # as on CUDA
    worker, config = _data().worker, _config(cohort="auto")
    assert cohort_settings(config, worker).mode == "vmap"
    assert cohort_settings(config, worker, method_refusal=_Counting().vmap_refusal()).mode == "sequential"
    assert cohort_settings(config, worker, method_refusal=load_method(config).vmap_refusal()).mode == "vmap"  # fedavg


def test_the_docstring_example_runs():
    import doctest

    import fedtrain.methods.base as base

    result = doctest.testmod(base)
    assert result.attempted >= 8 and result.failed == 0


@pytest.mark.parametrize("algorithm", ["mofedsam", "fedgamma"])
def test_swa_and_the_server_optimiser_work_for_a_stateful_method(algorithm):
    config = _config(algorithm=algorithm, swa=True, swa_start=2, swa_c=2, swa_lr=0.01)
    state = _state()
    for r in range(6):
        state, metrics = federated_round(state, config, _data(), r)
    assert state.swa_count == 2 and state.swa_params is not None and state.momentum is not None  # server_momentum 0.5
    assert state.method_state and all(torch.isfinite(t).all() for t in state.params.values())
    assert metrics.lr == config.swa_lr  # the cyclical client lr reached the end of its cycle
