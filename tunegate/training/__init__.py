"""The training engine: LoRA fine-tuning (supervised or DPO) run in the worker's child process.

This package's ``__init__``, :mod:`.spec`, :mod:`.errors`, :mod:`.hyperparams` and
:mod:`.chat_format` never import torch (the API process uses them); everything else is for the
trainer child. Entry point: ``tunegate.training.run.run_training``.
"""

from tunegate.training.errors import TrainingFailed
from tunegate.training.spec import BaseModelRef, TrainingResult, TrainingSpec

__all__ = ["BaseModelRef", "TrainingFailed", "TrainingResult", "TrainingSpec"]
