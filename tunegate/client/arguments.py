"""The client commands' command line: ``train``, ``jobs …``, ``chat``, ``eval`` and
``webhooks …``, added to the ``tunegate`` parser beside ``serve``, ``worker`` and ``keys``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunegate.client import webhooks

CLIENT_COMMANDS = ("train", "jobs", "chat", "eval", "webhooks")
JOB_ACTIONS = {
    "list": "list jobs, newest first",
    "show": "show one job (status, hyperparameters, progress, error)",
    "follow": "follow a job's events and progress until it ends",
    "cancel": "cancel a job",
    "pause": "pause a running or queued job (its training state is saved)",
    "resume": "put a paused job back in the queue",
}


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--url", help="the server's address, with or without /v1 "
                                       "(TUNEGATE_URL, default http://127.0.0.1:8000/v1); the "
                                       "key is read from TUNEGATE_API_KEY or OPENAI_API_KEY")
    return options


def add_client_commands(commands: Any) -> None:
    """Add ``train``, ``jobs`` and ``chat`` to ``commands`` (an ``add_subparsers`` result)."""
    connection = _connection_options()
    train = commands.add_parser(
        "train", parents=[connection], help="upload a file, fine-tune on it and follow the job",
        description="Check the model, upload FILE (purpose fine-tune), create a job and follow "
                    "it; ends with the "
                    "fine-tuned model's name. Exit code 0 when it succeeds, 1 when it fails or "
                    "is cancelled, 130 after Ctrl-C with the job left running.")
    train.add_argument("file", type=Path, help="training data (JSONL)")
    train.add_argument("--model", required=True,
                       help="base model (or ft:… to continue one), as `GET /models` lists it")
    train.add_argument("--suffix", help="part of the fine-tuned model's name")
    train.add_argument("--validation-file", type=Path, help="held-out data (JSONL)")
    train.add_argument("--method", choices=["supervised", "dpo"], default="supervised",
                       help="supervised (chat or prompt/completion) or dpo (preference pairs)")
    train.add_argument("--epochs", type=int, help="n_epochs (default: auto)")
    train.add_argument("--batch-size", type=int, help="batch_size (default: auto)")
    train.add_argument("--learning-rate-multiplier", type=float,
                       help="learning_rate_multiplier (default: auto)")
    train.add_argument("--seed", type=int, help="for a repeatable run")

    jobs = commands.add_parser("jobs", help="list, show, follow, cancel, pause or resume jobs")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = actions.add_parser("list", parents=[connection], help=JOB_ACTIONS["list"])
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="the API's JSON, one job a line")
    for action in ("show", "follow", "cancel", "pause", "resume"):
        command = actions.add_parser(action, parents=[connection], help=JOB_ACTIONS[action])
        command.add_argument("job_id", metavar="ID", help="the job's id (ftjob-…)")
    actions.choices["show"].add_argument("--json", action="store_true", help="the API's JSON")

    chat = commands.add_parser("chat", parents=[connection],
                               help="ask a model one question, the answer streamed")
    chat.add_argument("model", help="a base model, a fine-tuned model (ft:…) or a checkpoint")
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--system", help="a system message")
    chat.add_argument("--max-tokens", type=int, default=256, help="longest answer (default 256)")
    chat.add_argument("--temperature", type=float, help="sampling temperature")

    evaluate = commands.add_parser(
        "eval", parents=[connection], help="run an eval on a model and print each criterion's "
                                           "pass rate",
        description="Upload FILE (rows {\"item\": {...}}, purpose evals), run the eval on the "
                    "model with a completions data source, wait for the run to end and print "
                    "the per-criterion table. Exit code 0 when the run completed.")
    evaluate.add_argument("eval_id", metavar="EVAL_ID", help="the eval (eval_…)")
    evaluate.add_argument("--model", required=True,
                          help="a base model, an alias, a fine-tuned model or a checkpoint")
    evaluate.add_argument("--file", type=Path, required=True, help="the data items (JSONL)")
    evaluate.add_argument("--prompt", help="the user message, {{ item.… }} filled from each "
                                           "item (default {{ item.input }})")
    evaluate.add_argument("--item-reference",
                          help="instead of --prompt: the messages inside each item "
                               "(e.g. item.messages)")
    evaluate.add_argument("--max-tokens", type=int, default=256,
                          help="longest answer (default 256)")
    webhooks.add_arguments(commands, connection)
