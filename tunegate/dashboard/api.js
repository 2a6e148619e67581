// Talking to tunegate's /v1 API from the page: the API key, JSON requests, error messages,
// and a reader for server-sent events (fetch + ReadableStream: EventSource cannot send an
// Authorization header).

const KEY_STORAGE = "tunegate.apiKey"; // sessionStorage only: gone when the tab closes

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
  }
}

let askForKey = async () => null; // set by the page: shows the key prompt, resolves to a key
let pendingPrompt = null; // one prompt for every request that met a 401 meanwhile

export function onKeyNeeded(prompt) {
  askForKey = prompt;
}

export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

function headersWithKey(headers = {}) {
  const key = storedKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}

async function newKey(rejected) {
  if (!pendingPrompt) {
    pendingPrompt = askForKey(rejected).finally(() => {
      pendingPrompt = null;
    });
  }
  const key = await pendingPrompt;
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  return key;
}

/** fetch() under /v1 with the key; a 401 asks for a key and tries again. */
export async function send(path, options = {}) {
  for (;;) {
    const sentKey = storedKey();
    const response = await fetch(`/v1${path}`, {
      ...options,
      headers: headersWithKey(options.headers),
    });
    if (response.status !== 401) return response;
    // Another request may have stored a good key while this one was on its way.
    if (storedKey() !== sentKey) continue;
    if (!(await newKey(sentKey !== null))) return response;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error || { message: body.detail });
  } catch {
    return new ApiError(response.status, null);
  }
}

/** A JSON request; the parsed answer, or an ApiError with the server's message. */
export async function request(path, { method = "GET", json, form, signal } = {}) {
  const options = { method, signal, headers: {} };
  if (json !== undefined) {
    options.body = JSON.stringify(json);
    options.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    options.body = form; // FormData: the browser sets the multipart boundary
  }
  const response = await send(path, options);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

export { errorOf };

/**
 * Reads a text/event-stream body, calling onEvent({id, event, data}) per event (comments such
 * as ": ping" are skipped). Resolves when the server closes the stream.
 */
export async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: null, event: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(buffer[end] === "\r" ? end + 2 : end + 1);
      if (line === "") {
        if (event.data.length) onEvent({ ...event, data: event.data.join("\n") });
        event = { id: null, event: "message", data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
      else if (field === "event") event.event = text;
    }
  }
}
