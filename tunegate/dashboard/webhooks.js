// The Webhooks view (#/webhooks): the project's endpoints, each with its events, its newest
// delivery (status, what the receiver answered) and when the next try is due; a form that adds
// one and shows its signing secret this once; Disable/Enable, Rotate secret (the new one shown
// once), Remove; and an endpoint's deliveries on demand.

import { request } from "./api.js";
import { errorBox, h, statusBadge, when } from "./dom.js";

const REFRESH_MS = 3000;
const ENDPOINTS_LISTED = 100;
const DELIVERIES_READ = 20; // an endpoint's newest deliveries: enough to find the next try
// tunegate/domain/webhooks.py EVENT_TYPES: the events tunegate sends.
export const EVENT_TYPES = [
  "fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled",
  "eval.run.succeeded", "eval.run.failed", "eval.run.canceled",
];
const JOB_ENDS = EVENT_TYPES.slice(0, 3); // what `tunegate webhooks add` subscribes by default

export function webhooksView(signal) {
  const rows = h("tbody");
  const note = h("p", { class: "muted" }, "Loading endpoints…");
  const secretBox = h("div", { class: "secret-box", "aria-live": "polite" });
  const details = h("div", { class: "deliveries-card" });
  const view = h("div", { class: "webhooks-view" });
  const shown = { endpointId: null }; // whose deliveries are listed below the table
  const refresh = () => listEndpoints(rows, note, details, shown, signal, refresh, secretBox);
  view.append(
    h("section", { class: "card" }, h("h2", {}, "Add a webhook endpoint"),
      addForm(secretBox, refresh), secretBox),
    h("section", { class: "card" }, h("h2", {}, "Webhook endpoints"), note,
      h("div", { class: "scroll" }, h("table", { class: "webhooks" },
        h("thead", {}, h("tr", {}, ["Endpoint", "Events", "Status", "Last delivery",
          "Next try", ""].map((name) => h("th", {}, name)))), rows)),
      h("p", { class: "muted" }, "Each event is signed as OpenAI signs its webhooks: verify it with ",
        h("code", {}, "client.webhooks.unwrap()"), " and the endpoint's secret.")),
    details);
  (async () => {
    while (!signal.aborted) {
      await refresh();
      await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
    }
  })();
  return view;
}

async function listEndpoints(rows, note, details, shown, signal, refresh, secretBox) {
  try {
    const page = await request(`/webhook_endpoints?limit=${ENDPOINTS_LISTED}`, { signal });
    const deliveries = await Promise.all(page.data.map((endpoint) => request(
      `/webhook_endpoints/${endpoint.id}/deliveries?limit=${DELIVERIES_READ}`, { signal })
      .then((answer) => answer.data, () => null)));
    rows.replaceChildren(...page.data.map((endpoint, index) =>
      endpointRow(endpoint, deliveries[index], shown, details, refresh, secretBox)));
    note.textContent = page.data.length ? "" : "No endpoints yet: add one above.";
    const listed = page.data.findIndex((endpoint) => endpoint.id === shown.endpointId);
    if (listed >= 0) details.replaceChildren(deliveriesCard(page.data[listed], deliveries[listed]));
    else details.replaceChildren();
  } catch (error) {
    if (!signal.aborted) note.replaceChildren(errorBox(`Could not list endpoints: ${error.message}`));
  }
}

/** {last: the newest delivery, next: the earliest next try of those still pending}. */
export function deliverySummary(deliveries) {
  if (!deliveries?.length) return { last: null, next: null };
  const [newest] = deliveries;
  const pending = deliveries.filter((d) => d.status === "pending" && d.next_attempt_at);
  const next = pending.length ? Math.min(...pending.map((d) => d.next_attempt_at)) : null;
  return { last: newest, next };
}

function answerOf(delivery) {
  if (delivery.last_status_code) return `HTTP ${delivery.last_status_code}`;
  return delivery.last_error || (delivery.attempts ? "no answer" : "not tried yet");
}

/** A row button that sends `init` to `path` once `question` (if any) is answered yes, then
 * calls `done` with the answer; a refusal shows `failure` (default: "<label> failed") beside it. */
function actionButton({ label, className, title, question = null, path, init, done,
                        failure = `${label} failed` }) {
  const button = h("button", { type: "button", class: `small ${className}`, title }, label);
  button.addEventListener("click", async () => {
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    try {
      await done(await request(path, init));
    } catch (error) {
      button.disabled = false;
      button.after(errorBox(`${failure}: ${error.message}`));
    }
  });
  return button;
}

