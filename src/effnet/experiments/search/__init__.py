"""Architecture search (MnasNet method with MACs in the reward, as for EfficientNet-B0).

- `space`: the factorized hierarchical search space as data; encodings decode to `NetSpec`s.
- `reward`: accuracy x (MACs / T)^w, soft and hard constraints.
- `strategies`: LSTM controller with PPO or REINFORCE, random search, regularized evolution (ask/tell).
- `evaluators`: the candidate's score: proxy training (`effnet.experiments.proxy`), the NASWOT zero-cost score, a toy objective for tests.
- `runner`: the resumable search loop over `effnet.experiments.trials.run_trials` (local processes or Ray).
- `report`: best spec, top-k table, plots, Markdown summary.
"""

from effnet.experiments.search.evaluators import EvaluatorConfig, naswot_score, score_candidate
from effnet.experiments.search.reward import Reward
from effnet.experiments.search.runner import SearchConfig, SearchError, SearchResult, run_search
from effnet.experiments.search.space import DIMENSIONS, SearchSpace, SearchSpaceError, StageChoices, b0_encoding, default_space
from effnet.experiments.search.strategies import STRATEGIES, Controller, PolicyGradient, RandomSearch, RegularizedEvolution, Strategy, make_strategy

__all__ = [
    "DIMENSIONS",
    "STRATEGIES",
    "Controller",
    "EvaluatorConfig",
    "PolicyGradient",
    "RandomSearch",
    "RegularizedEvolution",
    "Reward",
    "SearchConfig",
    "SearchError",
    "SearchResult",
    "SearchSpace",
    "SearchSpaceError",
    "StageChoices",
    "Strategy",
    "b0_encoding",
    "default_space",
    "make_strategy",
    "naswot_score",
    "run_search",
    "score_candidate",
]
