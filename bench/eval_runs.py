"""Items per second of an eval run's ``completions`` data source, against the same items sent one
at a time.

    .venv/bin/python bench/eval_runs.py [--items 100] [--tokens 64] [--concurrency 4]
                                        [--threads 0] [--rounds 1]

Starts a real ``tunegate serve`` (embedded worker, embedded SmolLM2-135M-Instruct GGUF) with
``TUNEGATE_EVAL_CONCURRENCY`` and ``TUNEGATE_INFERENCE_PARALLEL`` set to ``--concurrency`` (its
worker only evaluates: no trainer process waits beside the runs), warms the model with one chat,
then, ``--rounds`` times (each phase printed with the load average as it ends):

- ``run``: creates an eval (one ``string_check`` criterion) and a run over ``--items`` items
  whose answers are ``--tokens`` tokens at most, through the official SDK, and times it from the
  create until the run is ``completed`` (generation, grading and recording of every item);
- ``clients at once``: sends the same items' chat completions, same sampling, from
  ``--concurrency`` SDK clients at once (what the run's generation costs without the worker:
  the difference to ``run`` is the eval stage's own overhead);
- ``one at a time``: sends them one after the other through the SDK, and times them
  (generation only: the sequential baseline is favoured).

Prints items/s of each, the completion tokens generated, and the ratio of ``run`` to ``one at
a time`` per round and over all rounds (target: >= 2x on 2 CPU cores). On a loaded machine
``--items 32 --rounds 2`` takes a few minutes where 100 items took over ten. ``--threads``
sets ``TUNEGATE_INFERENCE_THREADS`` (0: llama.cpp's choice, every core).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openai import OpenAI  # noqa: E402

from bench.serving import running_server  # noqa: E402
from tests.servers import sdk_client  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["a lighthouse", "a dragon", "a river", "a robot", "a garden", "a violin", "a storm",
          "a market", "a comet", "a forest"]
PROMPT = "Write a long story about {topic}, number {number}."


def items(count: int) -> list[dict[str, object]]:
    return [{"item": {"topic": TOPICS[i % len(TOPICS)], "number": i}} for i in range(count)]


Rows = list[dict[str, object]]


@dataclass
class Phase:
    seconds: float
    tokens: int


def timed_run(client: OpenAI, eval_id: str, rows: Rows, sampling: dict[str, float]) -> Phase:
    """One eval run over ``rows``, from its create until it is ``completed``."""
    started = time.perf_counter()
    run = client.evals.runs.create(eval_id, data_source={  # type: ignore[arg-type]
        "type": "completions", "model": MODEL,
        "source": {"type": "file_content", "content": rows},
        "input_messages": {"type": "template", "template": [{"role": "user", "content":
                           PROMPT.replace("{topic}", "{{ item.topic }}")
                           .replace("{number}", "{{ item.number }}")}]},
        "sampling_params": sampling})
    while run.status not in ("completed", "failed", "canceled"):
        time.sleep(0.2)
        run = client.evals.runs.retrieve(run.id, eval_id=eval_id)
    assert run.status == "completed", run.error
    return Phase(time.perf_counter() - started,
                 sum(usage.completion_tokens for usage in run.per_model_usage))


def timed_chats(client: OpenAI, rows: Rows, sampling: dict[str, float], at_once: int) -> Phase:
    """The rows' chat completions, ``at_once`` in flight (1: one after the other)."""
    def ask(row: dict[str, object]) -> int:
        item = row["item"]
        assert isinstance(item, dict)
        answer = client.chat.completions.create(
            model=MODEL, temperature=sampling["temperature"], top_p=sampling["top_p"],
            seed=int(sampling["seed"]),
            max_completion_tokens=int(sampling["max_completion_tokens"]),
            messages=[{"role": "user", "content": PROMPT.format(**item)}])
        return answer.usage.completion_tokens if answer.usage else 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        tokens = sum(pool.map(ask, rows))
    return Phase(time.perf_counter() - started, tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the three phases, interleaved (a shared machine's load "
                             "moves by 2-5x within minutes)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "The Evals API is deprecated")
    sampling = {"temperature": 0.8, "top_p": 1.0, "seed": 7, "max_completion_tokens": args.tokens}
    rows = items(args.items)
    env = {"TUNEGATE_EVAL_CONCURRENCY": str(args.concurrency),
           "TUNEGATE_INFERENCE_PARALLEL": str(args.concurrency),
           "TUNEGATE_INFERENCE_THREADS": str(args.threads),
           # Nothing trains: no trainer process kept waiting, importing torch beside the runs.
           "TUNEGATE_WORKER_STAGES": "evaluate", "TUNEGATE_TRAINER_STANDBY": "disabled"}
    print(f"cpus: {os.cpu_count()}, items: {args.items}, max tokens: {args.tokens}, "
          f"concurrency: {args.concurrency}, threads: {args.threads or 'all'}", flush=True)
    phases: dict[str, list[Phase]] = {"run": [], "clients at once": [], "one at a time": []}
    with tempfile.TemporaryDirectory() as folder, running_server(Path(folder), env=env) as server:
        client = sdk_client(server, max_retries=0, timeout=600)
        client.chat.completions.create(model=MODEL, max_completion_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])
        evaluation = client.evals.create(
            data_source_config={"type": "custom", "item_schema": {"type": "object"}},
            testing_criteria=[{"type": "string_check", "name": "mentions the topic",
                               "input": "{{ sample.output_text }}",
                               "reference": "{{ item.topic }}", "operation": "ilike"}])
        for round_number in range(1, args.rounds + 1):
            measures = {"run": lambda: timed_run(client, evaluation.id, rows, sampling),
                        "clients at once": lambda: timed_chats(client, rows, sampling,
                                                               args.concurrency),
                        "one at a time": lambda: timed_chats(client, rows, sampling, 1)}
            measured = {}
            for name, measure in measures.items():
                phase = measured[name] = measure()
                phases[name].append(phase)
                print(f"round {round_number} {name + ':':16} {phase.seconds:7.1f} s  "
                      f"{args.items / phase.seconds:6.2f} items/s  {phase.tokens} completion "
                      f"tokens  load {os.getloadavg()[0]:.1f}", flush=True)
            print(f"round {round_number} ratio: "
                  f"{measured['one at a time'].seconds / measured['run'].seconds:.2f}x",
                  flush=True)
    run_seconds = sum(phase.seconds for phase in phases["run"])
    one_seconds = sum(phase.seconds for phase in phases["one at a time"])
    print(f"all rounds: run {args.rounds * args.items / run_seconds:.2f} items/s, one at a time "
          f"{args.rounds * args.items / one_seconds:.2f} items/s, ratio "
          f"{one_seconds / run_seconds:.2f}x")


if __name__ == "__main__":
    main()
