// The "Evaluate this model" card of a succeeded job's page: a run of the job's fine-tuned model
// on an eval (the same items and prompts as the eval's newest completions run), or, from the
// job's validation file, a new eval with runs of the model and its base (what
// `tunegate eval --job` does). Either way the eval's page opens, the new run(s) on it.

import { errorOf, request, send } from "./api.js";
import { errorBox, h } from "./dom.js";
import { DEFAULT_CRITERION, ITEM_SCHEMA, completionsSource, validationItems } from "./validation.js";

const VALIDATION = "validation"; // the choice that makes a new eval of the validation file
const RUNS_SEARCHED = 100;

export function evaluatePanel(job, signal) {
  const choice = h("select", { name: "eval-choice", "aria-label": "Eval" },
    h("option", { value: "" }, "loading…"));
  const submit = h("button", { type: "submit", class: "evaluate", disabled: true }, "Evaluate");
  const status = h("div", { class: "evaluate-status", "aria-live": "polite" });
  const form = h("form", { class: "evaluate-form" }, choice, submit);
  const element = h("section", { class: "card evaluate-card" }, h("h2", {}, "Evaluate this model"),
    h("p", { class: "muted" }, "Grade ", h("code", {}, job.fine_tuned_model),
      " on an eval: the items and prompts of that eval's newest run that generated answers. Or on ",
      "this job's validation file: each example's prompt answered by this model and by its base, ",
      "compared with the example's answer (ROUGE-L ≥ 0.6)."),
    form, status);
  const say = (text) => status.replaceChildren(h("p", { class: "muted" }, text));
  loadChoices(job, choice, submit, status, signal);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const evalId = choice.value === VALIDATION
        ? await evaluateOnValidation(job, say, signal)
        : await evaluateOnEval(job, choice.value, say, signal);
      location.hash = `#/evals/${evalId}`;
    } catch (error) {
      if (!signal.aborted) status.replaceChildren(errorBox(error.message));
    } finally {
      submit.disabled = false;
    }
  });
  return element;
}

async function loadChoices(job, choice, submit, status, signal) {
  const options = [];
  if (job.validation_file) {
    options.push(h("option", { value: VALIDATION },
      `the validation file ${job.validation_file} (a new eval: this model and its base)`));
  }
  try {
    const page = await request("/evals?limit=100&order=desc", { signal });
    options.push(...page.data.map((evaluation) => h("option", { value: evaluation.id },
      `${evaluation.name || "(unnamed)"} (${evaluation.id})`)));
  } catch (error) {
    if (signal.aborted) return;
    status.replaceChildren(errorBox(`Could not list the evals: ${error.message}`));
  }
  if (!options.length) options.push(h("option", { value: "" }, "no eval yet, and no validation file"));
  choice.replaceChildren(...options);
  submit.disabled = !choice.value;
}

/** A run of the job's model with the data source of the eval's newest completions run. */
async function evaluateOnEval(job, evalId, say, signal) {
  say("Finding the eval's items…");
  const runs = await request(`/evals/${evalId}/runs?limit=${RUNS_SEARCHED}&order=desc`, { signal });
  const model = runs.data.find((run) => run.data_source.type === "completions");
  if (!model) {
    throw new Error("This eval has no run that generated answers (a completions run) to take "
      + "its items and prompts from: start one with the API first.");
  }
  const { type, source, input_messages, sampling_params } = model.data_source;
  const dataSource = { type, model: job.fine_tuned_model, source, input_messages };
  if (sampling_params) dataSource.sampling_params = sampling_params;
  say("Starting the run…");
  await request(`/evals/${evalId}/runs`, { method: "POST", signal,
    json: { name: job.fine_tuned_model, data_source: dataSource } });
  return evalId;
}

/** A new eval of the validation file's items, run on the fine-tuned model and its base. */
async function evaluateOnValidation(job, say, signal) {
  say(`Reading ${job.validation_file}…`);
  const response = await send(`/files/${job.validation_file}/content`, { signal });
  if (!response.ok) throw await errorOf(response);
  const items = validationItems(await response.text());
  if (!items.length) {
    throw new Error(`${job.validation_file} has no example ending in an assistant answer to compare with.`);
  }
  say(`Uploading ${items.length} items…`);
  const rows = items.map((item) => `${JSON.stringify({ item })}\n`).join("");
  const form = new FormData();
  form.append("purpose", "evals");
  form.append("file", new Blob([rows], { type: "application/jsonl" }),
              `${job.id}-validation-items.jsonl`);
  const file = await request("/files", { method: "POST", form, signal });
  say("Creating the eval…");
  const evaluation = await request("/evals", { method: "POST", signal, json: {
    name: `${job.id} validation`,
    metadata: { fine_tuning_job: job.id, validation_file: job.validation_file },
    data_source_config: { type: "custom", item_schema: ITEM_SCHEMA },
    testing_criteria: [DEFAULT_CRITERION],
  } });
  say("Starting the runs…");
  for (const model of [job.fine_tuned_model, job.model]) {
    await request(`/evals/${evaluation.id}/runs`, { method: "POST", signal,
      json: { name: model, data_source: completionsSource(model, file.id) } });
  }
  return evaluation.id;
}
