"""The search loop: ask the strategy, evaluate in parallel, tell the rewards; resumable after a kill.

A search directory holds:

- ``search.json``: the search's settings (what is searched, how it is scored, the budget);
- ``trials.json``: every evaluated architecture (`effnet.experiments.trials.TrialStore`, keyed by the
  canonical spec string, rewritten atomically after each finished trial: a repeat of an
  architecture is never retrained);
- ``state.pt``: the strategy (controller weights and optimizer, population, RNG state), the
  history of every trial told to it and the batch being evaluated; rewritten atomically after
  each ask and each tell; it holds only tensors, numbers and strings and is read with
  ``torch.load(weights_only=True)``;
- reports at the end (`effnet.experiments.search.report`).

Resume rests on the order of writes: the batch a strategy asked for is saved (with the RNG
state after asking) before any of it is evaluated; each evaluated candidate is saved by the
trial store as it finishes; the strategy is told, and the state saved, only when the whole
batch is in. A search killed at any moment resumes by evaluating the candidates of the saved
batch that are not in the store, so no trial is lost or repeated and the strategy sees the
same rewards in the same order as in an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from effnet._fields import reject_unknown
from effnet.core.spec import SpecError
from effnet.experiments.proxy import recipe
from effnet.experiments.saved_options import changed_keys, short
from effnet.experiments.search.evaluators import EvaluatorConfig, check_data, score_candidate, score_text
from effnet.experiments.search.reward import Reward
from effnet.experiments.search.space import SearchSpace, SearchSpaceError, default_space
from effnet.experiments.search.strategies import STRATEGIES, make_strategy
from effnet.train.checkpoint import atomic_torch_save
from effnet.train.config import GENERATED_DATASETS

CONFIG_FILE = "search.json"
STATE_FILE = "state.pt"
STATE_VERSION = 1
# settings that may change when a search is resumed (they change how, not what, is searched)
RESUMABLE_CHANGES = ("trials", "workers")


class SearchError(ValueError):
    """A search cannot start or resume as asked; the message says why and what to do."""


@dataclass
class SearchConfig:
    """Everything that defines a search. All but `trials` is its identity (a resume must match it)."""

    strategy: str = "ppo"
    trials: int = 32
    batch_size: int = 4
    seed: int = 0
    target_macs: float = 400e6
    reward: str = "soft"
    w: float = -0.07
    space: dict[str, Any] = field(default_factory=lambda: default_space().to_dict())
    evaluator: dict[str, Any] = field(default_factory=lambda: EvaluatorConfig().to_dict())
    strategy_options: dict[str, Any] = field(default_factory=dict)
    warm_start: int = 0  # zero-cost (NASWOT) scores of this many random architectures before the search

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SearchError(f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.trials < 1:
            raise SearchError(f"the trial budget must be >= 1, got {self.trials}")
        if self.batch_size < 1:
            raise SearchError(f"the batch size must be >= 1, got {self.batch_size}")
        try:
            make_strategy(self.strategy, [2], 0, **self.strategy_options)  # checks the options before anything runs
        except (TypeError, ValueError) as err:
            raise SearchError(f"bad options {self.strategy_options} for strategy {self.strategy!r}: {err}") from None
        if self.warm_start < 0:
            raise SearchError(f"warm_start (zero-cost samples) must be >= 0, got {self.warm_start}")
        try:
            self.reward_fn()
        except ValueError as err:
            raise SearchError(str(err)) from None
        if isinstance(self.space, SearchSpace):
            self.space = self.space.to_dict()
        if isinstance(self.evaluator, EvaluatorConfig):
            self.evaluator = self.evaluator.to_dict()
        try:
            self.space = self.search_space().to_dict()  # validated, and in one canonical form (the identity compares it)
        except SpecError as err:
            raise SearchSpaceError(f"bad search space skeleton: {err}") from None
        try:
            # the dataset as decided ("" with a data directory: folder), so the identity and the trials name it
            self.evaluator = {**self.evaluator, "dataset": self.evaluator_config().dataset}
        except (TypeError, ValueError) as err:
            raise SearchError(f"bad evaluator settings: {err}") from None

    def reward_fn(self) -> Reward:
        return Reward.from_name(self.reward, self.target_macs, self.w)

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.space)

    def evaluator_config(self) -> EvaluatorConfig:
        return EvaluatorConfig.from_dict(self.evaluator)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def identity(self) -> dict[str, Any]:
        """The settings a resumed search must share with the saved one."""
        out = self.to_dict()
        out.pop("trials")
        return {"kind": "effnet-search", **out, "recipe": recipe() if self.evaluator.get("kind") == "proxy" else {}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        reject_unknown(data, cls, "search setting(s)", error=SearchError)
        return cls(**data)


@dataclass
class SearchResult:
    """What a finished search found: every trial told to the strategy, the best one, where the files are."""

    out_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    batches: list[dict[str, Any]]
    evaluated: int  # trials evaluated by this call (not cached, not from an earlier session)
    seconds: float
    evaluator_kind: str = "proxy"  # how "accuracy" was measured (proxy training, NASWOT score, toy objective)
    warning: str | None = None  # set when the ranking says nothing (best near chance, or every accuracy tied)

    def summary(self) -> str:
        if self.best is None:
            return f"no successful trial in {len(self.history)}; see {self.out_dir}"
        b = self.best
        return (
            f"best reward {b['reward']:.4f} ({score_text(b['accuracy'], self.evaluator_kind)}, {b['macs'] / 1e6:.1f}M MACs) "
            f"at trial {b['trial'] + 1} of {len(self.history)}: {b['key']}\nbest spec: {self.out_dir / 'best_spec.json'}; report: {self.out_dir / 'summary.md'}"
        )


# ------------------------------------------------------------------ state I/O
def _save_state(path: Path, identity: dict[str, Any], strategy: Any, history: list, batches: list, pending: list | None) -> None:
    payload = {
        "version": STATE_VERSION,
        "identity": json.dumps(identity, sort_keys=True),
        "strategy": strategy.state_dict(),
        "history": json.dumps(history),
        "batches": json.dumps(batches),
        "pending": json.dumps(pending),
    }
    atomic_torch_save(path, payload)


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable state file gets the same advice
        raise SearchError(f"cannot read the search state {path}: {err}; the trials in {path.parent / 'trials.json'} are intact") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise SearchError(f"{path} is not an effnet search state (version {STATE_VERSION})")
    return data


def _ranking_warning(records: list[dict[str, Any]], evaluator: EvaluatorConfig, classes: int | None) -> str | None:
    """Say so when the accuracies behind the ranking say nothing (near chance, or all tied: the reward then only prefers fewer MACs)."""
    from effnet.experiments.ranking import ranking_warning

    if evaluator.kind == "naswot":  # a zero-cost score: no chance level, no noise model
        return None
    accuracies = {r["key"]: 100.0 * r["accuracy"] for r in records}  # distinct architectures: a repeat is not a second opinion
    proxy = evaluator.kind == "proxy"
    return ranking_warning(
        list(accuracies.values()),
        chance=100.0 / classes if proxy and classes else None,
        samples=evaluator.val_samples if proxy and evaluator.dataset in GENERATED_DATASETS else None,  # other datasets: at most that many
        what="architecture",
        advice="train longer (--epochs) or on more data (--train-samples)" if proxy else "check the objective",
    )


# ------------------------------------------------------------------ the loop
def _resumed_config(config: SearchConfig | None, out: Path) -> SearchConfig:
    """The saved search's config, or `config` when its identity equals the saved one (only --trials and --workers may change)."""
    config_path = out / CONFIG_FILE
    if not config_path.is_file():
        raise SearchError(f"{out} holds no search to resume (no {CONFIG_FILE}); start one with --out-dir {out}")
    try:
        saved = SearchConfig.from_dict(json.loads(config_path.read_text()))
    except (OSError, json.JSONDecodeError) as err:
        raise SearchError(f"cannot read {config_path}: {err}") from None
    if config is None:
        return saved
    if config.identity() != saved.identity():
        diffs = [f"{key} (saved {short(old)}, now {short(new)})" for key, old, new in changed_keys(saved.identity(), config.identity())]
        raise SearchError(
            f"{out} holds a different search: {'; '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}. "
            "Resume it with its own settings (only --trials and --workers may change) or choose a new --out-dir; nothing was changed."
        )
    return config


