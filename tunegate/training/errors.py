"""How a training run fails: one exception with an OpenAI-style error code (torch-free).

The worker turns :class:`TrainingFailed` into the job's ``error`` object, so ``code`` and
``message`` are user-facing: the message says what to change, never shows a traceback.
"""

from __future__ import annotations

# Error codes the trainer raises. The worker may add its own (e.g. "training_crashed").
OUT_OF_MEMORY = "out_of_memory"
MISSING_CHAT_TEMPLATE = "missing_chat_template"
INVALID_TRAINING_FILE = "invalid_training_file"
INVALID_VALIDATION_FILE = "invalid_validation_file"
UNSUPPORTED_BASE_MODEL = "unsupported_base_model"
INVALID_RESUME_STATE = "invalid_resume_state"
INVALID_SETTING = "invalid_setting"  # a TUNEGATE_* variable of the trainer's environment
INSUFFICIENT_STORAGE = "insufficient_storage"  # the disk filled up (the API's 507 has this code)


class TrainingFailed(Exception):
    """A run that cannot succeed as asked; ``param`` names the request field at fault, if any."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.param = param
