// Building the page: one element helper and the few formats every view shows.

/** h("td", {class: "x", onclick: f}, "text", child): an element; null children are skipped. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
}

export function duration(seconds) {
  if (seconds < 0) seconds = 0;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
}

/**
 * A model id that wraps only after its `:` separators (ft:base:org:suffix:tag:ckpt-step-N),
 * never inside one of its parts.
 */
export function modelId(id) {
  const parts = String(id).split(":");
  return h("span", { class: "model-id" },
    parts.flatMap((part, index) => (index ? [":", h("wbr"), part] : [part])));
}

export function number(value, digits = 4) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

/** A message box: an error (the server's message, which names the line for bad data). */
export function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}
