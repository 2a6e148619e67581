"""The client commands' command line: ``train``, ``jobs …``, ``chat``, ``eval``, ``migrate`` and
``webhooks …``, added to the ``tunegate`` parser beside ``serve``, ``worker`` and ``keys``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunegate.client import completions, webhooks

CLIENT_COMMANDS = ("train", "jobs", "chat", "eval", "migrate", "webhooks", "completions")
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
    train.add_argument("--method", choices=["supervised", "dpo", "reinforcement"],
                       default="supervised",
                       help="supervised (chat or prompt/completion), dpo (preference pairs) or "
                            "reinforcement (prompts, rewarded by --grader)")
    train.add_argument("--grader", type=Path,
                       help="reinforcement: the grader, a JSON file holding one of OpenAI's "
                            "grader objects (string_check, text_similarity, python, "
                            "score_model, multi)")
    train.add_argument("--epochs", type=int, help="n_epochs (default: auto)")
    train.add_argument("--batch-size", type=int, help="batch_size (default: auto)")
    train.add_argument("--learning-rate-multiplier", type=float,
                       help="learning_rate_multiplier (default: auto)")
    train.add_argument("--seed", type=int, help="for a repeatable run")
    for flag, kind, name in (("--compute-multiplier", float, "compute_multiplier"),
                             ("--eval-interval", int, "eval_interval"),
                             ("--eval-samples", int, "eval_samples")):
        train.add_argument(flag, type=kind, help=f"reinforcement: {name} (default: auto)")
    train.add_argument("--reasoning-effort", choices=["default", "low", "medium", "high"],
                       help="reinforcement: reasoning_effort (default: default)")

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
                    "the per-criterion table. With --job instead: grade a succeeded job's "
                    "fine-tuned model and its base on the job's validation file (an eval made "
                    "for it: each example's messages answered, the answer compared with the "
                    "example's). Exit code 0 when the runs completed.")
    evaluate.add_argument("eval_id", metavar="EVAL_ID", nargs="?",
                          help="the eval (eval_…); not with --job")
    evaluate.add_argument("--model",
                          help="a base model, an alias, a fine-tuned model or a checkpoint")
    evaluate.add_argument("--file", type=Path, help="the data items (JSONL)")
    evaluate.add_argument("--job", metavar="JOB_ID",
                          help="a succeeded job with a validation file (ftjob-…): its model and "
                               "its base, graded on that file")
    evaluate.add_argument("--metric", default=None,
                          help="with --job: the text_similarity metric (default rouge_l)")
    evaluate.add_argument("--pass-threshold", type=float, default=None,
                          help="with --job: the similarity that passes (default 0.6)")
    evaluate.add_argument("--grader", help="with --job: the criterion as JSON instead "
                                           "(e.g. a string_check of {{ item.answer }})")
    evaluate.add_argument("--prompt", help="the user message, {{ item.… }} filled from each "
                                           "item (default {{ item.input }})")
    evaluate.add_argument("--item-reference",
                          help="instead of --prompt: the messages inside each item "
                               "(e.g. item.messages)")
    evaluate.add_argument("--max-tokens", type=int, default=256,
                          help="longest answer (default 256)")
    webhooks.add_arguments(commands, connection)
    completions.add_arguments(commands, connection)
    add_migrate_command(commands)


def add_migrate_command(commands: Any) -> None:
    """``migrate --from SOURCE``: its own key options (the source's key is never the target's)."""
    migrate = commands.add_parser(
        "migrate", help="bring fine-tuning jobs and their files from OpenAI (or any "
                        "OpenAI-compatible API) into a tunegate server",
        description="List the source's jobs, files, fine-tuned models and checkpoints, then copy "
                    "the files of each succeeded job and recreate the job on a local base with "
                    "the same method, hyperparameters, suffix, seed and metadata. Once a "
                    "recreated job succeeds, the old ft: name answers through the new model. "
                    "Run it again after any interruption: nothing is copied twice.")
    migrate.add_argument("--from", dest="source", default=None,
                         help="the source API (default https://api.openai.com/v1)")
    migrate.add_argument("--key", help="the source's API key (default: OPENAI_API_KEY); "
                                       "never stored, never sent to the target")
    migrate.add_argument("--url", help="the tunegate server to move into (TUNEGATE_URL, default "
                                       "http://127.0.0.1:8000/v1; its key from TUNEGATE_API_KEY)")
    migrate.add_argument("--map", action="append", default=[], metavar="BASE=LOCAL",
                         help="train jobs of source base BASE on local model LOCAL (repeat it; "
                              "a base not named goes to the target's alias table)")
    migrate.add_argument("--dry-run", action="store_true", help="print the plan, move nothing")
    migrate.add_argument("--yes", action="store_true", help="do not ask before moving")
    migrate.add_argument("--record", action="store_true",
                         help="ask each old model for its answers on its validation prompts "
                              "(and --prompts) and keep them as an eval on the target")
    migrate.add_argument("--prompts", type=Path,
                         help="more prompts for --record (JSONL: messages, or prompt)")
    migrate.add_argument("--max-tokens", type=int, default=256,
                         help="longest recorded answer (default 256)")
    migrate.add_argument("--state", type=Path,
                         help="the file that records what moved (default: one per source and "
                              "target under $XDG_STATE_HOME/tunegate/migrate)")
