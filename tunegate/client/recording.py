"""``tunegate migrate --record``: what an old fine-tuned model answers, kept while it still answers.

For each moved job's old model, the prompts (the job's validation file, each example without its
last assistant turn, and the rows of ``--prompts``) are sent to the source's chat endpoint. Each
answer is appended to ``answers.jsonl`` beside the state file as it arrives, so a rerun asks
only the prompts not answered yet. Then, on the target:

- an eval (metadata ``tunegate_former_model``) whose items are the prompts with the old answer
  as ``reference``, graded by ``fuzzy_match`` similarity of a sample to that answer;
- a run of it on a ``jsonl`` data source whose samples are the old answers themselves, so the
  answers are kept in tunegate as output items (and grade 1.0: the yardstick).

Evaluating the new model is then ``tunegate eval EVAL --model OLD_NAME --file items.jsonl
--item-reference item.messages`` (the old name answers through the new model). The same answers
are written as a training file, ``distill.jsonl`` (the prompts with the old answers as the
assistant turn), to train a local model to answer as the old one did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.client.connection import short_reason as describe
from tunegate.client.migration_state import MigrationState
from tunegate.ids import FORMER_MODEL_KEY

if TYPE_CHECKING:
    from openai import OpenAI

PASS_THRESHOLD = 0.6
Messages = list[dict[str, Any]]


class RecordFailed(Exception):
    """The answers of one old model could not be recorded; ``str()`` says which and why."""


def prompt_of(row: Any) -> Messages | None:
    """A JSONL row as the messages to send: a chat example without its last assistant turn, a
    ``prompt`` (completion format) as one user message; None for anything else."""
    if not isinstance(row, dict):
        return None
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        while messages and isinstance(messages[-1], dict) and messages[-1].get(
                "role") == "assistant":
            messages = messages[:-1]
        return [dict(message) for message in messages] or None
    if isinstance(row.get("prompt"), str):
        return [{"role": "user", "content": row["prompt"]}]
    return None


def prompts_in(content: bytes) -> list[Messages]:
    """Every prompt of a JSONL file's rows (lines that are no prompt are passed over)."""
    prompts = []
    for line in content.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            prompt = prompt_of(json.loads(line))
        except ValueError:
            continue
        if prompt is not None:
            prompts.append(prompt)
    return prompts


def _key(prompt: Messages) -> str:
    return json.dumps(prompt, sort_keys=True)


@dataclass
class Recorder:
    """Asks ``source`` for an old model's answers and keeps them in ``target``."""

    source: OpenAI
    target: OpenAI
    state: MigrationState
    say: Callable[[str], None]
    max_tokens: int = 256

    def record(self, old_model: str, prompts: Iterable[Messages], folder: Path) -> str:
        """The eval of ``old_model``'s answers on ``prompts`` (made once; answers asked once)."""
        import openai

        recorded = self.state.records.get(old_model)
        if recorded and self._eval_exists(recorded["eval"]):
            return str(recorded["eval"])
        folder.mkdir(parents=True, exist_ok=True)
        answers = self._answers(old_model, list(prompts), folder / "answers.jsonl")
        if not answers:
            raise RecordFailed(f"model {old_model}: no prompts to record (no validation file; "
                               "add --prompts FILE)")
        items = [{"item": {"messages": prompt, "reference": answer}} for prompt, answer in answers]
        write_jsonl(folder / "items.jsonl", items)
        write_jsonl(folder / "distill.jsonl", [
            {"messages": [*prompt, {"role": "assistant", "content": answer}]}
            for prompt, answer in answers])
        try:
            evaluation = self._find_eval(old_model) or self._create_eval(old_model)
            self.state.records[old_model] = {"eval": evaluation}
            self.state.save()
            run = self.target.evals.runs.create(evaluation, name=f"{old_model} (recorded)",
                                                data_source=self._recorded_source(old_model,
                                                                                  items, answers))
        except openai.OpenAIError as error:
            raise RecordFailed(f"model {old_model}: the target did not keep its answers: "
                               f"{describe(error)}") from None
        self.state.records[old_model] = {"eval": evaluation, "run": run.id}
        self.state.save()
        return evaluation

    def _answers(self, old_model: str, prompts: list[Messages],
                 path: Path) -> list[tuple[Messages, str]]:
        import openai

        known = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # the half line of a killed run: asked again
                known[_key(row["prompt"])] = row["answer"]
        with path.open("a") as out:
            for number, prompt in enumerate(prompts, 1):
                if _key(prompt) in known:
                    continue
                self.say(f"  asking {old_model}: {number}/{len(prompts)}")
                try:
                    reply = self.source.chat.completions.create(
                        model=old_model, messages=prompt,  # type: ignore[arg-type]
                        temperature=0, max_tokens=self.max_tokens)
                except openai.OpenAIError as error:
                    raise RecordFailed(f"model {old_model}: the source did not answer prompt "
                                       f"{number}: {describe(error)}") from None
                answer = reply.choices[0].message.content or ""
                known[_key(prompt)] = answer
                out.write(json.dumps({"prompt": prompt, "answer": answer}) + "\n")
                out.flush()
        return [(prompt, known[_key(prompt)]) for prompt in prompts]

    def _eval_exists(self, eval_id: str) -> bool:
        import openai

        try:
            self.target.evals.retrieve(eval_id)
        except openai.NotFoundError:
            return False
        return True

    def _find_eval(self, old_model: str) -> str | None:
        """The eval a killed run made before it could record it."""
        for evaluation in self.target.evals.list(limit=100):
            if (evaluation.metadata or {}).get(FORMER_MODEL_KEY) == old_model:
                return evaluation.id
        return None

    def _create_eval(self, old_model: str) -> str:
        message = {"type": "object", "properties": {"role": {"type": "string"},
                                                    "content": {"type": "string"}}}
        created = self.target.evals.create(
            name=f"answers of {old_model}"[:256],
            metadata={FORMER_MODEL_KEY: old_model},
            data_source_config={"type": "custom", "include_sample_schema": True, "item_schema": {
                "type": "object", "required": ["messages", "reference"],
                "properties": {"messages": {"type": "array", "items": message},
                               "reference": {"type": "string"}}}},
            testing_criteria=[{"type": "text_similarity", "name": "close to the old answer",
                               "input": "{{ sample.output_text }}",
                               "reference": "{{ item.reference }}",
                               "evaluation_metric": "fuzzy_match",
                               "pass_threshold": PASS_THRESHOLD}])
        return created.id

    @staticmethod
    def _recorded_source(old_model: str, items: list[dict[str, Any]],
                         answers: list[tuple[Messages, str]]) -> Any:
        rows = [{**row, "sample": {"output_text": answer, "model": old_model}}
                for row, (_, answer) in zip(items, answers, strict=True)]
        return {"type": "jsonl", "source": {"type": "file_content", "content": rows}}


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    partial = path.with_suffix(".part")
    partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
    partial.replace(path)
