"""A pool of llama.cpp models: base GGUF files, each optionally with one LoRA adapter GGUF.

One entry per served model id holds a ``llama_cpp.Llama`` (loaded on first use), and a lock:
llama.cpp contexts are not safe to share between threads, so generation on one entry is
serialized while different models run side by side. The least recently used entries are
dropped beyond ``capacity``; a model deleted through the API is evicted at once. An entry that
is dropped while a request still uses it is closed when that request lets go of it.

``llama_cpp`` is imported lazily, on the first load, and never torch: the API process stays
light until someone asks for a completion.
"""

from __future__ import annotations

import codecs
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.training.chat_format import (
    ChatFormatError,
    TemplateSupport,
    probe_support,
    to_template_messages,
)

# llama.cpp draws a fresh random seed for this value (LLAMA_DEFAULT_SEED).
RANDOM_SEED = 0xFFFFFFFF


@dataclass(frozen=True)
class ModelFiles:
    """What to load for one served model id: the base GGUF and, for fine-tuned models, the adapter."""

    model_id: str
    base: Path
    adapter: Path | None = None


@dataclass(frozen=True)
class Sampling:
    """OpenAI sampling parameters, in llama.cpp's terms (temperature 0 = greedy)."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0


@dataclass(frozen=True)
class Delta:
    """A piece of generated text. The last one of a generation has ``finish_reason`` set."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None  # "stop" | "length"


class TemplateError(Exception):
    """The messages cannot be rendered with the model's chat template."""


class ModelLoadError(Exception):
    """llama.cpp could not load the base GGUF or the adapter."""


class ModelBusy(Exception):
    """Too many requests are already waiting for this model."""


class LoadedModel:
    """A ``llama_cpp.Llama`` with the few operations serving needs. Not thread-safe: use it only
    while holding its pool lease."""

    def __init__(self, llama: Any):
        import llama_cpp

        self.llama = llama
        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.chat_template: str | None = llama.metadata.get("tokenizer.chat_template")
        self._formatter: Any = None
        self._support: TemplateSupport | None = None

    def close(self) -> None:
        """Free the weights, context and adapter now (not when garbage collected)."""
        self.llama.close()

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.llama.detokenize([token], special=True)).decode("utf-8", "replace")

    def chat_prompt(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> list[int]:
        """``messages`` (and ``tools``) rendered by the GGUF's own chat template, as tokens.

        The rendering is llama-cpp-python's ``Jinja2ChatFormatter`` (what its
        ``create_chat_completion`` does with ``tokenizer.chat_template``), so a model answers the
        same prompt here as in llama-server with ``--jinja``. Tools and tool calls go through
        ``to_template_messages``, exactly as in training: a template without tool support gets
        tunegate's fallback rendering, the form a tool-trained model learned. The template
        writes its own special tokens; no BOS is added in front.
        """
        try:
            prepared = to_template_messages({"messages": messages, "tools": tools},
                                            self.template_support)
        except ChatFormatError as exc:
            raise TemplateError(str(exc)) from exc
        rendered = self._render(prepared.messages, prepared.tools)
        return list(self.llama.tokenize(rendered.prompt.encode("utf-8"),
                                        add_bos=not rendered.added_special, special=True))

    @property
    def template_support(self) -> TemplateSupport:
        """What the chat template renders natively (probed once, as training probes it)."""
        if self._support is None:
            self._support = probe_support(lambda messages, tools: self._render(messages, tools).prompt)
        return self._support

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> Any:
        import jinja2
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if self.chat_template is None:
            raise TemplateError("the model's GGUF has no chat template (tokenizer.chat_template); "
                                "use /v1/completions with a prompt you format yourself")
        if self._formatter is None:
            self._formatter = Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=self._special_text(self.llama.token_eos()),
                bos_token=self._special_text(self.llama.token_bos()),
            )
        try:
            return self._formatter(messages=messages, tools=tools)
        # Templates reject e.g. non-alternating roles: jinja errors, or ValueError from the
        # formatter's raise_exception().
        except (jinja2.TemplateError, ValueError) as exc:
            raise TemplateError(f"the model's chat template refused these messages: {exc}") from exc

    def text_prompt(self, prompt: str) -> list[int]:
        """A raw completion prompt as tokens (special tokens in the text are honoured, BOS
        added when the model asks for it), as llama-cpp-python's ``create_completion`` does."""
        add_bos = bool(self._lib.llama_vocab_get_add_bos(self._vocab))
        tokens = list(self.llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))
        if not tokens and self.llama.token_bos() >= 0:  # an empty prompt starts from BOS
            tokens = [self.llama.token_bos()]
        return tokens

    def generate(self, prompt: Sequence[int], sampling: Sampling, max_tokens: int,
                 stop: Sequence[str] = ()) -> Generator[Delta, None, None]:
        """Generate up to ``max_tokens`` tokens after ``prompt``.

        Text is yielded as soon as it can no longer turn out to be the start of a stop sequence
        (and only in whole UTF-8 characters); the stop sequence itself is never returned. Ends on
        an end-of-generation token or a stop sequence ("stop") or after ``max_tokens`` ("length").
        """
        llama = self.llama
        seed = RANDOM_SEED if sampling.seed is None else sampling.seed % RANDOM_SEED
        llama.set_seed(seed)
        # Evaluate the whole prompt every time. Reusing a cached prefix would be faster, but the
        # logits of a prompt evaluated in one batch and of one resumed from the cache differ in
        # the last bits, enough to change a sampled (even, on near ties, a greedy) answer: the
        # same request and seed must give the same text.
        llama.reset()
        tokens = llama.generate(
            list(prompt), temp=sampling.temperature, top_p=sampling.top_p, top_k=0, min_p=0.0,
            repeat_penalty=1.0, frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
        )
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        held = ""  # decoded text not yet yielded: it may be the beginning of a stop sequence
        count = 0
        finish = "length"
        cut = None
        try:
            for token in tokens:
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                count += 1
                held += decoder.decode(bytes(llama.detokenize([token])))
                cut = _first_stop(held, stop)
                if cut is not None:
                    held, finish = held[:cut], "stop"
                    break
                ready = len(held) - _stop_prefix_length(held, stop)
                if ready > 0:
                    yield Delta(held[:ready], count)
                    held = held[ready:]
                if count >= max_tokens:
                    break
        finally:
            tokens.close()
        if cut is None:  # bytes of an unfinished character come out as U+FFFD
            held += decoder.decode(b"", final=True)
        yield Delta(held, count, finish)


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    found = [text.find(s) for s in stop if s and s in text]
    return min(found) if found else None