function endpointRow(endpoint, deliveries, shown, details, refresh, secretBox) {
  const { last, next } = deliverySummary(deliveries);
  const lastCell = last
    ? h("span", {}, statusBadge(last.status), " ", h("span", { class: "answer-text" },
        answerOf(last)), h("br"), h("small", { class: "muted" },
        `${last.event_type} · ${when(last.last_attempt_at || last.created_at)}`))
    : deliveries === null ? h("span", { class: "error-text" }, "could not read") : "none yet";
  const remove = actionButton({ label: "Remove", className: "action-cancel remove-endpoint",
    title: "Remove this endpoint; its waiting deliveries are not sent",
    question: `Remove ${endpoint.url}? Its waiting deliveries are not sent.`,
    path: `/webhook_endpoints/${endpoint.id}`, init: { method: "DELETE" },
    failure: "Could not remove it", done: async () => {
      if (shown.endpointId === endpoint.id) shown.endpointId = null;
      await refresh();
    } });
  const show = h("button", { type: "button", class: "small show-deliveries" }, "Deliveries");
  show.addEventListener("click", () => {
    shown.endpointId = endpoint.id;
    details.replaceChildren(deliveriesCard(endpoint, deliveries));
    details.scrollIntoView({ block: "nearest" });
  });
  const enabled = endpoint.status === "enabled";
  const toggle = actionButton({ label: enabled ? "Disable" : "Enable",
    className: "toggle-endpoint",
    title: enabled ? "Send it no events; its waiting deliveries are given up" : "Send it events again",
    path: `/webhook_endpoints/${endpoint.id}`,
    init: { method: "POST", json: { status: enabled ? "disabled" : "enabled" } }, done: refresh });
  const rotate = actionButton({ label: "Rotate secret", className: "rotate-secret",
    title: "A new signing secret; the old one keeps signing beside it for 24 hours",
    question: `Give ${endpoint.url} a new signing secret? The old one keeps signing for 24 hours.`,
    path: `/webhook_endpoints/${endpoint.id}/rotate_secret`,
    init: { method: "POST", json: { keep_old_secret_active_for_24_hours: true } },
    done: async (rotated) => {
      secretBox.replaceChildren(secretNotice(rotated, "has a new secret (the old one signs too for 24 hours)"));
      secretBox.scrollIntoView({ block: "nearest" });
      await refresh();
    } });
  return h("tr", { dataset: { endpointId: endpoint.id, status: endpoint.status } },
    h("td", {}, h("strong", {}, endpoint.name), h("br"),
      h("span", { class: "model-name endpoint-url" }, endpoint.url), h("br"),
      h("small", { class: "muted" }, `${endpoint.id} · secret ${endpoint.signing_secret_hint}`)),
    h("td", { class: "event-types" }, endpoint.event_types.map((type) => h("div", {}, type))),
    h("td", {}, statusBadge(endpoint.status)),
    h("td", { class: "last-delivery" }, lastCell),
    h("td", { class: "next-try" }, next ? when(next) : "–"),
    h("td", { class: "buttons" }, show, " ", toggle, h("br"), rotate, " ", remove));
}

function deliveriesCard(endpoint, deliveries) {
  const rows = (deliveries || []).map((d) => h("tr", { dataset: { deliveryId: d.id,
    status: d.status } },
    h("td", {}, d.event_type, h("br"), h("small", { class: "model-name" }, d.data_id)),
    h("td", {}, statusBadge(d.status)), h("td", {}, String(d.attempts)),
    h("td", {}, answerOf(d)), h("td", {}, when(d.last_attempt_at)),
    h("td", {}, d.status === "pending" ? when(d.next_attempt_at) : "–"),
    h("td", { class: "model-name" }, d.id)));
  return h("section", { class: "card deliveries", dataset: { endpointId: endpoint.id } },
    h("h2", {}, `Deliveries to ${endpoint.name}`),
    rows.length ? h("div", { class: "scroll" }, h("table", { class: "deliveries" },
      h("thead", {}, h("tr", {}, ["Event", "Status", "Attempts", "Last answer", "Last try",
        "Next try", "webhook-id"].map((name) => h("th", {}, name)))), h("tbody", {}, rows)))
      : h("p", { class: "muted" }, deliveries === null ? "Could not read them."
        : "None yet: an event it is subscribed to has not happened since it was added."));
}

function field(label, control, hint = null) {
  return h("label", { class: "field" }, h("span", {}, label), control,
           hint && h("small", { class: "muted" }, hint));
}

function addForm(secretBox, refresh) {
  const url = h("input", { type: "url", name: "url", required: true,
    placeholder: "the receiver's http or https URL" });
  const name = h("input", { type: "text", name: "name", placeholder: "optional (the URL)" });
  const boxes = EVENT_TYPES.map((type) => h("label", { class: "event-choice" },
    h("input", { type: "checkbox", name: "event_types", value: type,
      checked: JOB_ENDS.includes(type) }), ` ${type}`));
  const submit = h("button", { type: "submit" }, "Add endpoint");
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const form = h("form", { class: "add-endpoint" },
    field("URL", url, "http(s); the server POSTs each event here"), field("Name", name),
    h("fieldset", { class: "field events-field" }, h("legend", {}, "Events"), boxes),
    h("div", { class: "actions" }, submit), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    status.replaceChildren();
    secretBox.replaceChildren();
    const body = { url: url.value.trim(), event_types: boxes.map((box) => box.firstChild)
      .filter((box) => box.checked).map((box) => box.value) };
    if (name.value.trim()) body.name = name.value.trim();
    try {
      const made = await request("/webhook_endpoints", { method: "POST", json: body });
      secretBox.replaceChildren(secretNotice(made, "added"));
      form.reset();
      await refresh();
    } catch (error) {
      status.replaceChildren(errorBox(error.message));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The signing secret as the API gave it, this once; a button hides it for good. */
export function secretNotice(endpoint, what) {
  const notice = h("div", { class: "secret-notice", role: "status",
    dataset: { endpointId: endpoint.id } },
    h("p", {}, h("strong", {}, `${endpoint.name} ${what}. `),
      "Its signing secret is shown this once: give it to the receiver now."),
    h("code", { class: "signing-secret" }, endpoint.signing_secret));
  const done = h("button", { type: "button", class: "small forget-secret" }, "I have stored it");
  done.addEventListener("click", () => notice.remove());
  notice.append(" ", done);
  return notice;
}
