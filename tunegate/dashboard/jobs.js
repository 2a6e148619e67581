// The front page: a form that uploads a JSONL file and starts a job, and the jobs list,
// newest first, refreshed every few seconds.

import { request } from "./api.js";
import { TERMINAL, errorBox, h, statusBadge, when } from "./dom.js";

const REFRESH_MS = 3000;
const LIST_LIMIT = 50;
const COLUMNS = ["Status", "Base model", "Suffix", "Created", "Progress", "Job"];

export function jobsView(signal) {
  const rows = h("tbody");
  const note = h("p", { class: "muted" }, "Loading jobs…");
  const view = h("div", { class: "jobs-view" },
    h("section", { class: "card" }, h("h2", {}, "Start a fine-tuning job"), createForm()),
    h("section", { class: "card" }, h("h2", {}, "Jobs"), note,
      h("table", { class: "jobs" },
        h("thead", {}, h("tr", {}, COLUMNS.map((name) => h("th", {}, name)))), rows)));
  refreshJobs(rows, note, signal);
  return view;
}

async function refreshJobs(rows, note, signal) {
  const progress = new Map(); // job id -> "step/total"
  while (!signal.aborted) {
    try {
      const page = await request(`/fine_tuning/jobs?limit=${LIST_LIMIT}`, { signal });
      const jobs = [...page.data].sort((a, b) => b.created_at - a.created_at);
      await Promise.all(jobs.filter((job) => job.status === "running")
        .map(async (job) => progress.set(job.id, await latestProgress(job.id, signal))));
      rows.replaceChildren(...jobs.map((job) => jobRow(job, progress.get(job.id))));
      note.textContent = jobs.length ? "" : "No jobs yet: start one above.";
    } catch (error) {
      if (signal.aborted) return;
      note.replaceChildren(errorBox(`Could not list jobs: ${error.message}`));
    }
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
  }
}

/** {step, total} of the job's newest metrics event, or null before the first step. */
async function latestProgress(jobId, signal) {
  const page = await request(`/fine_tuning/jobs/${jobId}/events?limit=20`, { signal });
  const metrics = page.data.find((event) => event.type === "metrics" && event.data);
  return metrics ? { step: metrics.data.step, total: metrics.data.total_steps } : null;
}

function progressCell(job, progress) {
  if (job.status === "succeeded") return h("progress", { value: 1, max: 1 });
  if (job.status === "failed") return h("span", { class: "error-text" }, job.error?.message || "failed");
  if (!progress || TERMINAL.has(job.status)) return "–";
  // Every step done while still running: the model is being saved and exported, not trained.
  const after = progress.step >= progress.total ? " · finishing" : "";
  return h("span", {}, h("progress", { value: progress.step, max: progress.total }),
           ` ${progress.step}/${progress.total}${after}`);
}

function jobRow(job, progress) {
  const link = h("a", { href: `#/jobs/${job.id}` }, job.id);
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
    h("td", {}, statusBadge(job.status)),
    h("td", {}, job.model),
    h("td", {}, job.user_provided_suffix || "–"),
    h("td", {}, when(job.created_at)),
    h("td", { class: "progress-cell" }, progressCell(job, progress)),
    h("td", {}, link));
}

function field(label, control, hint = null) {
  return h("label", { class: "field" }, h("span", {}, label), control,
           hint && h("small", { class: "muted" }, hint));
}

function createForm() {
  const training = h("input", { type: "file", name: "training", accept: ".jsonl,.json,.txt", required: true });
  const validation = h("input", { type: "file", name: "validation", accept: ".jsonl,.json,.txt" });
  const model = h("select", { name: "model", required: true }, h("option", { value: "" }, "loading…"));
  const method = h("select", { name: "method" },
    h("option", { value: "supervised" }, "supervised (chat or prompt/completion examples)"),
    h("option", { value: "dpo" }, "dpo (preference pairs)"));
  const suffix = h("input", { type: "text", name: "suffix", maxlength: 64, placeholder: "optional" });
  const epochs = h("input", { type: "number", name: "epochs", min: 1, max: 50, placeholder: "auto" });
  const submit = h("button", { type: "submit" }, "Upload and start");
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const form = h("form", { class: "create-job" },
    field("Training file (JSONL)", training),
    field("Validation file", validation, "optional"),
    field("Base model", model), field("Method", method),
    field("Suffix", suffix, "part of the fine-tuned model's name"),
    field("Epochs", epochs, "empty: chosen from the file's size"),
    h("div", { class: "actions" }, submit), status);
  loadBaseModels(model, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const job = await startJob({
        training: training.files[0], validation: validation.files[0], model: model.value,
        method: method.value, suffix: suffix.value.trim(), epochs: epochs.value,
      }, (text) => status.replaceChildren(h("p", { class: "muted" }, text)));
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      status.replaceChildren(errorBox(error.message));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

async function loadBaseModels(select, status) {
  try {
    const models = (await request("/models")).data.filter((m) => !m.id.startsWith("ft:"));
    select.replaceChildren(...models.map((m) => h("option", { value: m.id }, m.id)));
  } catch (error) {
    status.replaceChildren(errorBox(`Could not list the base models: ${error.message}`));
  }
}

async function upload(file, what) {
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  try {
    return await request("/files", { method: "POST", form });
  } catch (error) {
    error.message = `${what} ${file.name}: ${error.message}`;
    throw error;
  }
}

async function startJob(choice, say) {
  say(`Uploading ${choice.training.name}…`);
  const training = await upload(choice.training, "Training file");
  let validation = null;
  if (choice.validation) {
    say(`Uploading ${choice.validation.name}…`);
    validation = await upload(choice.validation, "Validation file");
  }
  say("Creating the job…");
  const hyperparameters = choice.epochs ? { n_epochs: Number(choice.epochs) } : {};
  const body = {
    model: choice.model, training_file: training.id,
    method: { type: choice.method, [choice.method]: { hyperparameters } },
  };
  if (validation) body.validation_file = validation.id;
  if (choice.suffix) body.suffix = choice.suffix;
  return request("/fine_tuning/jobs", { method: "POST", json: body });
}
