// A job's validation file as eval items, read as `tunegate eval --job` reads it
// (tunegate/client/job_eval.py): each example's messages up to its last assistant answer are
// the prompt, that answer's text the reference. The eval made of them and its default criterion.

export const DEFAULT_CRITERION = {
  type: "text_similarity", name: "rouge_l against the validation answer",
  input: "{{ sample.output_text }}", reference: "{{ item.answer }}",
  evaluation_metric: "rouge_l", pass_threshold: 0.6,
};

export const ITEM_SCHEMA = {
  type: "object", properties: { messages: { type: "array" }, answer: { type: "string" } },
  required: ["messages", "answer"],
};

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.filter((part) => part && typeof part.text === "string")
      .map((part) => part.text).join("");
  }
  return "";
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** One training example as {messages, answer}, or null when it has no answer to compare. */
export function exampleItem(example) {
  let messages;
  let answer;
  if (Array.isArray(example.messages)) {
    messages = example.messages.slice(0, -1);
    answer = example.messages.slice(-1);
  } else if (typeof example.prompt === "string") {
    messages = [{ role: "user", content: example.prompt }];
    answer = [{ role: "assistant", content: example.completion }];
  } else if (isObject(example.input)) {
    messages = [...(example.input.messages || [])];
    answer = [...(example.preferred_output || [])].slice(-1);
  } else {
    return null;
  }
  if (!messages.length || !answer.length || !isObject(answer[0])
      || answer[0].role !== "assistant") return null;
  const text = textOf(answer[0].content);
  if (!text.trim()) return null;
  const prompt = messages.filter((m) => isObject(m) && "role" in m)
    .map((m) => ({ role: m.role, content: textOf(m.content) }));
  return { messages: prompt, answer: text };
}

/** The items of a validation file's text (blank lines and unanswerable examples skipped). */
export function validationItems(text) {
  const items = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const example = JSON.parse(line);
    const item = isObject(example) ? exampleItem(example) : null;
    if (item) items.push(item);
  }
  return items;
}

/** A run's data source: each item's own messages, answered at temperature 0. */
export function completionsSource(model, fileId, maxTokens = 256) {
  return {
    type: "completions", model, source: { type: "file_id", id: fileId },
    input_messages: { type: "item_reference", item_reference: "item.messages" },
    sampling_params: { max_completion_tokens: maxTokens, temperature: 0 },
  };
}
