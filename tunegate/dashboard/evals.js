// The Evals views: #/evals the evals; #/evals/<id> one eval, its runs side by side (a base and
// its fine-tune on the same eval: a column each) with the pass rate of every criterion;
// #/evals/<id>/runs/<run> one run (its report_url), its output items a page at a time.

import { request } from "./api.js";
import { errorBox, h, modelId, statusBadge, when } from "./dom.js";

const REFRESH_MS = 3000;
const EVALS_LISTED = 100;
const RUNS_COMPARED = 8; // the newest runs, side by side
export const ITEMS_PER_PAGE = 20;
const RUN_FINISHED = new Set(["completed", "failed", "canceled"]);

/** "75% (3/4)", or "–" before any item of the criterion is graded. */
function rate(passed, failed) {
  const total = passed + failed;
  return total ? `${Math.round((100 * passed) / total)}% (${passed}/${total})` : "–";
}

/** Every criterion's {id, name, type} in the eval's order. */
function criteriaOf(evaluation) {
  return evaluation.testing_criteria.map((criterion) => ({
    id: criterion.id, name: criterion.name, type: criterion.type }));
}

function criterionDescription(criterion) {
  switch (criterion.type) {
    case "string_check": return `${criterion.operation} ${criterion.reference}`;
    case "text_similarity": return `${criterion.evaluation_metric} ≥ ${criterion.pass_threshold}`;
    case "score_model": return `${criterion.model}${criterion.pass_threshold != null ? ` ≥ ${criterion.pass_threshold}` : ""}`;
    case "label_model": return `${criterion.model}: ${criterion.passing_labels.join(", ")}`;
    default: return "";
  }
}

/** Repeats `load` every few seconds while it returns true and the view is shown. */
async function refreshWhile(load, signal) {
  while (!signal.aborted && (await load())) {
    await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
  }
}

// #/evals ---------------------------------------------------------------------------------

export function evalsView(signal) {
  const rows = h("tbody");
  const note = h("p", { class: "muted" }, "Loading evals…");
  const view = h("div", { class: "evals-view" },
    h("section", { class: "card" }, h("h2", {}, "Evals"), note,
      h("table", { class: "evals" },
        h("thead", {}, h("tr", {}, ["Name", "Criteria", "Created", "Eval"]
          .map((name) => h("th", {}, name)))), rows),
      h("p", { class: "muted" }, "Create evals with the API (client.evals.create) or ",
        h("code", {}, "tunegate eval --job"), "; a succeeded job's page evaluates its model.")));
  (async () => {
    try {
      const page = await request(`/evals?limit=${EVALS_LISTED}&order=desc`, { signal });
      rows.replaceChildren(...page.data.map((evaluation) => h("tr", {
        dataset: { evalId: evaluation.id } },
        h("td", {}, h("a", { href: `#/evals/${evaluation.id}` }, evaluation.name || "(unnamed)")),
        h("td", {}, evaluation.testing_criteria.map((c) => c.name).join(", ")),
        h("td", {}, when(evaluation.created_at)),
        h("td", { class: "model-name" }, evaluation.id))));
      note.textContent = page.data.length ? "" : "No evals yet.";
    } catch (error) {
      if (!signal.aborted) note.replaceChildren(errorBox(`Could not list evals: ${error.message}`));
    }
  })();
  return view;
}

// #/evals/<id> ----------------------------------------------------------------------------

