"""Replay the first steps of one `effnet finetune` run and print, per optimizer step, what shows a collapse coming.

    python benchmarks/battery/step_probe.py --data-dir DATA/intel_scenes --seed 1 --steps 40 [--option clip_grad_norm=5]

Per step: each parameter group's learning rate and gradient norm (before any clipping), the share of zeros and of
saturated values (>= 6) among the head's ReLU6 outputs, the spread of the pooled features across the batch, and the
logits' spread and number of predicted classes. At steps `--top-at`, the six parameters with the largest gradients.
The run is effnet finetune's defaults (the recipe, the BatchNorm rule) at the default length unless --epochs/--option
say otherwise; it stops after --steps steps. One torch thread, no loader workers, as the battery runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "src")]


class Stop(BaseException):
    """Ends the replay after --steps steps (a BaseException: the trainer's own error handling lets it through)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--top-at", type=int, nargs="*", default=[9, 10, 11, 12])
    parser.add_argument("--option", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig values on top of the defaults")
    parser.add_argument("--out", type=Path, default=Path("/tmp/effnet-step-probe"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from effnet.train import trainer as trainer_module
    from effnet.train.finetune import prepare_finetune
    from effnet.train.trainer import train

    options = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.option)}
    given = {
        "dataset": "folder",
        "data_dir": str(args.data_dir),
        "epochs": args.epochs,
        "seed": args.seed,
        "out_dir": str(args.out),
        "progress": False,
        "workers": 0,
    }
    run, _ = prepare_finetune({**given, **options})
    seen: dict = {}
    models: list = []
    steps: list = []

    def on_head(module, inputs, output):
        o = output.detach().float()
        seen.update(head_zero=round(float((o <= 0).float().mean()), 3), head_saturated=round(float((o >= 5.999).float().mean()), 3))
        seen["pooled_spread"] = round(float(o.mean((2, 3)).std(0).mean()), 4)

    def on_classifier(module, inputs, output):
        seen.update(logit_spread=round(float(output.detach().float().std()), 3), predicted_classes=int(output.argmax(1).unique().numel()))

    real_init, real_step = trainer_module.Trainer.__init__, torch.optim.SGD.step

    def init(self, *a, **k):
        real_init(self, *a, **k)
        model = getattr(self.model, "module", self.model)
        models.append(model)
        model.head.register_forward_hook(on_head)
        model.classifier.register_forward_hook(on_classifier)

    def step(self, *a, **k):
        number = len(steps) + 1
        groups = [
            (round(g["lr"], 5), round(float(torch.nn.utils.get_total_norm([p.grad for p in g["params"] if p.grad is not None])), 3)) for g in self.param_groups
        ]
        if number in args.top_at:
            names = {id(p): n for n, p in models[0].named_parameters()}
            top = sorted(((float(p.grad.norm()), names.get(id(p))) for g in self.param_groups for p in g["params"] if p.grad is not None), reverse=True)
            print(json.dumps({"step": number, "largest_gradients": [(round(v, 2), n) for v, n in top[:6]]}), flush=True)
        steps.append({"step": number, "lr_and_grad_norm_per_group": groups, **seen})
        print(json.dumps(steps[-1]), flush=True)
        if number >= args.steps:
            raise Stop
        return real_step(self, *a, **k)

    trainer_module.Trainer.__init__ = init
    torch.optim.SGD.step = step
    with contextlib.suppress(Stop):
        train(run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
