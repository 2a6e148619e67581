// The chat panel: one prompt, answered side by side by a fine-tuned model (or one of its
// checkpoints) and by the base model, each streamed (POST /v1/chat/completions, stream=true).

import { errorOf, readEvents, send } from "./api.js";
import { h } from "./dom.js";

const MAX_TOKENS = 128;

/** Streams `model`'s answer to `prompt` into `output`; resolves when it is complete. */
async function streamAnswer(model, prompt, output, signal) {
  output.textContent = "";
  output.classList.add("waiting");
  output.dataset.state = "waiting";
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
      output.textContent += chunk.choices?.[0]?.delta?.content || "";
    });
    output.dataset.state = "done";
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
  const note = h("p", { class: "muted" },
    "Answers use temperature 0. A fine-tuned model's first answer takes a few seconds more: "
    + "the server prepares it on first use.");
  const form = h("form", { class: "chat-form" }, picker, prompt, h("div", { class: "actions" }, ask));
  const element = h("section", { class: "card chat" }, h("h2", {}, "Try it"), form,
    h("div", { class: "answers" },
      h("div", {}, tunedTitle, tunedAnswer),
      h("div", {}, h("h3", {}, `base: ${baseModel}`), baseAnswer)),
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
    tunedTitle.textContent = picker.value;
    ask.disabled = true;
    await Promise.all([streamAnswer(picker.value, prompt.value, tunedAnswer, both),
                       streamAnswer(baseModel, prompt.value, baseAnswer, both)]);
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
