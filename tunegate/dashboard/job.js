// A job's page: status and controls, progress with ETA (or the stage once every step is done),
// the live loss (or, for reinforcement, reward) chart with the latest sampled answers, resolved
// hyperparameters, checkpoints with their metrics, events, the chat panel, and once the job has
// succeeded, "Evaluate this model" (evaluate.js).

import { request } from "./api.js";
import { createLossChart, drawLossChart } from "./chart.js";
import { chatPanel } from "./chat.js";
import { TERMINAL, duration, errorBox, h, modelId, number, statusBadge, when } from "./dom.js";
import { evaluatePanel } from "./evaluate.js";
import { followEvents } from "./events.js";

const REFRESH_MS = 3000;
const EVENTS_SHOWN = 200;
const ACTIONS = [
  { name: "pause", label: "Pause", allowed: ["running", "queued"] },
  { name: "resume", label: "Resume", allowed: ["paused"] },
  // Styled apart from the others (style.css): a cancelled job cannot be resumed.
  { name: "cancel", label: "Cancel job", allowed: ["validating_files", "queued", "running", "paused"] },
];
// What the worker does once the last step is done, by the event that says it has begun (the
// worker's "Exporting the adapter and its checkpoints to GGUF"); before any of them, the trainer
// saves the final adapter and its results.
const STAGES = [
  { name: "exporting", pattern: /^Exporting\b/, text: "exporting the model to GGUF…" },
];
// The worker's memory plan event (tunegate.worker.memory_plan.describe): its memory part.
const MEMORY_ESTIMATE = /^Memory estimate: (.*?)(?:\. Duration estimate|$)/;
const SAVING = { name: "saving", text: "all steps done: saving the model…" };
// Why a job that ended has no steps or no checkpoints, by its status ("yet" would promise some).
const ENDED_BEFORE = { failed: "the job failed before", cancelled: "the job was cancelled before" };

export function jobView(jobId, signal) {
  const page = new JobPage(jobId, signal);
  page.start();
  return page.element;
}

class JobPage {
  constructor(jobId, signal) {
    this.jobId = jobId;
    this.signal = signal;
    this.job = null;
    this.points = new Map(); // step -> {step, train, valid, at}
    this.totalSteps = null;
    this.latest = null; // the newest metrics event's data
    this.stage = null; // one of STAGES, once its event is seen
    this.events = [];
    this.drawPending = false;
    this.build();
  }

  build() {
    this.title = h("h2", {}, this.jobId);
    this.status = h("span");
    this.stageText = h("span", { class: "stage" });
    this.summary = h("dl", { class: "summary" });
    this.durationText = h("span");
    // The worker's plan (an event from queued on, again at the start): the newest one shown.
    this.memoryText = h("span", { class: "memory-estimate" }, "–");
    this.failure = h("div");
    this.actionNote = h("div");
    this.buttons = ACTIONS.map((action) => h("button", {
      type: "button", class: `action action-${action.name}`, disabled: true,
      title: action.name === "cancel" ? "Stop the job for good (it cannot be resumed)" : null,
      onclick: () => this.act(action.name),
    }, action.label));
    this.progress = h("progress", { value: 0, max: 1, class: "job-progress" });
    this.progressText = h("span", { class: "progress-text" }, "waiting for the first step");
    this.chart = createLossChart();
    this.chartTitle = h("h2", {}, "Loss");
    // A reinforcement job's latest sampled answers, with their rewards.
    this.sampleRows = h("tbody");
    this.samplesCard = h("section", { class: "card samples", hidden: true },
      h("h2", {}, "Sampled answers"),
      h("table", { class: "samples" },
        h("thead", {}, h("tr", {}, ["Step", "Line", "Reward", "Answer"]
          .map((name) => h("th", {}, name)))), this.sampleRows));
    this.checkpointHeads = ["Train loss", "Valid loss"].map((name) => h("th", {}, name));
    this.hyperparameters = h("tbody");
    this.checkpoints = h("tbody");
    this.eventRows = h("tbody");
    this.liveNote = h("small", { class: "muted" });
    this.chat = null;
    this.chatSlot = h("div");
    this.evaluateSlot = h("div");
    this.element = h("div", { class: "job-view" },
      h("p", {}, h("a", { href: "#/" }, "← all jobs")),
      h("section", { class: "card" },
        h("div", { class: "job-head" }, this.title, this.status, this.stageText,
          h("div", { class: "buttons" }, this.buttons)),
        this.actionNote, this.failure, this.summary,
        h("div", { class: "progress-row" }, this.progress, this.progressText)),
      h("section", { class: "card" }, this.chartTitle, this.chart, this.liveNote),
      this.samplesCard,
      h("div", { class: "columns" },
        h("section", { class: "card" }, h("h2", {}, "Hyperparameters"),
          h("table", { class: "hyperparameters" }, this.hyperparameters)),
        h("section", { class: "card" }, h("h2", {}, "Checkpoints"),
          h("table", { class: "checkpoints" },
            h("thead", {}, h("tr", {}, h("th", {}, "Step"), this.checkpointHeads,
              h("th", {}, "Model"), h("th", {}))), this.checkpoints))),
      this.chatSlot,
      this.evaluateSlot,
      h("section", { class: "card" }, h("h2", {}, "Events"),
        h("table", { class: "events" }, this.eventRows)));
    drawLossChart(this.chart, [], null, { showValid: false, emptyText: "loading…" });
  }