def _stop_prefix_length(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that begins some stop sequence."""
    longest = 0
    for s in stop:
        for size in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:size]):
                longest = size
                break
    return longest


class _Entry:
    def __init__(self, files: ModelFiles):
        self.files = files
        self.lock = threading.Lock()  # held while a request generates (released by any thread)
        self.model: Any = None  # what the loader returned: a LoadedModel
        self.users = 0  # requests holding or waiting for the lock
        self.dropped = False  # no longer in the pool: close when the last user leaves


Loader = Callable[[ModelFiles, int], Any]

# With verbose=False llama-cpp-python silences llama.cpp during a load by pointing the process's
# file descriptors 1 and 2 at /dev/null and back. Two loads overlapping in threads could restore
# them in the wrong order and leave the server mute for good, so loads take turns.
_LOADING = threading.Lock()


def load_llama(files: ModelFiles, n_ctx: int) -> LoadedModel:
    """The default loader: ``llama_cpp.Llama`` on the base GGUF with the adapter, if any."""
    import llama_cpp

    with _LOADING:
        try:
            llama = llama_cpp.Llama(
                model_path=str(files.base),
                lora_path=str(files.adapter) if files.adapter else None,
                n_ctx=n_ctx, verbose=False,
            )
        except ValueError as exc:  # llama-cpp-python reports load failures as ValueError
            raise ModelLoadError(str(exc)) from exc
    return LoadedModel(llama)


class ModelPool:
    """Lazily loaded llama.cpp models, at most ``capacity`` kept, one generation at a time each.

    ``loader`` turns ``ModelFiles`` into a :class:`LoadedModel` (tests pass fakes: the pool only
    calls ``close()`` on what it returns).
    """

    def __init__(self, capacity: int, n_ctx: int, loader: Loader = load_llama,
                 max_queue: int = 8):
        self.capacity = max(1, capacity)
        self.n_ctx = n_ctx
        # Requests per model (running + waiting) before ModelBusy. A waiting request holds one of
        # the server's worker threads; without a bound, one popular model could take them all
        # and stall every other endpoint.
        self.max_queue = max(1, max_queue)
        self._loader = loader
        self._lock = threading.Lock()  # guards _entries and the users/dropped counters
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @contextmanager
    def use(self, files: ModelFiles) -> Iterator[Any]:
        """Exclusive use of the model for ``files``, loading it first if needed.

        Blocks while another request generates with the same model; raises ``ModelBusy`` when
        ``max_queue`` requests already hold or wait for it. The lease may be released from
        another thread than the one that took it (streaming responses do that).
        """
        entry = self._checkout(files)
        try:
            with entry.lock:
                if entry.model is None:
                    entry.model = self._loader(files, self.n_ctx)
                yield entry.model
        except ModelLoadError:
            self._drop(entry)
            raise
        finally:
            self._checkin(entry)

    def evict(self, model_id: str) -> bool:
        """Stop keeping ``model_id``; it is freed now, or when its running request ends."""
        with self._lock:
            entry = self._entries.pop(model_id, None)
            if entry is None:
                return False
            entry.dropped = True
            idle = entry.users == 0
        if idle:
            _close(entry)
        return True

    def loaded(self) -> list[str]:
        """Ids of the models kept now, least recently used first."""
        with self._lock:
            return [key for key, entry in self._entries.items() if entry.model is not None]

    def close(self) -> None:
        """Drop every model (idle ones are freed at once)."""
        for model_id in list(self._entries):
            self.evict(model_id)

    def _checkout(self, files: ModelFiles) -> _Entry:
        idle: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(files.model_id)
            if entry is not None and entry.files != files:  # same id, other files: reload
                idle += self._unlink(files.model_id)
                entry = None
            if entry is None:
                entry = _Entry(files)
                self._entries[files.model_id] = entry
            elif entry.users >= self.max_queue:
                raise ModelBusy(f"{entry.users} requests are already running or waiting for "
                                f"{files.model_id}")
            self._entries.move_to_end(files.model_id)
            entry.users += 1
            while len(self._entries) > self.capacity:
                idle += self._unlink(next(iter(self._entries)))
        for stale in idle:
            _close(stale)
        return entry

    def _unlink(self, model_id: str) -> list[_Entry]:
        """Remove an entry from the pool (caller holds ``_lock``); returns it if it is idle."""
        entry = self._entries.pop(model_id)
        entry.dropped = True
        return [entry] if entry.users == 0 else []

    def _drop(self, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(entry.files.model_id) is entry:
                self._entries.pop(entry.files.model_id)
            entry.dropped = True

    def _checkin(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            idle = entry.dropped and entry.users == 0
        if idle:
            _close(entry)


def _close(entry: _Entry) -> None:
    model, entry.model = entry.model, None
    if model is not None:
        model.close()