export function evalView(evalId, signal) {
  const head = h("div", { class: "eval-head" }, h("h2", {}, evalId));
  const criteriaList = h("ul", { class: "criteria" });
  const compare = h("table", { class: "runs-compare" });
  const note = h("p", { class: "muted" }, "Loading…");
  const view = h("div", { class: "eval-view" },
    h("p", {}, h("a", { href: "#/evals" }, "← all evals")),
    h("section", { class: "card" }, head, criteriaList),
    h("section", { class: "card" }, h("h2", {}, "Runs side by side"), note,
      h("div", { class: "scroll" }, compare)));
  let evaluation = null;
  refreshWhile(async () => {
    try {
      evaluation ??= await request(`/evals/${evalId}`, { signal });
      head.replaceChildren(h("h2", {}, evaluation.name || evalId),
        h("span", { class: "muted model-name" }, evalId));
      criteriaList.replaceChildren(...evaluation.testing_criteria.map((c) => h("li", {},
        h("strong", {}, c.name), ` ${c.type}`,
        h("span", { class: "muted" }, ` ${criterionDescription(c)}`))));
      const page = await request(`/evals/${evalId}/runs?limit=${RUNS_COMPARED}&order=desc`,
                                 { signal });
      const runs = [...page.data].reverse(); // oldest on the left
      compare.replaceChildren(...compareRows(criteriaOf(evaluation), runs));
      note.textContent = runs.length
        ? (page.has_more ? `The newest ${runs.length} runs.` : "")
        : "No runs yet: evaluate a model from its job's page, or with client.evals.runs.create.";
      view.dataset.runs = String(runs.length);
      return runs.some((run) => !RUN_FINISHED.has(run.status));
    } catch (error) {
      if (signal.aborted) return false;
      note.replaceChildren(errorBox(`Could not load the eval: ${error.message}`));
      return !evaluation; // a passing failure is retried; a missing eval is not
    }
  }, signal);
  return view;
}

/** The comparison table: a column per run, a row per fact and per criterion. */
function compareRows(criteria, runs) {
  const cell = (run, content, attributes = {}) =>
    h("td", { dataset: { runId: run.id }, ...attributes }, content);
  const header = h("tr", {}, h("th", {}, ""), runs.map((run) => h("th", {
    dataset: { runId: run.id } }, h("a", { href: `#/evals/${run.eval_id}/runs/${run.id}` },
    run.name || run.id))));
  const facts = [
    ["Model", (run) => h("span", { class: "model-name" }, modelId(run.model))],
    ["Status", (run) => statusBadge(run.status)],
    ["Items", (run) => {
      const c = run.result_counts;
      return `${c.total} (${c.passed} passed, ${c.failed} failed, ${c.errored} errored)`;
    }],
    ["Created", (run) => when(run.created_at)],
  ].map(([label, show]) => h("tr", { class: "fact" }, h("th", {}, label),
    runs.map((run) => cell(run, show(run)))));
  const byCriterion = criteria.map((criterion) => h("tr", {
    class: "criterion", dataset: { criterion: criterion.id } },
    h("th", {}, criterion.name, h("small", { class: "muted" }, ` ${criterion.type}`)),
    runs.map((run) => {
      const found = run.per_testing_criteria_results
        .find((entry) => entry.testing_criteria === criterion.id);
      return cell(run, found ? rate(found.passed, found.failed) : "–", { class: "rate" });
    })));
  const all = h("tr", { class: "criterion all" }, h("th", {}, "All criteria"),
    runs.map((run) => cell(run, rate(run.result_counts.passed,
                                     run.result_counts.failed + run.result_counts.errored),
                           { class: "rate" })));
  return [h("thead", {}, header), h("tbody", {}, facts, byCriterion, all)];
}

// #/evals/<id>/runs/<run> -----------------------------------------------------------------

export function runView(evalId, runId, signal) {
  const page = new RunPage(evalId, runId, signal);
  page.start();
  return page.element;
}

class RunPage {
  constructor(evalId, runId, signal) {
    this.evalId = evalId;
    this.runId = runId;
    this.signal = signal;
    this.criteria = [];
    this.run = null;
    this.cursors = [null]; // the `after` of each page seen; the last is the page shown
    this.build();
  }

