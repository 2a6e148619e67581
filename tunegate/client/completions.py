"""``tunegate completions export [--model M] [--metadata KEY=VALUE …] [--output FILE | --upload]``:
stored chat completions (``store: true``) as a chat fine-tuning file, one exchange a line: the
request's messages, then the answer (the first choice), with the request's tools when it had
some. It reads them through OpenAI's stored-completion routes (``client.chat.completions.list``
and ``.messages.list``), so it exports from OpenAI itself as well as from tunegate."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from openai import OpenAI

# A message's keys that a training line keeps (the chat fine-tuning format's).
TRAINING_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


class Says(Protocol):
    out: IO[str]

    def say(self, line: str) -> None: ...
    def complain(self, line: str) -> None: ...


def add_arguments(commands: Any, connection: argparse.ArgumentParser) -> None:
    completions = commands.add_parser("completions", help="export stored chat completions")
    actions = completions.add_subparsers(dest="completions_command", required=True)
    export = actions.add_parser(
        "export", parents=[connection], help="stored completions as a training file",
        description="Write the chat completions stored with store: true (those matching the "
                    "filters) as a chat fine-tuning JSONL file: the request's messages, then "
                    "the answer, one exchange a line; oldest first.")
    export.add_argument("--model", help="only completions whose request named this model")
    export.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="only completions with this metadata pair (repeat: all of them)")
    where = export.add_mutually_exclusive_group()
    where.add_argument("--output", "-o", type=Path, help="write to FILE (default: stdout)")
    where.add_argument("--upload", metavar="FILENAME", nargs="?", const="stored-completions.jsonl",
                       help="upload it as a fine-tune file instead, and print its id")


def metadata_pairs(given: list[str]) -> dict[str, str]:
    pairs = {}
    for pair in given:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise SystemExit(f"--metadata takes KEY=VALUE, not {pair!r}")
        pairs[key] = value
    return pairs


def training_line(completion: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]
                  ) -> dict[str, Any] | None:
    """The training line of one stored exchange; None when it has no answer to learn."""
    choices = completion.get("choices") or []
    if not choices:
        return None
    answer = dict(choices[0]["message"])
    if answer.get("content") is None and not answer.get("tool_calls"):
        return None
    line: dict[str, Any] = {"messages": [_kept(message) for message in [*messages, answer]]}
    if completion.get("tools"):
        line["tools"] = completion["tools"]
    return line


def _kept(message: Mapping[str, Any]) -> dict[str, Any]:
    return {key: message[key] for key in TRAINING_KEYS if message.get(key) is not None}


def exported_lines(client: OpenAI, *, model: str | None,
                   metadata: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    """Every matching stored exchange's training line, oldest first (pages followed)."""
    filters: dict[str, Any] = {"order": "asc", "limit": 100}
    if model:
        filters["model"] = model
    if metadata:
        filters["metadata"] = dict(metadata)
    for completion in client.chat.completions.list(**filters):
        messages = [message.model_dump(exclude_none=True) for message in
                    client.chat.completions.messages.list(completion.id, limit=100)]
        line = training_line(completion.model_dump(), messages)
        if line is not None:
            yield line


def run_completions(args: argparse.Namespace, client: OpenAI, terminal: Says) -> int:
    lines = exported_lines(client, model=args.model, metadata=metadata_pairs(args.metadata))
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    count = text.count("\n")
    if args.upload:
        if not count:
            terminal.complain("No stored completion matches: nothing uploaded.")
            return 1
        made = client.files.create(file=(args.upload, text.encode()), purpose="fine-tune")
        terminal.say(made.id)
        terminal.complain(f"{count} exchanges uploaded as {made.id} ({args.upload}).")
        return 0
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        terminal.out.write(text)
        terminal.out.flush()
    terminal.complain(f"{count} exchanges exported.")
    return 0
