"""Graders: score a model's sample against a data item, the way OpenAI's graders do.

One engine for three callers: ``POST /v1/fine_tuning/alpha/graders/run`` (the API), eval runs (the
worker) and reinforcement fine-tuning's reward (the trainer's side). It is torch-free and knows no
server: a grader that needs a model (``score_model``, ``label_model``, ``cosine``) asks the
``GraderModels`` it is given, which the API and the worker build over the serving pool.

The interface other rooms use, and only this:

- ``parse_grader(spec, where="grader", allowed=...)`` -> ``Grader``, raising ``InvalidGrader`` whose
  ``param`` is the dotted path of the offending field (for a 400 that names it);
- ``grade(grader, sample, item, models)`` -> ``Grade``: never raises for a grader's own failure
  (a Python exception, an unparseable formula, a refused model answer); the failure is a flag in
  ``Grade.errors`` and the score is 0, as OpenAI reports it inside a 200;
- ``passed(grader, grade)``: the pass rule of an eval's testing criterion;
- ``grader_models(grader)``: the grader models it calls (to check they exist at create time);
- ``SandboxLimits``: the Python grader's limits, passed to ``grade(..., limits=)``.

One module per concept: ``kinds`` (the checked grader), ``parse`` (every field checked),
``templates``, ``engine`` (dispatch), ``scorers`` (string_check, text_similarity),
``similarity`` and ``wordnet`` (the metrics), ``python_grader`` with ``sandbox`` and
``sandbox_child``, ``model_graders`` (score_model, label_model), ``multi`` with ``formula``, and
``endpoint``: ``GraderModels`` over an OpenAI-compatible HTTP endpoint (``TUNEGATE_EVAL_ENDPOINT``),
for the worker's eval runs and for the API when that endpoint is an external one.
"""

from tunegate.graders.engine import grade, passed
from tunegate.graders.errors import InvalidGrader
from tunegate.graders.grades import ERROR_FLAGS, Grade, no_errors
from tunegate.graders.models import GraderModels, ModelAnswer
from tunegate.graders.parse import GRADER_TYPES, Grader, grader_models, parse_grader
from tunegate.graders.samples import Sample
from tunegate.graders.sandbox import SandboxLimits

__all__ = ["ERROR_FLAGS", "GRADER_TYPES", "Grade", "Grader", "GraderModels", "InvalidGrader",
           "ModelAnswer", "Sample", "SandboxLimits", "grade", "grader_models", "no_errors",
           "parse_grader", "passed"]
