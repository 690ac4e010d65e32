"""Self-training with Noisy Student (Xie et al., CVPR 2020): a teacher labels unlabelled images, a noised student learns.

- `labels`: the un-noised teacher pseudo-labels an image folder, batched, resumable by chunks, sharded under torchrun.
- `balance`: the confidence threshold and class balancing (duplicate rare classes, keep the most confident of common ones).
- `recipe`: the teacher's and the student's TrainConfigs: the fine-tune recipe, the student's noise and batch ratio.
- `runner`: the iterations, resumable at every step (its `trials.json`, the store of every experiment); the student becomes the next teacher.
- `report`: per iteration, teacher and student accuracy, pseudo-label accuracy and images per class (Markdown, JSON, PNG).
- `commands`: `effnet noisy-student`.

The training itself is the trainer's (`effnet.train`), fed with `TrainConfig.pseudo_labels`.
"""

from effnet.experiments.selftrain.balance import Selection, balanced_counts, select
from effnet.experiments.selftrain.labels import LabelRecord, LabelSummary, label_images, read_labels
from effnet.experiments.selftrain.recipe import PAPER_NOISE, Budget, Noise, student_config, teacher_config
from effnet.experiments.selftrain.runner import NoisyStudentConfig, NoisyStudentError, NoisyStudentResult, run_noisy_student

__all__ = [
    "PAPER_NOISE",
    "Budget",
    "LabelRecord",
    "LabelSummary",
    "Noise",
    "NoisyStudentConfig",
    "NoisyStudentError",
    "NoisyStudentResult",
    "Selection",
    "balanced_counts",
    "label_images",
    "read_labels",
    "run_noisy_student",
    "select",
    "student_config",
    "teacher_config",
]
