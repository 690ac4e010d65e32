"""What the command modules of `effnet` share: the error type, the help layout, tables, argument types, model loading."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PAPER_TABLE2 = tuple(f"efficientnet_b{i}" for i in range(8))
LITE = tuple(f"efficientnet_lite{i}" for i in range(5))
MACS_HEADER = "MACs (multiply-adds)"
MACS_NOTE = "MACs count multiply-adds of convolutions and the classifier; the paper calls them FLOPS."


class CLIError(Exception):
    """A usage problem found after argument parsing; printed as `effnet: error: ...`, exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps description/epilog layout and appends the default to an option's help, once and readably.

    Nothing is appended when the help already names its default (``%(default)s`` or "(default: ..."),
    for flags (--x/--no-x: their default is whether they are on), or for empty defaults. A
    --x/--no-x option (BooleanOptionalAction) shows its default as the flag that is in effect:
    "(default: --progress)" rather than "(default: True)", also when its help wrote True/False.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction):
            on, off = (f"(default: {flag})" for flag in action.option_strings[:2])
            return text.replace("(default: True)", on).replace("(default: False)", off).replace("(default: %(default)s)", "")
        default = action.default
        if "%(default)" in text or "(default:" in text or not action.option_strings:
            return text
        if default is None or default is False or default == "" or default == argparse.SUPPRESS or action.nargs == 0:
            return text
        if isinstance(default, (list, tuple)):
            return text + " (default: " + " ".join(str(v) for v in default).replace("%", "%%") + ")"
        return text + " (default: %(default)s)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """Plain-text table with a dashed rule under the header; `align` holds 'l'/'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def count(n: int | float) -> str:
    """Human-readable count: 928, 12.5K, 5.29M, 0.39B."""
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(int(n))


def print_predictions(results: Sequence[Any], short_names: bool = False) -> None:
    """Top-k lines per classified image on stdout; skipped inputs on stderr."""
    first = True
    for result in results:
        name = result.path.name if short_names and result.path is not None else result.name
        if result.error is not None:
            print(f"effnet: skipped {name}: {result.error}", file=sys.stderr)
            continue
        if not first:
            print()
        first = False
        print(name)
        for label, index, prob in result.top:
            print(f"  {prob * 100:5.1f}%  {label} ({index})")


def load_model(name: str, weights: str | None, tf_compat: bool = False, num_classes: int | None = None) -> Any:
    """A named model with weights: 'pretrained' (the variant's default), 'none' (random init) or a file path.

    A file is loaded whole, into a model of `num_classes` outputs (default 1000): a tensor that does not fit is an
    error naming the shapes, never dropped; for a file of a training run the error (or a note) points at --run.
    """
    from effnet.models.factory import create_model
    from effnet.train.rundir import load_weights, run_hint

    if weights is None or weights == "none":
        return create_model(name, tf_compat=tf_compat, num_classes=num_classes)
    if weights == "pretrained":
        if num_classes not in (None, 1000):
            raise CLIError(
                f"--num-classes {num_classes} needs --weights FILE: the pretrained weights classify the 1000 ImageNet classes "
                "(a fine-tuned model: --run RUN_DIR; a new classifier is trained with `effnet finetune`)"
            )
        return create_model(name, pretrained=True, tf_compat=tf_compat)
    path = Path(weights)
    if not path.is_file():
        raise CLIError(f"weights file {weights!r} does not exist (use --weights pretrained for the shipped/downloaded weights)")
    model = load_weights(create_model(name, tf_compat=tf_compat, num_classes=num_classes), path)
    if run_hint(path):
        print(f"effnet: note: {run_hint(path)}", file=sys.stderr)
    return model


def positive_int(text: str, minimum: int = 1) -> int:
    kind = "a positive" if minimum == 1 else "a non-negative"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {kind} integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    return positive_int(text, minimum=0)


RUN_WEIGHTS = ("model", "ema", "fixres")  # the weights files a run may have (train/rundir.py)


def add_run_options(parser: argparse.ArgumentParser, run_help: str, verb: str) -> None:
    """`--run RUN_DIR` and `--run-weights`: a command that takes the model of a training run."""
    parser.add_argument("--run", metavar="RUN_DIR", help=run_help)
    parser.add_argument("--run-weights", choices=RUN_WEIGHTS, default="model", help=f"which of the run's weights to {verb}")


def add_tf_compat_option(parser: argparse.ArgumentParser, note: str = "for a weights file trained in TensorFlow") -> None:
    parser.add_argument("--tf-compat", action="store_true", help=f"TF 'same' padding and BN eps 1e-3, {note}")
