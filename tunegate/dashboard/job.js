// A job's page: status and controls, progress with ETA, the live loss chart, resolved
// hyperparameters, checkpoints with their metrics, events, and the chat panel.

import { request } from "./api.js";
import { createLossChart, drawLossChart } from "./chart.js";
import { chatPanel } from "./chat.js";
import { TERMINAL, duration, errorBox, h, number, statusBadge, when } from "./dom.js";
import { followEvents } from "./events.js";

const REFRESH_MS = 3000;
const EVENTS_SHOWN = 200;
const ACTIONS = [
  { name: "pause", label: "Pause", allowed: ["running", "queued"] },
  { name: "resume", label: "Resume", allowed: ["paused"] },
  { name: "cancel", label: "Cancel", allowed: ["validating_files", "queued", "running", "paused"] },
];

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
    this.events = [];
    this.drawPending = false;
    this.build();
  }

  build() {
    this.title = h("h2", {}, this.jobId);
    this.status = h("span");
    this.summary = h("dl", { class: "summary" });
    this.failure = h("div");
    this.actionNote = h("div");
    this.buttons = ACTIONS.map((action) => h("button", {
      type: "button", class: `action action-${action.name}`, disabled: true,
      onclick: () => this.act(action.name),
    }, action.label));
    this.progress = h("progress", { value: 0, max: 1, class: "job-progress" });
    this.progressText = h("span", { class: "progress-text" }, "waiting for the first step");
    this.chart = createLossChart();
    this.hyperparameters = h("tbody");
    this.checkpoints = h("tbody");
    this.eventRows = h("tbody");
    this.liveNote = h("small", { class: "muted" });
    this.chat = null;
    this.chatSlot = h("div");
    this.element = h("div", { class: "job-view" },
      h("p", {}, h("a", { href: "#/" }, "← all jobs")),
      h("section", { class: "card" },
        h("div", { class: "job-head" }, this.title, this.status,
          h("div", { class: "buttons" }, this.buttons)),
        this.actionNote, this.failure, this.summary,
        h("div", { class: "progress-row" }, this.progress, this.progressText)),
      h("section", { class: "card" }, h("h2", {}, "Loss"), this.chart, this.liveNote),
      h("div", { class: "columns" },
        h("section", { class: "card" }, h("h2", {}, "Hyperparameters"),
          h("table", { class: "hyperparameters" }, this.hyperparameters)),
        h("section", { class: "card" }, h("h2", {}, "Checkpoints"),
          h("table", { class: "checkpoints" },
            h("thead", {}, h("tr", {}, ["Step", "Train loss", "Valid loss", "Model", ""]
              .map((name) => h("th", {}, name)))), this.checkpoints))),
      this.chatSlot,
      h("section", { class: "card" }, h("h2", {}, "Events"),
        h("table", { class: "events" }, this.eventRows)));
    drawLossChart(this.chart, [], null);
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
      ["Base model", job.model], ["Fine-tuned model", job.fine_tuned_model || "–"],
      ["Method", job.method.type], ["Suffix", job.user_provided_suffix || "–"],
      ["Created", when(job.created_at)], ["Finished", when(job.finished_at)],
      ["Trained tokens", job.trained_tokens ?? "–"], ["Training file", job.training_file],
      ["Validation file", job.validation_file || "–"],
    ];
    this.summary.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const resolved = { ...job.method[job.method.type]?.hyperparameters, seed: job.seed };
    this.hyperparameters.replaceChildren(...Object.entries(resolved).map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", {}, typeof v === "number" ? String(v) : v))));
    this.showProgress();
    this.ensureChat();
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
    const eta = this.eta();
    if (eta) parts.push(`ETA ${new Date(eta * 1000).toLocaleTimeString()} (in ${duration(eta - Date.now() / 1000)})`);
    if (TERMINAL.has(job.status)) parts.push(job.status);
    else if (!this.latest) parts.push(job.status === "running" ? "starting…" : job.status);
    this.progressText.textContent = parts.join(" · ");
  }

  /** When the job should end: the server's estimate, else the pace of the steps seen. */
  eta() {
    if (this.job.status !== "running") return null;
    if (this.job.estimated_finish) return this.job.estimated_finish;
    const seen = [...this.points.values()].sort((a, b) => a.step - b.step);
    if (seen.length < 2 || !this.totalSteps) return null;
    const first = seen[0];
    const last = seen[seen.length - 1];
    const pace = (last.at - first.at) / (last.step - first.step);
    return pace > 0 ? last.at + pace * (this.totalSteps - last.step) : null;
  }

  addEvent(event) {
    if (event.type === "metrics" && event.data) {
      const data = event.data;
      this.points.set(data.step, {
        step: data.step, train: data.train_loss ?? null,
        valid: data.valid_loss ?? data.full_valid_loss ?? null, at: event.created_at,
      });
      this.totalSteps = data.total_steps ?? this.totalSteps;
      if (!this.latest || data.step >= this.latest.step) this.latest = data;
      this.scheduleDraw();
    } else if (this.job && !TERMINAL.has(this.job.status)) {
      this.loadJob().catch(() => {}); // a status change or a new checkpoint: show it now
    }
    this.eventRows.prepend(h("tr", { class: `level-${event.level}` },
      h("td", { class: "when" }, when(event.created_at)), h("td", {}, event.level),
      h("td", {}, event.message)));
    while (this.eventRows.children.length > EVENTS_SHOWN) this.eventRows.lastChild.remove();
  }

  scheduleDraw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      const points = [...this.points.values()].sort((a, b) => a.step - b.step);
      drawLossChart(this.chart, points, this.totalSteps);
      if (this.job) this.showProgress();
    });
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
        h("td", {}, checkpoint.step_number), h("td", {}, number(m.train_loss)),
        h("td", {}, number(m.valid_loss ?? m.full_valid_loss)),
        h("td", { class: "model-name" }, checkpoint.fine_tuned_model_checkpoint),
        h("td", {}, h("button", {
          type: "button", class: "small",
          onclick: () => this.chat?.select(checkpoint.fine_tuned_model_checkpoint),
        }, "Try")));
    }));
    if (!page.data.length) {
      this.checkpoints.append(h("tr", {}, h("td", { colspan: 5, class: "muted" },
        "None yet: one is saved at the end of each epoch.")));
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
