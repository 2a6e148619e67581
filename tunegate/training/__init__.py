"""The training engine: LoRA fine-tuning (supervised or DPO) run in the worker's child process.

This package's ``__init__``, :mod:`.spec`, :mod:`.errors` and :mod:`.hyperparams` never import
torch (the API process uses them); nor do :mod:`.data`, :mod:`.preference`, :mod:`.length_check`
and (until a model loads) :mod:`.model_cache`, which the worker uses to check example lengths
at ``validating_files``. Everything else is for the trainer child. Entry point:
``tunegate.training.run.run_training``.
"""

from tunegate.training.errors import TrainingFailed
from tunegate.training.spec import BaseModelRef, TrainingResult, TrainingSpec

__all__ = ["BaseModelRef", "TrainingFailed", "TrainingResult", "TrainingSpec"]
