"""Diff tunegate's component schemas against OpenAI's (tests/data/openai-openapi__*.yaml).

OpenAI's document is OpenAPI 3.1 (`type: [X, 'null']`, `anyOf: [..., {type: 'null'}]`), ours
is 3.0.3 (`nullable: true`), so both are first brought to one neutral `Shape`: nullability,
type, enum, format, properties, required, items, alternatives. `differences()` compares every
pair of `PAIRS` recursively and returns what differs. The differences tunegate makes on
purpose are `INTENDED`, each with its reason; `tests/test_conformance.py` fails on a difference
not listed there and on a listed one that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OURS_PATH = ROOT / "openapi.yaml"
# OpenAI's schemas at openai/openai-openapi f85dbe22 (tests/data/SOURCES.md).
# The evals and graders subset first: the other two win where both define a schema (Error).
THEIRS_PATHS = (ROOT / "tests/data/openai-openapi__evals-graders-subset.yaml",
                ROOT / "tests/data/openai-openapi__finetuning-subset.yaml",
                ROOT / "tests/data/openai-openapi__uploads-subset.yaml",
                ROOT / "tests/data/openai-openapi__embeddings-subset.yaml")

# Our schema name -> OpenAI's, for every object both specs define.
PAIRS: dict[str, str] = {
    "FineTuningJob": "FineTuningJob",
    "FineTuneMethod": "FineTuneMethod",
    "SupervisedHyperparameters": "FineTuneSupervisedHyperparameters",
    "DpoHyperparameters": "FineTuneDPOHyperparameters",
    "ReinforcementHyperparameters": "FineTuneReinforcementHyperparameters",
    "FineTuningIntegration": "FineTuningIntegration",
    "Metadata": "Metadata",
    "FineTuningJobEvent": "FineTuningJobEvent",
    "FineTuningJobCheckpoint": "FineTuningJobCheckpoint",
    "FineTuningCheckpointPermission": "FineTuningCheckpointPermission",
    "CreateFineTuningCheckpointPermissionRequest": "CreateFineTuningCheckpointPermissionRequest",
    "DeleteFineTuningCheckpointPermissionResponse": "DeleteFineTuningCheckpointPermissionResponse",
    "CreateFineTuningJobRequest": "CreateFineTuningJobRequest",
    "FineTuningJobList": "ListPaginatedFineTuningJobsResponse",
    "FineTuningJobEventList": "ListFineTuningJobEventsResponse",
    "FineTuningJobCheckpointList": "ListFineTuningJobCheckpointsResponse",
    "FineTuningCheckpointPermissionList": "ListFineTuningCheckpointPermissionResponse",
    "OpenAIFile": "OpenAIFile",
    "CreateFileRequest": "CreateFileRequest",
    "FileExpirationAfter": "FileExpirationAfter",
    "FileList": "ListFilesResponse",
    "DeleteFileResponse": "DeleteFileResponse",
    "Model": "Model",
    "ModelList": "ListModelsResponse",
    "DeleteModelResponse": "DeleteModelResponse",
    "Upload": "Upload",
    "UploadPart": "UploadPart",
    "CreateUploadRequest": "CreateUploadRequest",
    "AddUploadPartRequest": "AddUploadPartRequest",
    "CompleteUploadRequest": "CompleteUploadRequest",
    "ErrorResponse": "ErrorResponse",
    "Error": "Error",
    "CreateEmbeddingRequest": "CreateEmbeddingRequest",
    "CreateEmbeddingResponse": "CreateEmbeddingResponse",
    "Embedding": "Embedding",
    # graders (issue 28)
    "RunGraderRequest": "RunGraderRequest",
    "RunGraderResponse": "RunGraderResponse",
    "ValidateGraderRequest": "ValidateGraderRequest",
    "ValidateGraderResponse": "ValidateGraderResponse",
    "GraderStringCheck": "GraderStringCheck",
    "GraderTextSimilarity": "GraderTextSimilarity",
    "GraderPython": "GraderPython",
    "GraderScoreModel": "GraderScoreModel",
    "GraderLabelModel": "GraderLabelModel",
    "GraderMulti": "GraderMulti",
}


@dataclass(frozen=True)
class Difference:
    """One way a schema of ours differs from OpenAI's.

    `path` is our schema name, then property names (`[]` for an array's items, `|n` for the
    n-th alternative, `{}` for additionalProperties). `aspect` says what differs; `ours` and
    `theirs` are the two sides (sorted name tuples for the set-valued aspects)."""

    path: str
    aspect: str
    ours: Any
    theirs: Any


@dataclass(frozen=True)
class Intended:
    """A difference tunegate makes on purpose."""

    difference: Difference
    reason: str


def _d(path: str, aspect: str, ours: Any, theirs: Any, reason: str) -> Intended:
    return Intended(Difference(path, aspect, ours, theirs), reason)


_REWARD_METRICS = tuple(sorted(
    prefix + name for prefix in ("train_", "valid_", "full_valid_")
    for name in ("reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")))
_RL_METRICS = tuple(sorted(
    prefix + name for prefix in ("train_", "valid_")
    for name in ("reward_mean", "reward_std", "zero_std_groups", "completion_length",
                 "grader_errors")))
_OPENAI_METRICS = ("full_valid_loss", "full_valid_mean_token_accuracy", "step", "train_loss",
                   "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy")
_CURSORS = ("first_id", "last_id")
_ALWAYS_SENT = ("Every key of a response object is sent, null where there is no value "
                "(tests/test_spec_examples.py holds our spec to it), so keys OpenAI leaves "
                "optional are required here: an answer valid for us is valid for OpenAI.")
_EXTRA_CURSORS = ("tunegate sends first_id/last_id on every cursor page (the facts file's "
                  "advice; the permissions pager reads last_id); OpenAI's SDKs keep unknown "
                  "keys as extras.")
_OPEN_IN_OPENAI = ("OpenAI's schema leaves the value an open string; tunegate names the "
                   "values it sends, all of which OpenAI's examples and SDK use.")
_RFT_GRADER = ("A reinforcement job's grader is the open Grader object, checked by "
               "tunegate.graders.parse when the job is created, so that a 400 names the bad "
               "field's path (method.reinforcement.grader.input); a oneOf of the five types "
               "would make the validator answer only 'not valid under any of the given "
               "schemas'. Every grader carries type and name.")

_BASE64_VECTOR = ("With encoding_format base64 OpenAI sends the vector as a base64 string "
                  "(the SDKs ask for it by default and decode it), which its schema's array "
                  "does not describe; ours declares both forms: an array or a string.")
_GRADER_CHECKED = ("tunegate.graders.parse checks a grader's fields itself, so that a 400 names "
                   "the exact path of the bad field (grader.input[1].content[0].text); a oneOf "
                   "in the contract would make the validator answer only 'not valid under any "
                   "of the given schemas'.")

# Every difference between our schemas and OpenAI's that tunegate makes on purpose. The test
# fails on any other difference and on an entry here that no longer matches one.
INTENDED: tuple[Intended, ...] = (
    # ---- the job
    _d("FineTuningJob", "properties only in ours", ("user_provided_suffix",), (),
       "OpenAI's examples and real answers carry user_provided_suffix; its schema omits it."),
    _d("FineTuningJob", "required only in ours",
       ("estimated_finish", "integrations", "metadata", "method", "user_provided_suffix"), (),
       _ALWAYS_SENT),
    _d("FineTuningJob.hyperparameters", "required only in ours",
       ("batch_size", "learning_rate_multiplier", "n_epochs"), (), _ALWAYS_SENT),
    _d("FineTuningJob.status", "enum only in ours", ("paused",), (),
       "OpenAI's pause endpoint answers status paused although its enum lacks the value; "
       "tunegate keeps OpenAI's behaviour and declares it (strict clients refuse it: see "
       "docs/differences.md)."),
    _d("FineTuneMethod.reinforcement.grader", "alternatives", 0, 5, _RFT_GRADER),
    _d("FineTuneMethod.reinforcement.grader", "properties only in ours", ("name", "type"), (),
       _RFT_GRADER),
    _d("FineTuneMethod.reinforcement.grader", "required only in ours", ("type",), (),
       _RFT_GRADER),
    _d("FineTuneMethod.reinforcement", "properties only in ours", ("response_format",), (),
       "OpenAI's answers echo reinforcement.response_format (null in its create example) "
       "though its schema omits it; tunegate accepts it and echoes it, so it is declared."),
    # ---- events and checkpoints
    _d("FineTuningJobEvent", "required only in ours", ("data", "type"), (), _ALWAYS_SENT),
    _d("FineTuningJobEvent.data", "properties only in ours",
       tuple(sorted((*_OPENAI_METRICS, "total_steps", "learning_rate", "tokens_per_second",
                     "samples", *_REWARD_METRICS, *_RL_METRICS))), (),
       "OpenAI's schema leaves a metrics event's data an open object (its guide names the "
       "keys); tunegate's lists them, with the DPO reward figures, the reinforcement "
       "rewards (OpenAI's train_/valid_reward_mean and tunegate's spread, flat-group share, "
       "answer length, grader errors, a few sampled answers) and the learning rate and "
       "tokens/s it adds for charts."),
    _d("FineTuningJobCheckpoint.metrics", "properties only in ours",
       tuple(sorted((*_REWARD_METRICS, *_RL_METRICS))), (),
       "DPO runs report the implicit-reward figures besides the loss (OpenAI publishes no "
       "DPO metrics), reinforcement runs their grader's rewards; null for the other methods."),
    _d("FineTuningJobCheckpoint.metrics", "required only in ours",
       tuple(sorted((*_OPENAI_METRICS, *_REWARD_METRICS, *_RL_METRICS))), (), _ALWAYS_SENT),
    _d("FineTuningJobCheckpoint.metrics", "nullable only in ours", _OPENAI_METRICS, (),
       "A figure not measured at that step is null (valid_* without a validation file, token "
       "accuracies of DPO runs) rather than left out: every key is sent. The OpenAI SDKs type "
       "each metric Optional[float], so strict clients read the null."),
    # ---- list pages
    _d("FineTuningJobList", "properties only in ours", _CURSORS, (), _EXTRA_CURSORS),
    _d("FineTuningJobList", "required only in ours", _CURSORS, (), _ALWAYS_SENT),
    _d("FineTuningJobEventList", "properties only in ours", _CURSORS, (), _EXTRA_CURSORS),
    _d("FineTuningJobEventList", "required only in ours", _CURSORS, (), _ALWAYS_SENT),
    _d("FineTuningJobCheckpointList", "required only in ours", _CURSORS, (), _ALWAYS_SENT),
    _d("FineTuningCheckpointPermissionList", "required only in ours", _CURSORS, (),
       _ALWAYS_SENT),
    _d("FileList", "nullable only in ours", _CURSORS, (),
       "An empty page has no first or last id: OpenAI's required non-null strings cannot "
       "describe it (facts file, quirk 7); its SDK types them Optional and reads the null."),
    _d("FileList.object", "enum only in ours", ("list",), (), _OPEN_IN_OPENAI),
    # ---- files
    _d("OpenAIFile", "required only in ours", ("expires_at", "status_details"), (),
       _ALWAYS_SENT),
    _d("OpenAIFile", "nullable only in ours", ("expires_at", "status_details"), (),
       "A file that never expires has expires_at null and status_details is always null, "
       "sent rather than left out (every key is sent); the OpenAI SDKs type both Optional."),
    _d("CreateFileRequest", "properties only in ours",
       ("expires_after[anchor]", "expires_after[seconds]"), (),
       "A multipart form has no nested objects: the SDKs send OpenAI's expires_after as these "
       "two fields, and the spec names them so the validator can check them."),
    _d("CreateFileRequest", "properties only in theirs", (), ("expires_after",),
       "Sent as expires_after[anchor] and expires_after[seconds]; one expires_after part is "
       "refused with 400 unknown_parameter rather than ignored."),
    # ---- models
    _d("Model", "required only in ours", ("served_by", "shutdown_date"), (),
       _ALWAYS_SENT + " (null: local models do not shut down; null but on a former name)"),
    _d("Model", "properties only in ours", ("served_by",), (),
       "A migrated fine-tune's former name (`tunegate migrate`) is listed as a model of its own "
       "and names the local model that answers for it."),
    _d("DeleteModelResponse.object", "enum only in ours", ("model",), (), _OPEN_IN_OPENAI),
    # ---- uploads
    _d("Upload", "required only in ours", ("file", "object"), (), _ALWAYS_SENT),
    _d("Upload.bytes", "format", "int64", None,
       "Uploads reach 8 GB, beyond 32 bits: int64 tells generated clients to use a 64-bit type."),
    _d("CreateUploadRequest.bytes", "format", "int64", None,
       "Uploads reach 8 GB, beyond 32 bits: int64 tells generated clients to use a 64-bit type."),
    _d("Upload.purpose", "enum only in ours",
       ("assistants", "batch", "evals", "fine-tune", "user_data", "vision"), (),
       "An upload can only hold a purpose its create accepted; naming them lets strict clients "
       "check it."),
    # ---- graders
    _d("RunGraderRequest", "properties only in ours", ("reference_answer",), (),
       "SDKs 1.78 to 1.82 send reference_answer instead of item (OpenAI's spec of that time "
       "required it); it is accepted and read as item.reference_answer."),
    _d("ValidateGraderResponse", "required only in ours", ("grader",), (), _ALWAYS_SENT),
    _d("GraderScoreModel.input[].content", "alternatives", 0, 2, _GRADER_CHECKED),
    _d("GraderLabelModel.input[].content", "alternatives", 0, 2, _GRADER_CHECKED),
    _d("GraderScoreModel.sampling_params.reasoning_effort", "enum only in theirs", (),
       ("high", "low", "max", "medium", "minimal", "none", "xhigh"),
       "Accepted and ignored whatever its value: no local model reasons on request."),
    _d("GraderMulti.graders", "type", ("object",), (),
       "Every shape OpenAI has used is an object or a list: one grader, a name -> grader map "
       "(its guide's examples, SDKs up to 1.82) or a list (its spec's example)."),
    _d("GraderMulti.graders", "alternatives", 0, 5, _GRADER_CHECKED),
    _d("CreateUploadRequest.purpose", "enum only in ours", ("evals", "user_data"), (),
       "The SDK's uploads.create takes every file purpose and POST /files accepts user_data; "
       "an upload accepts what POST /files accepts."),
    # ---- embeddings
    _d("Embedding.embedding", "type", (), ("array",), _BASE64_VECTOR),
    _d("Embedding.embedding", "items", False, True, _BASE64_VECTOR),
    _d("Embedding.embedding", "alternatives", 2, 0, _BASE64_VECTOR),
)


# --------------------------------------------------------------------------- normal form


@dataclass
class Shape:
    """A schema in neither dialect: what the comparison looks at."""

    nullable: bool = False
    types: tuple[str, ...] = ()
    enum: tuple[str, ...] | None = None
    format: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)  # name -> raw schema
    required: frozenset[str] = frozenset()
    items: Any = None
    additional: Any = None
    alternatives: list[Any] = field(default_factory=list)  # raw non-null oneOf/anyOf branches
    ref: str | None = None  # the component this shape was read from, if any


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # OpenAI's 4,000 lines, quicker


class Spec:
    """One OpenAPI document's component schemas."""

    def __init__(self, *paths: Path):
        self.schemas: dict[str, Any] = {}
        for path in paths:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
            self.schemas.update(document["components"]["schemas"])

    def resolve(self, schema: Any) -> tuple[dict[str, Any], str | None]:
        """The schema a (chain of) ``$ref`` points at, and the last component name on the way."""
        name = None
        while isinstance(schema, dict) and "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.schemas[name]
        return schema, name

    def shape(self, raw: Any) -> Shape:
        """``raw`` in the neutral form, its ``allOf`` merged and its null alternatives folded
        into ``nullable``."""
        schema, name = self.resolve(raw)
        shape = Shape(ref=name)
        self._read(schema, shape)
        return shape

    def _read(self, schema: dict[str, Any], shape: Shape) -> None:
        types = schema.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        if "null" in types or schema.get("nullable") is True:
            shape.nullable = True
        types = [kind for kind in types if kind != "null"]
        if not types and "properties" in schema:
            types = ["object"]  # OpenAI's Model and OpenAIFile list properties but no type
        if types:
            shape.types = tuple(types)
        if "enum" in schema:
            values = [value for value in schema["enum"] if value is not None]
            if len(values) < len(schema["enum"]):
                shape.nullable = True
            shape.enum = tuple(sorted(map(str, values)))
        if "format" in schema:
            shape.format = schema["format"]
        shape.properties.update(schema.get("properties", {}))
        shape.required = shape.required | frozenset(schema.get("required", ()))
        if "items" in schema:
            shape.items = schema["items"]
        if isinstance(schema.get("additionalProperties"), dict):
            shape.additional = schema["additionalProperties"]
        for part in schema.get("allOf", ()):
            self._read(self.resolve(part)[0], shape)
        for keyword in ("oneOf", "anyOf"):
            self._read_alternatives(schema.get(keyword, ()), shape)

    def _read_alternatives(self, branches: list[Any], shape: Shape) -> None:
        """Null branches make the whole nullable; one remaining branch stands for the whole."""
        kept = []
        for branch in branches:
            resolved, _ = self.resolve(branch)
            if _is_null(resolved):
                shape.nullable = True
                continue
            if resolved.get("nullable") is True or None in resolved.get("enum", ()):
                shape.nullable = True
            kept.append(branch)
        kept = self._open_enum(kept)
        if len(kept) == 1:
            inner = self.shape(kept[0])
            shape.nullable = shape.nullable or inner.nullable
            for name in ("types", "enum", "format", "items", "additional"):
                if getattr(inner, name) not in (None, ()):
                    setattr(shape, name, getattr(inner, name))
            shape.properties.update(inner.properties)
            shape.required = shape.required | inner.required
            shape.alternatives.extend(inner.alternatives)
            shape.ref = shape.ref or inner.ref
        else:
            shape.alternatives.extend(kept)

    def _open_enum(self, branches: list[Any]) -> list[Any]:
        """OpenAI's "any string, these for instance" (``anyOf: [string, string enum]``, e.g.
        the job request's ``model``) accepts every string: it stands for the plain branch."""
        resolved = [self.resolve(branch)[0] for branch in branches]
        plain = [branch for branch, schema in zip(branches, resolved, strict=True)
                 if set(schema) - {"description", "example"} == {"type"}]
        if len(plain) == 1 and len(branches) > 1 and all(
                schema.get("type") == self.resolve(plain[0])[0]["type"] and "enum" in schema
                for branch, schema in zip(branches, resolved, strict=True)
                if branch is not plain[0]):
            return plain
        return branches