  build() {
    this.title = h("h2", {}, this.runId);
    this.status = h("span");
    this.cancel = h("button", { type: "button", class: "action action-cancel", disabled: true,
      title: "Stop grading (what was graded stays)", onclick: () => this.cancelRun() }, "Cancel run");
    this.failure = h("div");
    this.summary = h("dl", { class: "summary" });
    this.rates = h("tbody");
    this.usage = h("tbody");
    this.items = h("tbody");
    this.itemsNote = h("p", { class: "muted" });
    this.filter = h("select", { name: "item-status", "aria-label": "Items shown" },
      h("option", { value: "" }, "all items"), h("option", { value: "pass" }, "passed"),
      h("option", { value: "fail" }, "failed"));
    this.filter.addEventListener("change", () => this.showItems([null]));
    this.previous = h("button", { type: "button", class: "small prev-page", disabled: true,
      onclick: () => this.showItems(this.cursors.slice(0, -1)) }, "← previous");
    this.next = h("button", { type: "button", class: "small next-page", disabled: true,
      onclick: () => this.showItems([...this.cursors, this.lastId]) }, "next →");
    this.pageText = h("span", { class: "muted page-text" });
    this.element = h("div", { class: "run-view" },
      h("p", {}, h("a", { href: `#/evals/${this.evalId}` }, "← the eval's runs")),
      h("section", { class: "card" },
        h("div", { class: "job-head" }, this.title, this.status,
          h("div", { class: "buttons" }, this.cancel)), this.failure, this.summary),
      h("div", { class: "columns" },
        h("section", { class: "card" }, h("h2", {}, "Pass rate per criterion"),
          h("table", { class: "criteria-rates" }, this.rates)),
        h("section", { class: "card" }, h("h2", {}, "Token usage"),
          h("table", { class: "usage" }, h("thead", {}, h("tr", {},
            ["Model", "Requests", "Prompt", "Completion", "Total"].map((n) => h("th", {}, n)))),
          this.usage))),
      h("section", { class: "card" },
        h("div", { class: "items-head" }, h("h2", {}, "Output items"), this.filter,
          h("div", { class: "pager" }, this.previous, this.pageText, this.next)),
        this.itemsNote,
        h("table", { class: "output-items" }, h("thead", {}, h("tr", {},
          ["#", "Status", "Input", "Output", "Criteria", "Errors"].map((n) => h("th", {}, n)))),
        this.items)));
  }

  async start() {
    try {
      const evaluation = await request(`/evals/${this.evalId}`, { signal: this.signal });
      this.criteria = criteriaOf(evaluation);
    } catch (error) {
      this.failure.replaceChildren(errorBox(`Could not load the eval: ${error.message}`));
      return;
    }
    let shownTotal = -1;
    await refreshWhile(async () => {
      try {
        await this.loadRun();
      } catch (error) {
        if (!this.run) {
          this.failure.replaceChildren(errorBox(`Could not load the run: ${error.message}`));
          return false;
        }
        return true; // a passing failure: the next round tries again
      }
      // New items while the run goes on: the page shown grows (the first) or its pager does.
      if (this.run.result_counts.total !== shownTotal) {
        shownTotal = this.run.result_counts.total;
        await this.showItems(this.cursors);
      }
      return !RUN_FINISHED.has(this.run.status);
    }, this.signal);
  }

