"""Items per second of an eval run's ``completions`` data source, against the same items sent one
at a time.

    .venv/bin/python bench/eval_runs.py [--items 100] [--tokens 64] [--concurrency 4]

Starts a real ``tunegate serve`` (embedded worker, embedded SmolLM2-135M-Instruct GGUF) with
``TUNEGATE_EVAL_CONCURRENCY`` and ``TUNEGATE_INFERENCE_PARALLEL`` set to ``--concurrency``, warms
the model with one chat, then

- ``run``: creates an eval (one ``string_check`` criterion) and a run over ``--items`` items
  whose answers are ``--tokens`` tokens at most, through the official SDK, and times it from the
  create until the run is ``completed`` (generation, grading and recording of every item);
- ``one at a time``: sends the same items' chat completions, same sampling, one after the
  other through the SDK, and times them (generation only: the sequential baseline is favoured).

Prints items/s of each, the completion tokens generated, and the ratio (target: >= 2x on 2 CPU
cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import running_server  # noqa: E402
from tests.servers import sdk_client  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
TOPICS = ["a lighthouse", "a dragon", "a river", "a robot", "a garden", "a violin", "a storm",
          "a market", "a comet", "a forest"]
PROMPT = "Write a long story about {topic}, number {number}."


def items(count: int) -> list[dict[str, object]]:
    return [{"item": {"topic": TOPICS[i % len(TOPICS)], "number": i}} for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", "The Evals API is deprecated")
    sampling = {"temperature": 0.8, "top_p": 1.0, "seed": 7, "max_completion_tokens": args.tokens}
    rows = items(args.items)
    env = {"TUNEGATE_EVAL_CONCURRENCY": str(args.concurrency),
           "TUNEGATE_INFERENCE_PARALLEL": str(args.concurrency)}
    with tempfile.TemporaryDirectory() as folder, running_server(Path(folder), env=env) as server:
        client = sdk_client(server, max_retries=0, timeout=600)
        client.chat.completions.create(model=MODEL, max_completion_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])
        evaluation = client.evals.create(
            data_source_config={"type": "custom", "item_schema": {"type": "object"}},
            testing_criteria=[{"type": "string_check", "name": "mentions the topic",
                               "input": "{{ sample.output_text }}",
                               "reference": "{{ item.topic }}", "operation": "ilike"}])
        started = time.perf_counter()
        run = client.evals.runs.create(evaluation.id, data_source={  # type: ignore[arg-type]
            "type": "completions", "model": MODEL,
            "source": {"type": "file_content", "content": rows},
            "input_messages": {"type": "template", "template": [{"role": "user", "content":
                               PROMPT.replace("{topic}", "{{ item.topic }}")
                               .replace("{number}", "{{ item.number }}")}]},
            "sampling_params": sampling})
        while run.status not in ("completed", "failed", "canceled"):
            time.sleep(0.2)
            run = client.evals.runs.retrieve(run.id, eval_id=evaluation.id)
        run_seconds = time.perf_counter() - started
        assert run.status == "completed", run.error
        run_tokens = sum(usage.completion_tokens for usage in run.per_model_usage)
        started = time.perf_counter()
        one_tokens = 0
        for row in rows:
            item = row["item"]
            assert isinstance(item, dict)
            answer = client.chat.completions.create(
                model=MODEL, temperature=0.8, top_p=1.0, seed=7,
                max_completion_tokens=args.tokens,
                messages=[{"role": "user", "content": PROMPT.format(**item)}])
            one_tokens += answer.usage.completion_tokens if answer.usage else 0
        one_seconds = time.perf_counter() - started
    run_rate, one_rate = args.items / run_seconds, args.items / one_seconds
    print(f"cpus: {os.cpu_count()}, items: {args.items}, max tokens: {args.tokens}, "
          f"concurrency: {args.concurrency}")
    print(f"run:             {run_seconds:7.1f} s  {run_rate:6.2f} items/s  "
          f"{run_tokens} completion tokens  passed {run.result_counts.passed}")
    print(f"one at a time:   {one_seconds:7.1f} s  {one_rate:6.2f} items/s  "
          f"{one_tokens} completion tokens")
    print(f"ratio: {run_rate / one_rate:.2f}x")


if __name__ == "__main__":
    main()