def _is_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or schema.get("type") == ["null"] or (
        schema.get("enum") == [None])


# --------------------------------------------------------------------------- comparison


class _Comparison:
    def __init__(self, ours: Spec, theirs: Spec):
        self.ours, self.theirs = ours, theirs
        self.found: list[Difference] = []

    def note(self, path: str, aspect: str, ours: Any, theirs: Any) -> None:
        self.found.append(Difference(path, aspect, ours, theirs))

    def compare(self, path: str, our_raw: Any, their_raw: Any, root: bool = False,
                nullability: bool = False) -> None:
        """Note how ``our_raw`` differs from ``their_raw``; a property's nullability is noted
        by its object (``nullability`` off), an alternative's by the alternatives' holder."""
        mine, yours = self.ours.shape(our_raw), self.theirs.shape(their_raw)
        if not root and mine.ref and PAIRS.get(mine.ref) == yours.ref:
            return  # a pair of its own: compared once, under its own name
        if nullability and mine.nullable != yours.nullable:
            self.note(path, "nullable", mine.nullable, yours.nullable)
        for aspect, a, b in (("type", mine.types, yours.types),
                             ("format", mine.format, yours.format)):
            if a != b:
                self.note(path, aspect, a, b)
        self._enums(path, mine.enum, yours.enum)
        self._properties(path, mine, yours)
        if mine.items is not None and yours.items is not None:
            self.compare(f"{path}[]", mine.items, yours.items, nullability=True)
        elif (mine.items is None) != (yours.items is None):
            self.note(path, "items", mine.items is not None, yours.items is not None)
        if mine.additional is not None and yours.additional is not None:
            self.compare(f"{path}{{}}", mine.additional, yours.additional,
                         nullability=True)
        if len(mine.alternatives) != len(yours.alternatives):
            self.note(path, "alternatives", len(mine.alternatives), len(yours.alternatives))
        else:
            for index, (a, b) in enumerate(zip(mine.alternatives, yours.alternatives,
                                               strict=True)):
                self.compare(f"{path}|{index}", a, b)

    def _enums(self, path: str, mine: tuple[str, ...] | None,
               yours: tuple[str, ...] | None) -> None:
        if mine == yours:
            return
        only_ours = tuple(sorted(set(mine or ()) - set(yours or ())))
        only_theirs = tuple(sorted(set(yours or ()) - set(mine or ())))
        if only_ours or yours is None:
            self.note(path, "enum only in ours", only_ours, ())
        if only_theirs or mine is None:
            self.note(path, "enum only in theirs", (), only_theirs)

    def _properties(self, path: str, mine: Shape, yours: Shape) -> None:
        ours_only = tuple(sorted(set(mine.properties) - set(yours.properties)))
        theirs_only = tuple(sorted(set(yours.properties) - set(mine.properties)))
        if ours_only:
            self.note(path, "properties only in ours", ours_only, ())
        if theirs_only:
            self.note(path, "properties only in theirs", (), theirs_only)
        for aspect, names in (
                ("required only in ours", mine.required - yours.required),
                ("required only in theirs", yours.required - mine.required)):
            if names:
                sides = (tuple(sorted(names)), ())
                self.note(path, aspect, *(sides if "ours" in aspect else sides[::-1]))
        shared = sorted(set(mine.properties) & set(yours.properties))
        nullable_ours, nullable_theirs = [], []
        for name in shared:
            a = self.ours.shape(mine.properties[name]).nullable
            b = self.theirs.shape(yours.properties[name]).nullable
            if a and not b:
                nullable_ours.append(name)
            elif b and not a:
                nullable_theirs.append(name)
            self.compare(f"{path}.{name}", mine.properties[name], yours.properties[name])
        if nullable_ours:
            self.note(path, "nullable only in ours", tuple(nullable_ours), ())
        if nullable_theirs:
            self.note(path, "nullable only in theirs", (), tuple(nullable_theirs))


def differences(ours: Spec | None = None, theirs: Spec | None = None) -> list[Difference]:
    """Every difference between each pair of `PAIRS`, in a stable order."""
    comparison = _Comparison(ours or Spec(OURS_PATH), theirs or Spec(*THEIRS_PATHS))
    for mine, yours in PAIRS.items():
        comparison.compare(mine, {"$ref": f"#/components/schemas/{mine}"},
                           {"$ref": f"#/components/schemas/{yours}"}, root=True, nullability=True)
    return comparison.found
