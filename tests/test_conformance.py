"""Our component schemas against OpenAI's (tests/conformance.py): nothing differs but what
`INTENDED` lists with its reason, and every entry there is still a real difference."""

from __future__ import annotations

import copy

import pytest

from tests.conformance import (
    INTENDED,
    OURS_PATH,
    PAIRS,
    THEIRS_PATHS,
    Difference,
    Spec,
    differences,
)

OURS = Spec(OURS_PATH)
THEIRS = Spec(*THEIRS_PATHS)


def _show(difference: Difference) -> str:
    return (f"{difference.path}: {difference.aspect}: ours {difference.ours!r}, "
            f"OpenAI {difference.theirs!r}")


def test_every_pair_names_a_schema_of_each_spec() -> None:
    assert [name for name in PAIRS if name not in OURS.schemas] == []
    assert [name for name in PAIRS.values() if name not in THEIRS.schemas] == []


def test_no_difference_from_openai_but_the_intended_ones() -> None:
    intended = {entry.difference for entry in INTENDED}
    unexplained = [_show(d) for d in differences(OURS, THEIRS) if d not in intended]
    assert unexplained == [], (
        "openapi.yaml differs from OpenAI's schema; fix the spec (and the code if it sends "
        "the same) or add the difference to INTENDED in tests/conformance.py with its reason")


def test_every_intended_difference_still_exists() -> None:
    found = set(differences(OURS, THEIRS))
    stale = [_show(entry.difference) for entry in INTENDED if entry.difference not in found]
    assert stale == [], "INTENDED lists differences that no longer exist: remove or update them"


def test_intended_entries_are_unique_and_explained() -> None:
    listed = [entry.difference for entry in INTENDED]
    assert len(listed) == len(set(listed))
    assert all(len(entry.reason) > 20 for entry in INTENDED)


# The comparison itself: each aspect it promises to see, seen on a doctored copy of our spec.

def _doctored(change: str) -> Spec:
    spec = copy.deepcopy(OURS)
    job = spec.schemas["FineTuningJob"]
    error = job["properties"]["error"]
    if change == "nullable":
        del error["nullable"]
    elif change == "required":
        job["required"].remove("seed")
    elif change == "type":
        job["properties"]["seed"]["type"] = "string"
    elif change == "enum":
        job["properties"]["status"]["enum"].remove("cancelled")
    elif change == "format":
        del job["properties"]["created_at"]["format"]
    elif change == "property":
        del error["properties"]["param"]
    elif change == "nested through a $ref":
        spec.schemas["FineTuningIntegration"]["properties"]["wandb"]["properties"]["name"] \
            .pop("nullable")
    return spec


@pytest.mark.parametrize(("change", "expected"), [
    ("nullable", Difference("FineTuningJob", "nullable only in theirs", (), ("error",))),
    ("required", Difference("FineTuningJob", "required only in theirs", (), ("seed",))),
    ("type", Difference("FineTuningJob.seed", "type", ("string",), ("integer",))),
    ("enum", Difference("FineTuningJob.status", "enum only in theirs", (), ("cancelled",))),
    ("format", Difference("FineTuningJob.created_at", "format", None, "unixtime")),
    ("property", Difference("FineTuningJob.error", "properties only in theirs", (),
                            ("param",))),
    ("nested through a $ref", Difference("FineTuningIntegration.wandb",
                                         "nullable only in theirs", (), ("name",))),
])
def test_the_comparison_sees_each_aspect(change: str, expected: Difference) -> None:
    assert expected not in differences(OURS, THEIRS)
    assert expected in differences(_doctored(change), THEIRS)


def test_openai_nullable_forms_read_as_ours() -> None:
    """`anyOf: [X, {type: null}]`, `type: [X, 'null']` and an alternative holding the null
    (the job's batch_size) all read as one nullable X, as `nullable: true` does."""
    theirs = THEIRS.shape({"anyOf": [{"type": "string"}, {"type": "null"}]})
    listed = THEIRS.shape({"type": ["integer", "null"]})
    inner = OURS.shape({"oneOf": [{"type": "string", "enum": ["auto"]},
                                  {"type": "integer", "nullable": True}]})
    assert (theirs.nullable, theirs.types) == (True, ("string",))
    assert (listed.nullable, listed.types) == (True, ("integer",))
    assert inner.nullable and len(inner.alternatives) == 2


# The Responses API: OpenAI's spec subsets above do not cover it, so our schemas are compared
# with the installed SDK's types, which are generated from OpenAI's full spec.

def _sdk_fields(model: type) -> tuple[set[str], set[str]]:
    """(every field, the required ones) of an SDK type, by their wire names."""
    fields = model.model_fields  # type: ignore[attr-defined]
    names = {field.alias or name for name, field in fields.items()}
    required = {field.alias or name for name, field in fields.items() if field.is_required()}
    return names, required


def _sdk_response_types() -> dict[str, type]:
    from openai.types.responses import (
        Response,
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
        ResponseUsage,
    )
    return {"Response": Response, "ResponseOutputMessage": ResponseOutputMessage,
            "ResponseOutputText": ResponseOutputText,
            "ResponseFunctionCall": ResponseFunctionToolCall, "ResponseUsage": ResponseUsage}


# Keys we send that the SDK's type does not declare, each with its reason.
RESPONSE_EXTRAS = {
    # OpenAI's API reference shows `store` on every response object; the generated type leaves
    # it out. We send it, always false, to say that nothing was kept.
    ("Response", "store"),
}


@pytest.mark.parametrize("name", ["Response", "ResponseOutputMessage", "ResponseOutputText",
                                  "ResponseFunctionCall", "ResponseUsage"])
def test_responses_schemas_match_the_sdk_types(name: str) -> None:
    schema = OURS.schemas[name]
    ours, ours_required = set(schema["properties"]), set(schema.get("required", ()))
    theirs, theirs_required = _sdk_fields(_sdk_response_types()[name])
    assert theirs_required - ours_required == set(), "the SDK requires keys we may leave out"
    assert {(name, key) for key in ours - theirs} == {
        entry for entry in RESPONSE_EXTRAS if entry[0] == name}
