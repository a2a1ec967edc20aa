"""The observer seam of a training run: measurements of the global model after chosen rounds, merged into ``metrics.jsonl``.

An observer (e.g. :class:`landscape.hessian.tracking.SharpnessTracker`, which ``fedtrain`` does not import)
is called after every ``every``-th round with the global weights and returns numbers that join that
round's metrics record, each key prefixed with the observer's name (``sharpness_lambda_max``). It never
changes the run: it gets the weights read-only and owns its own model copy and generators, so the
training numbers are bit-identical with and without it.

What a run records so a resume knows: ``TrainConfig.observers`` (``{name: settings}``) must equal the
observers passed to :func:`fedtrain.run.train` (the CLI rebuilds them from it), and every checkpoint
stores each observer's ``state_dict()`` (e.g. a warm-start vector) under ``state["observers"]``, restored
on resume, so a resumed run observes what the uninterrupted run observed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from fedtrain.config import TrainConfig
from fedtrain.errors import ConfigError
from fedtrain.round import RoundMetrics
from fedtrain.server import ServerState, StateDict

__all__ = ["RoundObserver", "check_observers", "ObserverHook"]


@runtime_checkable
class RoundObserver(Protocol):
    """Something measured on the global model every ``every`` rounds.

    Attributes:
        name: the prefix of its metrics keys and its key in ``TrainConfig.observers``.
        every: rounds between observations (each observed round must be an evaluated one).
    """

    name: str
    every: int

    def settings(self) -> dict[str, Any]:
        """Its settings as JSON-able values (what ``TrainConfig.observers[name]`` records)."""
        ...

    def observe(self, round: int, params: StateDict) -> dict[str, Any]:
        """Numbers of the global weights ``params`` after ``round`` rounds (``params`` must not be modified)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs to continue exactly (tensors and plain values; checkpoints load with weights_only)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        ...


def check_observers(observers: Sequence[RoundObserver], config: TrainConfig) -> None:
    """Refuse observers that do not match ``config.observers`` or observe a round that is not evaluated.

    Raises:
        ConfigError: duplicate names, settings different from those the run records, or an observed round
            without an evaluation (its numbers would have no metrics record to join).
    """
    names = [o.name for o in observers]
    if len(set(names)) != len(names):
        raise ConfigError(f"Two observers share a name ({', '.join(names)}); each needs its own.")
    given = {o.name: o.settings() for o in observers}
    if given != dict(config.observers):
        raise ConfigError(
            f"The run records the observers {sorted(config.observers) or 'none'} with settings {dict(config.observers)}, "
            f"but {sorted(given) or 'none'} with {given} were passed. Pass observers built from the run's config "
            "(the CLI rebuilds them from config.json on --resume); they cannot change during a run."
        )
    for observer in observers:
        missing = [r for r in range(observer.every, config.rounds + 1, observer.every) if not config.evaluates_at(r - 1)]
        if missing:
            raise ConfigError(
                f"Observer {observer.name!r} measures every {observer.every} rounds, but round {missing[0]} is not "
                f"evaluated (--eval-every {config.eval_every}): its numbers would have no metrics line. Observe every "
                f"multiple of --eval-every (e.g. {config.eval_every}), or evaluate more often."
            )


class ObserverHook:
    """The loop hook that runs the due observers after a round and merges their numbers into its metrics record.

    Args:
        observers: the run's observers (:func:`check_observers` passed).
        metrics: returns the run's metrics records (the last one is the round's evaluation).
        write: rewrites ``metrics.jsonl`` from them.
        states: where the observers' states are kept for the checkpoints (``{name: state_dict}``), updated in place.
    """

    def __init__(self, observers: Sequence[RoundObserver], metrics: Callable[[], list[dict[str, Any]]],
                 write: Callable[[], None], states: dict[str, Any]) -> None:
        self.observers = tuple(observers)
        self.metrics = metrics
        self.write = write
        self.states = states

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Load the states a checkpoint saved (``state["observers"]``); an observer without one starts afresh."""
        for observer in self.observers:
            if observer.name in saved:
                observer.load_state_dict(saved[observer.name])
                self.states[observer.name] = saved[observer.name]

    def __call__(self, state: ServerState, info: RoundMetrics) -> None:
        due = [o for o in self.observers if state.round % o.every == 0]
        if not due:
            return
        record = self.metrics()[-1]
        if record["round"] != state.round:  # check_observers makes every observed round an evaluated one
            raise RuntimeError(f"round {state.round} was observed but not evaluated")
        for observer in due:
            numbers = observer.observe(state.round, state.params)
            record.update({f"{observer.name}_{key}": value for key, value in numbers.items()})
            self.states[observer.name] = observer.state_dict()
        self.write()