def _open_experiment(out: Path, config: SearchConfig, resume: bool, **execution: Any) -> Any:
    """The search's `trials.Experiment` in `out` (checked, locked, options saved), with its search.json written."""
    from effnet.experiments.trials import Experiment, TrialsError

    try:
        experiment = Experiment.open(out, config.identity(), what="search", resume=resume, markers=(CONFIG_FILE, STATE_FILE), **execution)
    except TrialsError as err:
        raise SearchError(str(err)) from None
    experiment.write(CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")
    return experiment


def _decode(pending: list[list[int]], space: SearchSpace, evaluator: EvaluatorConfig, decoded: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The trial items of a batch of encodings (keyed by the spec's string); each spec is kept in `decoded`."""
    items = []
    for encoding in pending:
        spec = space.decode(encoding)
        decoded[spec.to_string()] = spec
        items.append((spec.to_string(), {"evaluator": evaluator.to_dict(), "spec": spec.to_dict(), "encoding": encoding}))
    return items


def _restore(state_path: Path, identity: dict[str, Any], strategy: Any, config_path: Path) -> tuple[list, list, list | None]:
    """Load the strategy's state; return the saved (history, batches, pending batch)."""
    state = _load_state(state_path)
    if json.loads(state["identity"]) != identity:
        raise SearchError(f"{state_path} belongs to a different search than {config_path}; move one of them away")
    strategy.load_state_dict(state["strategy"])
    return json.loads(state["history"]), json.loads(state["batches"]), json.loads(state["pending"])


class _Progress:
    """The line logged per finished trial: its reward, the best so far, the time spent and the ETA."""

    def __init__(self, trials: int, kind: str, reward_fn: Callable[[float, float], float], history: list[dict[str, Any]], decoded: dict[str, Any]) -> None:
        self.trials, self.kind, self.reward_fn, self.history, self.decoded = trials, kind, reward_fn, history, decoded
        self.start, self.evaluated, self.in_batch = time.perf_counter(), 0, 0
        self.best = max((r["reward"] for r in history if r["reward"] is not None), default=None)

    def line(self, trial: Any) -> str:
        from effnet.core.profile import profile_spec

        self.evaluated += 1
        self.in_batch += 1
        done = len(self.history) + self.in_batch
        macs = profile_spec(self.decoded[trial.key]).macs
        if trial.ok:
            reward = self.reward_fn(trial.result["accuracy"], macs)
            self.best = reward if self.best is None else max(self.best, reward)
            outcome = f"reward {reward:.4f} ({score_text(trial.result['accuracy'], self.kind)}, {macs / 1e6:.1f}M MACs)"
        else:
            outcome = f"FAILED: {trial.error.splitlines()[0]}"
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.evaluated * max(0, self.trials - done)
        best = self.best if self.best is None else round(self.best, 4)
        return f"trial {min(done, self.trials)}/{self.trials} {outcome}; best {best}; {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min"


def _record(
    history: list[dict[str, Any]], batch: int, strategy: str, encoding: list[int], key: str, trial: Any, spec: Any, reward_fn: Callable, seen: set[str]
) -> float | None:
    """Append one told trial to `history` (a repeat of an architecture is marked cached); return its reward (None: failed)."""
    from effnet.core.profile import profile_spec

    prof = profile_spec(spec)
    ok = trial.status == "ok"
    reward = reward_fn(trial.result["accuracy"], prof.macs) if ok else None
    history.append(
        {
            "trial": len(history),
            "batch": batch,
            "strategy": strategy,
            "key": key,
            "encoding": encoding,
            "status": trial.status,
            "accuracy": trial.result.get("accuracy") if ok else None,
            "macs": prof.macs,
            "params": prof.params,
            "reward": reward,
            "seconds": 0.0 if key in seen else trial.seconds,
            "cached": key in seen,
            "error": trial.error.splitlines()[0] if trial.error else "",
        }
    )
    seen.add(key)
    return reward


def _warm_start(config: SearchConfig, space: SearchSpace, evaluator: EvaluatorConfig, strategy: Any, experiment: Any, log: Callable[[str], None]) -> None:
    """Score `config.warm_start` random architectures with NASWOT (seconds each) and hand the scores to the strategy.

    The scores are kept in their own trial store (``warm_start/``), so a search killed during the
    warm start redoes none of them.
    """
    from effnet.experiments.trials import TrialStore

    generator = torch.Generator().manual_seed(config.seed + 7919)  # its own stream: the strategy's RNG is untouched
    encodings = [[int(torch.randint(n, (1,), generator=generator)) for n in space.sizes] for _ in range(config.warm_start)]
    zero_cost = dataclasses.replace(evaluator, kind="naswot").to_dict()
    items = []
    for encoding in encodings:
        spec = space.decode(encoding)
        items.append((spec.to_string(), {"evaluator": zero_cost, "spec": spec.to_dict(), "encoding": encoding}))
    log(f"warm start: NASWOT scores of {len(items)} random architectures")
    directory = experiment.out_dir / "warm_start"
    trials = dataclasses.replace(experiment, out_dir=directory, store=TrialStore(directory, experiment.store.identity)).run(score_candidate, items)
    scores = [trials[key].result["accuracy"] if trials[key].ok else -math.inf for key, _ in items]
    keep = strategy.population_size if config.strategy == "evolution" else config.batch_size
    strategy.warm_start(encodings, scores, keep)


def run_search(
    config: SearchConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
    threads_per_worker: int | None = None,
    fn: Callable[[dict[str, Any]], dict[str, Any]] = score_candidate,
    log: Callable[[str], None] | None = None,
    report: bool = True,
    options: dict[str, Any] | None = None,
) -> SearchResult:
    """Run (or with `resume`, continue) the search `config` describes in `out_dir`.

    With `resume`, `config` may be None (the saved settings are used) or must match the saved
    identity (its `trials` may be larger, to extend a search). `fn` scores one candidate and returns
    ``{"accuracy": score, ...}`` (default: `score_candidate`; with workers > 1 it must be a module-level function).
    `log` receives one progress line per finished trial (default: print to stderr). `options` (the
    command line's, from `effnet.cli.resume`) are saved as `out_dir/options.json` next to search.json.
    """
    from effnet.experiments.trials import ray_session

    out = Path(out_dir)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    config_path, state_path = out / CONFIG_FILE, out / STATE_FILE
    config = _resumed_config(config, out) if resume else config
    if config is None:
        raise SearchError("run_search needs a SearchConfig unless it resumes")
    if workers < 1:
        raise SearchError(f"workers must be >= 1, got {workers}")

    reward_fn, evaluator, space = config.reward_fn(), config.evaluator_config(), config.search_space()
    num_classes = check_data(evaluator)  # a dataset that cannot be read fails here, before anything is written
    space = dataclasses.replace(space, resolution=space.resolution or evaluator.resolution, num_classes=space.num_classes or num_classes)
    identity = config.identity()
    experiment = _open_experiment(out, config, resume, options=options, workers=workers, ray_address=ray_address, threads_per_worker=threads_per_worker)

    strategy = make_strategy(config.strategy, space.sizes, config.seed, **config.strategy_options)
    history: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    pending: list[list[int]] | None = None
    if state_path.exists():
        history, batches, pending = _restore(state_path, identity, strategy, config_path)
        log(f"resumed {out}: {len(history)} of {config.trials} trials told, {len(experiment.store)} architectures evaluated")
    seen = {record["key"] for record in history}
    decoded: dict[str, Any] = {}
    progress = _Progress(config.trials, evaluator.kind, reward_fn, history, decoded)
    with ray_session(ray_address, workers):
        if config.warm_start and not state_path.exists():
            _warm_start(config, space, evaluator, strategy, experiment, log)
            _save_state(state_path, identity, strategy, history, batches, pending)
        while len(history) < config.trials:
            if pending is None:
                pending = [list(e) for e in strategy.ask(min(config.batch_size, config.trials - len(history)))]
                # the batch is saved before it is evaluated: a resume evaluates exactly these
                _save_state(state_path, identity, strategy, history, batches, pending)
            items = _decode(pending, space, evaluator, decoded)
            progress.in_batch = 0
            trials = experiment.run(fn, items, on_trial=lambda trial: log(progress.line(trial)))
            rewards = [
                _record(history, len(batches), config.strategy, encoding, key, trials[key], decoded[key], reward_fn, seen)
                for encoding, (key, _) in zip(pending, items, strict=True)
            ]
            strategy.tell([tuple(e) for e in pending], rewards)
            told = [r for r in history[-len(pending) :] if r["reward"] is not None]
            batches.append({"batch": len(batches), "trials": len(history), "best": max((r["reward"] for r in told), default=None), **strategy.stats()})
            pending = None
            _save_state(state_path, identity, strategy, history, batches, pending)

    ok = [r for r in history if r["reward"] is not None]
    best_record = max(ok, key=lambda r: r["reward"], default=None)
    elapsed = time.perf_counter() - progress.start
    result = SearchResult(out, history, best_record, batches, progress.evaluated, elapsed, evaluator.kind, _ranking_warning(ok, evaluator, space.num_classes))
    if report:
        from effnet.experiments.search.report import write_report

        write_report(out, config, space, result)
    return result
