// The dashboard's entry: the key prompt and the views, chosen by the URL's hash (#/ the jobs,
// #/jobs/<id> one job, #/evals the evals, #/evals/<id> one eval's runs side by side,
// #/evals/<id>/runs/<run> one run's output items, #/webhooks the webhook endpoints).

import { forgetKey, onKeyNeeded, storedKey } from "./api.js";
import { evalView, evalsView, runView } from "./evals.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";
import { webhooksView } from "./webhooks.js";

const main = document.querySelector("main");
const dialog = document.querySelector("#key-dialog");
const keyForm = dialog.querySelector("form");
const keyInput = dialog.querySelector("input");
const keyMessage = dialog.querySelector(".key-message");
const forget = document.querySelector("#forget-key");
let current = null; // the view's AbortController: leaving a view stops its polling and streams

/** Shows the key prompt; resolves to the key typed. */
function promptForKey(rejected) {
  keyMessage.textContent = rejected
    ? "That key was not accepted (401). Enter another one."
    : "This server requires an API key.";
  keyInput.value = "";
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
  return new Promise((resolve) => {
    keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = keyInput.value.trim();
      dialog.close();
      showKeyState(key);
      resolve(key || null);
    }, { once: true });
  });
}

function showKeyState(key = storedKey()) {
  forget.hidden = !key;
}

const ID = "([A-Za-z0-9_-]+)";
// Each view by the hash it answers; the first whose pattern matches is shown.
const ROUTES = [
  { pattern: new RegExp(`^#/jobs/${ID}$`), view: (signal, id) => jobView(id, signal),
    title: (id) => id, section: "jobs" },
  { pattern: /^#\/evals\/?$/, view: (signal) => evalsView(signal), title: () => "evals",
    section: "evals" },
  { pattern: new RegExp(`^#/evals/${ID}$`), view: (signal, id) => evalView(id, signal),
    title: (id) => id, section: "evals" },
  { pattern: new RegExp(`^#/evals/${ID}/runs/${ID}$`),
    view: (signal, evalId, runId) => runView(evalId, runId, signal), title: (_, runId) => runId,
    section: "evals" },
  { pattern: /^#\/webhooks\/?$/, view: (signal) => webhooksView(signal), title: () => "webhooks",
    section: "webhooks" },
];

function route() {
  current?.abort();
  current = new AbortController();
  for (const { pattern, view, title, section } of ROUTES) {
    const match = location.hash.match(pattern);
    if (!match) continue;
    main.replaceChildren(view(current.signal, ...match.slice(1)));
    document.title = `${title(...match.slice(1))} · tunegate`;
    showSection(section);
    return;
  }
  main.replaceChildren(jobsView(current.signal));
  document.title = "tunegate dashboard";
  showSection("jobs");
}

function showSection(section) {
  for (const link of document.querySelectorAll("header nav a[data-section]")) {
    link.classList.toggle("current", link.dataset.section === section);
  }
}

dialog.addEventListener("cancel", (event) => event.preventDefault()); // a key is needed to go on
forget.addEventListener("click", () => {
  forgetKey();
  showKeyState();
  route();
});
onKeyNeeded(promptForKey);
window.addEventListener("hashchange", route);
showKeyState();
route();