  async loadRun() {
    const run = await request(`/evals/${this.evalId}/runs/${this.runId}`, { signal: this.signal });
    this.run = run;
    this.element.dataset.status = run.status;
    this.title.textContent = run.name || run.id;
    this.status.replaceChildren(statusBadge(run.status));
    this.cancel.disabled = RUN_FINISHED.has(run.status);
    this.failure.replaceChildren(run.error?.code
      ? errorBox(`Failed (${run.error.code}): ${run.error.message}`) : "");
    const c = run.result_counts;
    const source = run.data_source;
    const facts = [
      ["Model", h("span", { class: "model-name" }, modelId(run.model))],
      ["Data source", `${source.type} (${source.source?.type === "file_id"
        ? source.source.id : "inline items"})`],
      ["Items", `${c.total} graded: ${c.passed} passed, ${c.failed} failed, ${c.errored} errored`],
      ["Created", when(run.created_at)], ["Run", run.id],
    ];
    this.summary.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    this.rates.replaceChildren(...this.criteria.map((criterion) => {
      const found = run.per_testing_criteria_results
        .find((entry) => entry.testing_criteria === criterion.id);
      return h("tr", { dataset: { criterion: criterion.id } }, h("th", {}, criterion.name),
        h("td", { class: "rate" }, found ? rate(found.passed, found.failed) : "–"));
    }));
    this.usage.replaceChildren(...run.per_model_usage.map((u) => h("tr", {},
      h("td", { class: "model-name" }, modelId(u.model_name)), h("td", {}, u.invocation_count),
      h("td", {}, u.prompt_tokens), h("td", {}, u.completion_tokens), h("td", {}, u.total_tokens))));
    if (!run.per_model_usage.length) {
      this.usage.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "none yet")));
    }
  }

  async cancelRun() {
    try {
      await request(`/evals/${this.evalId}/runs/${this.runId}/cancel`, { method: "POST" });
      await this.loadRun();
    } catch (error) {
      this.failure.replaceChildren(errorBox(`cancel: ${error.message}`));
    }
  }

  /** Shows the page after `cursors`' last cursor (null: the first page). */
  async showItems(cursors) {
    const after = cursors[cursors.length - 1];
    const query = new URLSearchParams({ limit: String(ITEMS_PER_PAGE), order: "asc" });
    if (after) query.set("after", after);
    if (this.filter.value) query.set("status", this.filter.value);
    let page;
    try {
      page = await request(`/evals/${this.evalId}/runs/${this.runId}/output_items?${query}`,
                           { signal: this.signal });
    } catch (error) {
      if (!this.signal.aborted) this.itemsNote.replaceChildren(errorBox(error.message));
      return;
    }
    this.cursors = cursors;
    this.lastId = page.last_id;
    this.items.replaceChildren(...page.data.map((item) => this.itemRow(item)));
    this.previous.disabled = cursors.length < 2;
    this.next.disabled = !page.has_more;
    const first = (cursors.length - 1) * ITEMS_PER_PAGE;
    this.pageText.textContent = page.data.length
      ? `items ${first + 1}–${first + page.data.length}` : "";
    this.element.dataset.page = String(cursors.length);
    this.itemsNote.textContent = page.data.length ? ""
      : (this.run && !RUN_FINISHED.has(this.run.status) ? "No item graded yet." : "No items.");
  }

  itemRow(item) {
    const sample = item.sample || {};
    const input = (sample.input || []).map((m) => h("div", { class: "message" },
      h("span", { class: "role" }, m.role), " ", m.content));
    const output = (sample.output || []).map((m) => m.content).join("\n");
    const names = new Map(this.criteria.map((c) => [c.id, c.name]));
    const criteria = item.results.map((result) => h("div", {
      class: `result ${result.passed ? "pass" : "fail"}`, dataset: { criterion: result.name } },
      `${result.passed ? "✓" : "✗"} ${names.get(result.name) || result.name}: `,
      h("span", { class: "score" }, Number(result.score).toFixed(3))));
    const errors = [];
    if (sample.error?.code) errors.push(`${sample.error.code}: ${sample.error.message}`);
    for (const result of item.results) {
      const flags = Object.entries(result.errors || {})
        .filter(([, value]) => value === true).map(([flag]) => flag);
      const details = Object.entries(result.errors || {})
        .filter(([, value]) => typeof value === "string" && value).map(([, value]) => value);
      if (flags.length) {
        errors.push(`${names.get(result.name) || result.name}: ${[...flags, ...details].join("; ")}`);
      }
    }
    return h("tr", { dataset: { item: String(item.datasource_item_id), status: item.status } },
      h("td", {}, item.datasource_item_id), h("td", {}, statusBadge(item.status)),
      h("td", { class: "sample-input" }, input.length ? input
        : h("pre", { class: "item" }, JSON.stringify(item.datasource_item, null, 1))),
      h("td", {}, h("pre", { class: "answer sample-output" }, output)),
      h("td", { class: "results" }, criteria),
      h("td", { class: "error-text item-errors" }, errors.join("\n")));
  }
}
