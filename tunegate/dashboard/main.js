// The dashboard's entry: the key prompt and the two views, chosen by the URL's hash
// (#/ the jobs, #/jobs/<id> one job).

import { forgetKey, onKeyNeeded, storedKey } from "./api.js";
import { jobView } from "./job.js";
import { jobsView } from "./jobs.js";

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

function route() {
  current?.abort();
  current = new AbortController();
  const match = location.hash.match(/^#\/jobs\/([A-Za-z0-9_-]+)$/);
  const view = match ? jobView(match[1], current.signal) : jobsView(current.signal);
  main.replaceChildren(view);
  document.title = match ? `${match[1]} · tunegate` : "tunegate dashboard";
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
