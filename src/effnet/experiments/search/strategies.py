"""Search strategies behind one ask/tell interface: RL controller (PPO or REINFORCE), random, regularized evolution.

A strategy sees the space only as the number of choices of each decision (`SearchSpace.sizes`)
and proposes encodings (tuples of choice indices):

    strategy = make_strategy("ppo", space.sizes, seed=0)
    for _ in range(rounds):
        batch = strategy.ask(8)
        strategy.tell(batch, [reward(e) for e in batch])    # None = failed candidate

Every strategy draws from its own seeded `torch.Generator` (never the global RNG), and
`state_dict` / `load_state_dict` capture everything (controller weights, optimizer, RNG,
population), so a search resumed from a saved state asks exactly what it would have asked.

- "ppo" (MnasNet's choice): an LSTM controller emits one decision per step, each conditioned on
  the previous ones through the LSTM state; after each batch it takes a few PPO steps (clipped
  probability ratio) on the advantage reward - moving-average baseline.
- "reinforce": the same controller, one policy-gradient step per batch with the same baseline.
- "random": uniform choices.
- "evolution": regularized (aging) evolution, Real et al. 2019: a population of the most
  recent P models; a child is a one-decision mutation of the best of S random members.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

STRATEGIES = ("ppo", "reinforce", "random", "evolution")
FAILED_REWARD = 0.0  # what a failed candidate (out of memory, NaN) counts as: the worst reward


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The controller is tiny: with several threads on a busy machine each LSTM step waits on thread hand-offs (100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in sizes)
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"every decision needs at least one choice, got sizes {sizes}")
    return sizes


class Strategy:
    """Base class: proposes encodings (`ask`) and learns from their rewards (`tell`)."""

    name = "base"

    def __init__(self, sizes: Sequence[int], seed: int = 0) -> None:
        self.sizes = _check_sizes(sizes)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.told = 0
        self.queue: list[tuple[int, ...]] = []  # warm-start proposals, asked before anything else

    def warm_start(self, encodings: Sequence[Sequence[int]], scores: Sequence[float], keep: int) -> None:
        """Use cheap (zero-cost) scores of some encodings before the search: here, the `keep` best are proposed first.

        Random search then starts from a zero-cost pre-filtered sample and evolution from a
        pre-filtered initial population; the RL controller is instead pretrained (see PolicyGradient).
        """
        order = sorted(range(len(encodings)), key=lambda i: -scores[i])
        self.queue = [tuple(int(v) for v in encodings[i]) for i in order[:keep] if math.isfinite(scores[i])]

    def _take_queue(self, n: int) -> list[tuple[int, ...]]:
        taken, self.queue = self.queue[:n], self.queue[n:]
        return taken

    def ask(self, n: int) -> list[tuple[int, ...]]:
        """Propose `n` encodings."""
        raise NotImplementedError

    def tell(self, encodings: Sequence[Sequence[int]], rewards: Sequence[float | None]) -> None:
        """Learn from the rewards of encodings it proposed (None: the candidate failed)."""
        if len(encodings) != len(rewards):
            raise ValueError(f"tell() got {len(encodings)} encodings but {len(rewards)} rewards")
        self.told += len(encodings)

    def stats(self) -> dict[str, float]:
        """Numbers worth logging (e.g. the controller's entropy)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors, numbers, strings and lists only (loads with weights_only=True)."""
        return {
            "name": self.name,
            "sizes": list(self.sizes),
            "seed": self.seed,
            "generator": self.generator.get_state(),
            "told": self.told,
            "queue": [list(e) for e in self.queue],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name or tuple(state.get("sizes", ())) != self.sizes:
            raise ValueError(
                f"saved strategy state is for {state.get('name')!r} over {len(state.get('sizes', ()))} decisions; "
                f"this is {self.name!r} over {len(self.sizes)} decisions"
            )
        self.generator.set_state(state["generator"])
        self.told = int(state["told"])
        self.queue = [tuple(int(v) for v in e) for e in state.get("queue", [])]

    def _uniform(self, n: int) -> list[tuple[int, ...]]:
        columns = [torch.randint(k, (n,), generator=self.generator).tolist() for k in self.sizes]
        return [tuple(int(c[i]) for c in columns) for i in range(n)]


def _rewards(rewards: Sequence[float | None]) -> list[float]:
    return [FAILED_REWARD if r is None or not math.isfinite(r) else float(r) for r in rewards]


# ---------------------------------------------------------------------- random
class RandomSearch(Strategy):
    """Uniform sampling of every decision (the baseline every search must beat)."""

    name = "random"

    def ask(self, n: int) -> list[tuple[int, ...]]:
        out = self._take_queue(n)
        return out + self._uniform(n - len(out))


# ---------------------------------------------------------------------- evolution
class RegularizedEvolution(Strategy):
    """Aging evolution: the population is the `population` most recent models; parents by tournament of `sample`."""

    name = "evolution"

    def __init__(self, sizes: Sequence[int], seed: int = 0, population: int = 20, sample: int = 5) -> None:
        super().__init__(sizes, seed)
        if population < 2 or not 1 <= sample <= population:
            raise ValueError(f"evolution needs population >= 2 and 1 <= sample <= population, got population={population}, sample={sample}")
        self.population_size, self.sample = int(population), int(sample)
        self.population: list[tuple[tuple[int, ...], float]] = []  # oldest first
        self.asked = 0

    def ask(self, n: int) -> list[tuple[int, ...]]:
        # the first `population` models are random; after that every child comes from a tournament
        fresh = max(0, min(n, self.population_size - self.asked))
        out = self._take_queue(fresh)
        out += self._uniform(fresh - len(out))
        while len(out) < n:
            out.append(self._mutate(self._tournament()) if self.population else self._uniform(1)[0])
        self.asked += n
        return out

    def _tournament(self) -> tuple[int, ...]:
        picks = torch.randint(len(self.population), (min(self.sample, len(self.population)),), generator=self.generator).tolist()
        return max((self.population[i] for i in picks), key=lambda item: item[1])[0]

    def _mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
        mutable = [i for i, k in enumerate(self.sizes) if k > 1]
        if not mutable:
            return parent
        child = list(parent)
        where = mutable[int(torch.randint(len(mutable), (1,), generator=self.generator))]
        # a different value, uniformly among the other choices
        shift = 1 + int(torch.randint(self.sizes[where] - 1, (1,), generator=self.generator))
        child[where] = (child[where] + shift) % self.sizes[where]
        return tuple(child)

    def tell(self, encodings: Sequence[Sequence[int]], rewards: Sequence[float | None]) -> None:
        super().tell(encodings, rewards)
        for encoding, reward in zip(encodings, _rewards(rewards), strict=True):
            self.population.append((tuple(int(v) for v in encoding), reward))
        del self.population[: max(0, len(self.population) - self.population_size)]  # aging: the oldest die

    def stats(self) -> dict[str, float]:
        return {"population_best": max((r for _, r in self.population), default=float("nan"))}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "population_size": self.population_size,
            "sample": self.sample,
            "population": [[list(e), r] for e, r in self.population],
            "asked": self.asked,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(tuple(int(v) for v in e), float(r)) for e, r in state["population"]]
        self.asked = int(state["asked"])


# ---------------------------------------------------------------------- RL controller
class Controller(nn.Module):
    """An LSTM that emits the decisions one after another (MnasNet / NASNet controller).

    Step t reads the embedding of decision t-1's choice (a learned start vector for t = 0) and
    outputs logits over decision t's choices. The output layers start at zero, so the first
    policy is exactly uniform.
    """

    def __init__(self, sizes: Sequence[int], hidden: int = 64) -> None:
        super().__init__()
        self.sizes = _check_sizes(sizes)
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.cell = nn.LSTMCell(hidden, hidden)
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(
        self, actions: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample `n` encodings (actions None) or score given ones: (actions [n, T], log-prob [n], entropy [n])."""
        batch = actions.shape[0] if actions is not None else n
        x = self.start.expand(batch, -1)
        state = None
        chosen, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for t in range(len(self.sizes)):
            h, c = self.cell(x, state)
            state = (h, c)
            logp = torch.log_softmax(self.heads[t](h), dim=-1)
            a = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(1) if actions is None else actions[:, t]
            chosen.append(a)
            log_prob = log_prob + logp.gather(1, a[:, None]).squeeze(1)
            entropy = entropy - (logp.exp() * logp).sum(-1)
            x = self.embed[t](a)
        return torch.stack(chosen, 1), log_prob, entropy


class PolicyGradient(Strategy):
    """The LSTM controller trained by PPO (default, as in MnasNet) or REINFORCE, with a moving-average baseline.

    Advantage = reward - baseline, the baseline an exponential moving average of past rewards
    (`baseline_decay` per reward; it starts at the first batch's mean). PPO takes `ppo_epochs`
    Adam steps per batch on the clipped objective (clip `clip`); REINFORCE takes one step on
    -advantage x log-prob. `entropy_coef` > 0 adds an entropy bonus (0 by default so the
    entropy's fall shows what the controller learned).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        seed: int = 0,
        algorithm: str = "ppo",
        lr: float = 0.01,
        hidden: int = 64,
        baseline_decay: float = 0.9,
        clip: float = 0.2,
        ppo_epochs: int = 4,
        entropy_coef: float = 0.0,
    ) -> None:
        super().__init__(sizes, seed)
        if algorithm not in ("ppo", "reinforce"):
            raise ValueError(f"unknown policy-gradient algorithm {algorithm!r}; expected 'ppo' or 'reinforce'")
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.name = algorithm
        self.lr, self.baseline_decay, self.clip, self.ppo_epochs, self.entropy_coef = lr, baseline_decay, clip, ppo_epochs, entropy_coef
        # the controller's initial weights come from the strategy's seed, not from the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.controller = Controller(self.sizes, hidden)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.baseline: float | None = None
        self.last_entropy = float("nan")
        self.updates = 0

    def warm_start(self, encodings: Sequence[Sequence[int]], scores: Sequence[float], keep: int) -> None:
        """Pretrain the controller on zero-cost scores: their ranks, scaled to [0, 1], are told as rewards in batches of `keep`.

        Ranks, not raw scores, because a zero-cost score has no common scale with accuracy; the
        baseline is reset afterwards so the real rewards start their own average.
        """
        finite = [(tuple(e), s) for e, s in zip(encodings, scores, strict=True) if math.isfinite(s)]
        order = sorted(range(len(finite)), key=lambda i: finite[i][1])
        rank = {i: r / max(1, len(finite) - 1) for r, i in enumerate(order)}
        for start in range(0, len(finite), max(1, keep)):
            chunk = range(start, min(len(finite), start + max(1, keep)))
            with _one_thread():
                self._update([finite[i][0] for i in chunk], [rank[i] for i in chunk])
        self.baseline = None

    def ask(self, n: int) -> list[tuple[int, ...]]:
        with torch.no_grad(), _one_thread():
            actions, _, entropy = self.controller(n=n, generator=self.generator)
        self.last_entropy = float(entropy.mean())
        return [tuple(int(v) for v in row) for row in actions.tolist()]

    def entropy(self, samples: int = 256) -> float:
        """Monte-Carlo estimate of the policy's entropy (nats, summed over decisions), from a private generator."""
        with torch.no_grad(), _one_thread():
            _, _, entropy = self.controller(n=samples, generator=torch.Generator().manual_seed(12345))
        return float(entropy.mean())

    def tell(self, encodings: Sequence[Sequence[int]], rewards: Sequence[float | None]) -> None:
        super().tell(encodings, rewards)
        with _one_thread():
            self._update(encodings, _rewards(rewards))

    def _update(self, encodings: Sequence[Sequence[int]], values: list[float]) -> None:
        if not values:
            return
        if self.baseline is None:
            self.baseline = sum(values) / len(values)
        advantage = torch.tensor([r - self.baseline for r in values])
        for r in values:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r
        actions = torch.tensor([list(e) for e in encodings], dtype=torch.long)
        # the batch was sampled by the current weights: they define the "old" policy of PPO
        with torch.no_grad():
            _, old_log_prob, _ = self.controller(actions)
        steps = self.ppo_epochs if self.name == "ppo" else 1
        for _ in range(steps):
            _, log_prob, entropy = self.controller(actions)
            if self.name == "ppo":
                ratio = torch.exp(log_prob - old_log_prob)
                objective = torch.minimum(ratio * advantage, ratio.clamp(1 - self.clip, 1 + self.clip) * advantage)
            else:
                objective = log_prob * advantage
            loss = -objective.mean() - self.entropy_coef * entropy.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.updates += 1

    def stats(self) -> dict[str, float]:
        return {"entropy": self.last_entropy, "baseline": float("nan") if self.baseline is None else self.baseline}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "last_entropy": self.last_entropy,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.last_entropy = float(state["last_entropy"])
        self.updates = int(state["updates"])


def make_strategy(name: str, sizes: Sequence[int], seed: int = 0, **options: Any) -> Strategy:
    """A strategy by name ('ppo', 'reinforce', 'random', 'evolution'); `options` go to its constructor."""
    if name in ("ppo", "reinforce"):
        return PolicyGradient(sizes, seed, algorithm=name, **options)
    if name == "random":
        if options:
            raise ValueError(f"random search takes no options, got {sorted(options)}")
        return RandomSearch(sizes, seed)
    if name == "evolution":
        return RegularizedEvolution(sizes, seed, **options)
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