  async start() {
    try {
      await this.loadJob();
    } catch (error) {
      this.failure.replaceChildren(errorBox(`Could not load the job: ${error.message}`));
      return;
    }
    this.followJob();
    const how = await followEvents(this.jobId, {
      onEvent: (event) => this.addEvent(event),
      isFinished: async () => TERMINAL.has((await this.loadJob()).status),
      signal: this.signal,
    });
    this.liveNote.textContent = `events read by ${how === "stream" ? "the event stream" : "polling"}`;
  }

  async followJob() {
    while (!this.signal.aborted && !TERMINAL.has(this.job.status)) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
      this.showDuration();
      try {
        await this.loadJob();
      } catch {
        // a passing failure (a restart): the next round tries again
      }
    }
  }

  async loadJob() {
    const job = await request(`/fine_tuning/jobs/${this.jobId}`, { signal: this.signal });
    const changed = JSON.stringify(job) !== JSON.stringify(this.job);
    this.job = job;
    if (changed) {
      this.showJob();
      await this.loadCheckpoints();
    }
    return job;
  }

  showJob() {
    const job = this.job;
    this.status.replaceChildren(statusBadge(job.status));
    this.element.dataset.status = job.status;
    ACTIONS.forEach((action, index) => {
      this.buttons[index].disabled = !action.allowed.includes(job.status);
    });
    this.failure.replaceChildren(job.error
      ? errorBox(`Failed (${job.error.code}): ${job.error.message}`) : "");
    const facts = [
      ["Base model", job.model],
      ["Fine-tuned model", job.fine_tuned_model ? modelId(job.fine_tuned_model) : "–"],
      ["Method", job.method.type], ["Suffix", job.user_provided_suffix || "–"],
      ["Created", when(job.created_at)], ["Finished", when(job.finished_at)],
      ["Duration", this.durationText], ["Memory estimate", this.memoryText],
      ["Trained tokens", job.trained_tokens ?? "–"], ["Training file", job.training_file],
      ["Validation file", job.validation_file || "none"],
    ];
    if (isReinforcement(job) && job.validation_file) {
      // The job's eval (its validation runs), named as the worker names it.
      facts.push(["Eval", `eval_${job.id.replace(/^ftjob-/, "")}`]);
    }
    const figure = isReinforcement(job) ? "reward" : "loss";
    this.chartTitle.textContent = figure === "reward" ? "Reward" : "Loss";
    this.checkpointHeads[0].textContent = `Train ${figure}`;
    this.checkpointHeads[1].textContent = `Valid ${figure}`;
    this.summary.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const resolved = { ...job.method[job.method.type]?.hyperparameters, seed: job.seed };
    this.hyperparameters.replaceChildren(...Object.entries(resolved).map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "number" ? String(v) : v))));
    this.showDuration();
    this.showProgress();
    this.scheduleDraw(); // what an empty chart says, and the validation series, follow the job
    this.ensureChat();
    if (job.status === "succeeded" && job.fine_tuned_model && !this.evaluateSlot.childElementCount) {
      this.evaluateSlot.replaceChildren(evaluatePanel(job, this.signal));
    }
  }

  /** From creation to the end, or to now while the job is not finished. */
  showDuration() {
    const job = this.job;
    const end = job.finished_at || Date.now() / 1000;
    this.durationText.textContent = job.finished_at
      ? duration(end - job.created_at) : `${duration(end - job.created_at)} so far`;
  }

  /** What the worker is doing now: "training", a stage after the last step, or null. */
  currentStage() {
    if (this.job.status !== "running" || !this.latest) return null;
    if (this.latest.step < this.latest.total_steps) return { name: "training" };
    return this.stage || SAVING;
  }

  showProgress() {
    const job = this.job;
    if (job.status === "succeeded") {
      this.progress.max = 1;
      this.progress.value = 1;
    } else if (this.latest) {
      this.progress.max = this.latest.total_steps;
      this.progress.value = this.latest.step;
    }
    const parts = [];
    if (this.latest) parts.push(`step ${this.latest.step}/${this.latest.total_steps}`);
    if (this.latest?.tokens_per_second != null) {
      parts.push(`${Math.round(this.latest.tokens_per_second)} tokens/s`);
    }
    if (this.latest?.learning_rate != null) {
      parts.push(`lr ${Number(this.latest.learning_rate).toExponential(2)}`);
    }
    const stage = this.currentStage();
    this.element.dataset.stage = stage?.name || "";
    this.stageText.textContent = stage?.text || "";
    const eta = this.eta();
    // Past the last step the head says what the job is doing (this.stageText), not an ETA.
    if (eta && !stage?.text) parts.push(`ETA ${new Date(eta * 1000).toLocaleTimeString()} (in ${duration(eta - Date.now() / 1000)})`);
    if (TERMINAL.has(job.status)) parts.push(job.status);
    else if (!this.latest) parts.push(job.status === "running" ? "starting…" : job.status);
    this.progressText.textContent = parts.join(" · ");
  }

  /** When the job should end: the server's estimate (from queued on), else the pace of the
   * steps seen. */
  eta() {
    if (this.job.status !== "running" && this.job.status !== "queued") return null;
    const now = Date.now() / 1000;
    // A time already past says nothing: the job is late, or doing what follows the steps.
    if (this.job.estimated_finish) return this.job.estimated_finish > now ? this.job.estimated_finish : null;
    if (this.job.status !== "running") return null;
    const seen = [...this.points.values()].sort((a, b) => a.step - b.step);
    if (seen.length < 2 || !this.totalSteps) return null;
    const first = seen[0];
    const last = seen[seen.length - 1];
    const pace = (last.at - first.at) / (last.step - first.step);
    const eta = last.at + pace * (this.totalSteps - last.step);
    return pace > 0 && eta > now ? eta : null;
  }

  addEvent(event) {
    if (event.type === "metrics" && event.data) {
      const data = event.data;
      this.points.set(data.step, {
        step: data.step, train: data.train_loss ?? data.train_reward_mean ?? null,
        valid: data.valid_loss ?? data.full_valid_loss ?? data.valid_reward_mean ?? null,
        at: event.created_at,
      });
      if (Array.isArray(data.samples) && data.samples.length
          && (!this.sampledStep || data.step >= this.sampledStep)) {
        this.sampledStep = data.step;
        this.showSamples(data.step, data.samples);
      }
      this.totalSteps = data.total_steps ?? this.totalSteps;
      if (!this.latest || data.step >= this.latest.step) this.latest = data;
      this.scheduleDraw();
    } else {
      const plan = (event.message || "").match(MEMORY_ESTIMATE);
      if (plan) this.memoryText.textContent = plan[1];
      const stage = STAGES.find((candidate) => candidate.pattern.test(event.message || ""));
      if (stage) this.stage = stage;
      if (this.job && !TERMINAL.has(this.job.status)) {
        this.loadJob().catch(() => {}); // a status change or a new checkpoint: show it now
      }
      if (stage && this.job) this.showProgress();
    }
    this.eventRows.prepend(h("tr", { class: `level-${event.level}` },
      h("td", { class: "when" }, when(event.created_at)), h("td", {}, event.level),
      h("td", {}, event.message)));
    while (this.eventRows.children.length > EVENTS_SHOWN) this.eventRows.lastChild.remove();
  }

  /** The newest step's sampled training answers (a reinforcement job's), with their rewards. */
  showSamples(step, samples) {
    this.samplesCard.hidden = false;
    this.sampleRows.replaceChildren(...samples.map((sample) => h("tr", {},
      h("td", {}, step), h("td", {}, sample.line ?? "–"),
      h("td", {}, sample.reward == null ? "grader error" : number(sample.reward)),
      h("td", { class: "sampled-text" }, sample.output_text || ""))));
  }

  scheduleDraw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      const points = [...this.points.values()].sort((a, b) => a.step - b.step);
      drawLossChart(this.chart, points, this.totalSteps, this.chartOptions(points));
      if (this.job) this.showProgress();
    });
  }

  chartOptions(points) {
    const job = this.job;
    if (!job) return { showValid: false, emptyText: "loading…" };
    const hyperparameters = job.method[job.method.type]?.hyperparameters || {};
    const why = ENDED_BEFORE[job.status];
    let emptyText = "no training steps yet";
    if (why) emptyText = `no training steps: ${why} its first step`;
    else if (TERMINAL.has(job.status)) emptyText = "no training steps recorded";
    return {
      // A validation loss needs a validation file; tunegate computes none otherwise.
      showValid: Boolean(job.validation_file) || points.some((p) => p.valid != null),
      epochs: Number.isInteger(hyperparameters.n_epochs) ? hyperparameters.n_epochs : null,
      emptyText,
      figure: isReinforcement(job) ? "reward" : "loss",
    };
  }

  async loadCheckpoints() {
    let page;
    try {
      page = await request(`/fine_tuning/jobs/${this.jobId}/checkpoints?limit=100`,
                           { signal: this.signal });
    } catch {
      return;
    }
    this.checkpointList = page.data;
    this.checkpoints.replaceChildren(...page.data.map((checkpoint) => {
      const m = checkpoint.metrics || {};
      return h("tr", {},
        h("td", {}, checkpoint.step_number),
        h("td", {}, number(m.train_loss ?? m.train_reward_mean)),
        h("td", {}, number(m.valid_loss ?? m.full_valid_loss ?? m.valid_reward_mean)),
        h("td", { class: "model-name" }, modelId(checkpoint.fine_tuned_model_checkpoint)),
        h("td", {}, h("button", {
          type: "button", class: "small",
          onclick: () => this.chat?.select(checkpoint.fine_tuned_model_checkpoint),
        }, "Try")));
    }));
    if (!page.data.length) {
      const status = this.job?.status;
      let text = "None yet: one is saved at the end of each epoch.";
      if (ENDED_BEFORE[status]) text = `None: ${ENDED_BEFORE[status]} the end of its first epoch.`;
      else if (TERMINAL.has(status)) text = "None.";
      this.checkpoints.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, text)));
    }
    this.ensureChat();
  }

  ensureChat() {
    const models = [];
    if (this.job?.fine_tuned_model) {
      models.push({ id: this.job.fine_tuned_model, label: `${this.job.fine_tuned_model} (final)` });
    }
    for (const checkpoint of this.checkpointList || []) {
      const id = checkpoint.fine_tuned_model_checkpoint;
      models.push({ id, label: `${id} (step ${checkpoint.step_number})` });
    }
    if (!models.length) return;
    if (!this.chat) {
      this.chat = chatPanel(this.job.model, this.signal);
      this.chatSlot.replaceChildren(this.chat.element);
    }
    this.chat.setModels(models);
  }

  async act(name) {
    this.actionNote.replaceChildren();
    try {
      await request(`/fine_tuning/jobs/${this.jobId}/${name}`, { method: "POST" });
      await this.loadJob();
    } catch (error) {
      this.actionNote.replaceChildren(errorBox(`${name}: ${error.message}`));
    }
  }
}

/** A reinforcement job draws rewards where the others draw losses. */
function isReinforcement(job) {
  return job?.method?.type === "reinforcement";
}
