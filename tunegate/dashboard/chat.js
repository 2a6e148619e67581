// The chat panel: one prompt, answered side by side by a fine-tuned model (or one of its
// checkpoints) and by the base model, each streamed (POST /v1/chat/completions, stream=true).

import { errorOf, readEvents, send } from "./api.js";
import { h, modelId } from "./dom.js";

const MAX_TOKENS = 128;

function seconds(since) {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/**
 * Streams `model`'s answer to `prompt` into `output`; resolves when it is complete. `timing`
 * says how long the first words took, measured here (a model's first answer includes starting
 * its process, so the wait is shown rather than guessed).
 */
async function streamAnswer(model, prompt, output, timing, signal) {
  output.textContent = "";
  output.classList.add("waiting");
  output.dataset.state = "waiting";
  timing.textContent = "";
  const started = performance.now();
  let firstWords = null;
  try {
    const response = await send("/chat/completions", {
      method: "POST", signal, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model, stream: true, temperature: 0, max_tokens: MAX_TOKENS,
        messages: [{ role: "user", content: prompt }],
      }),
    });
    if (!response.ok) throw await errorOf(response);
    await readEvents(response, ({ data }) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      output.classList.remove("waiting");
      const text = chunk.choices?.[0]?.delta?.content || "";
      if (text && firstWords === null) firstWords = seconds(started);
      output.textContent += text;
    });
    output.dataset.state = "done";
    timing.textContent = `first words after ${firstWords ?? seconds(started)}, `
      + `whole answer after ${seconds(started)}`;
  } catch (error) {
    if (signal.aborted) return;
    output.dataset.state = "error";
    output.append(h("span", { class: "error-text" }, `\n${error.message}`));
  } finally {
    output.classList.remove("waiting");
  }
}

/**
 * The panel for a job whose base model is `baseModel`. setModels([{id, label}]) lists what can
 * be tried (the fine-tuned model, its checkpoints); select(id) picks one.
 */
export function chatPanel(baseModel, signal) {
  const picker = h("select", { name: "chat-model", "aria-label": "Model to try" });
  const prompt = h("textarea", { name: "prompt", rows: 3, placeholder: "Ask something…", required: true });
  const ask = h("button", { type: "submit", disabled: true }, "Send to both");
  const tunedTitle = h("h3", {}, "fine-tuned");
  const tunedAnswer = h("pre", { class: "answer", dataset: { role: "tuned" } });
  const baseAnswer = h("pre", { class: "answer", dataset: { role: "base" } });
  const tunedTiming = h("small", { class: "muted timing", dataset: { role: "tuned" } });
  const baseTiming = h("small", { class: "muted timing", dataset: { role: "base" } });
  const note = h("p", { class: "muted" },
    "Answers use temperature 0. A model's first answer waits for the server to start its "
    + "llama.cpp process, and a fine-tuned model's first also for merging its adapter into the "
    + "base weights: from seconds to a minute on a small CPU (each answer's time is shown "
    + "under it). Later answers start at once.");
  const form = h("form", { class: "chat-form" }, picker, prompt, h("div", { class: "actions" }, ask));
  const element = h("section", { class: "card chat" }, h("h2", {}, "Try it"), form,
    h("div", { class: "answers" },
      h("div", {}, tunedTitle, tunedAnswer, tunedTiming),
      h("div", {}, h("h3", {}, `base: ${baseModel}`), baseAnswer, baseTiming)),
    note);
  let running = null;
  let picked = false; // the user chose a model: keep it when the list grows
  picker.addEventListener("change", () => {
    picked = true;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!picker.value || !prompt.value.trim()) return;
    running?.abort();
    running = new AbortController();
    const both = AbortSignal.any([running.signal, signal]);
    tunedTitle.replaceChildren(modelId(picker.value));
    ask.disabled = true;
    await Promise.all([streamAnswer(picker.value, prompt.value, tunedAnswer, tunedTiming, both),
                       streamAnswer(baseModel, prompt.value, baseAnswer, baseTiming, both)]);
    ask.disabled = false;
  });
  return {
    element,
    setModels(models) {
      const chosen = picker.value;
      picker.replaceChildren(...models.map((m) => h("option", { value: m.id }, m.label)));
      // Otherwise the first (the final model once there is one) is shown.
      if (picked && models.some((m) => m.id === chosen)) picker.value = chosen;
      ask.disabled = models.length === 0;
    },
    select(id) {
      picker.value = id;
      picked = true;
      prompt.focus();
    },
  };
}
