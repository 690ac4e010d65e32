"""Moved: the proxy evaluator of the grid search and the scaling study is now `effnet.proxy`, shared with the search.

`evaluate_candidate` stays importable from here (and trial stores saved under this module's name resume:
`effnet.trials.MOVED_EVALUATORS`).
"""

from effnet.proxy import evaluate_candidate

__all__ = ["evaluate_candidate"]
