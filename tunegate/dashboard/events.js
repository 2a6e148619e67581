// A job's events as they happen, oldest first, each once: the event stream
// (GET …/events?stream=true) where the server has it, else polling the paged list.

import { readEvents, request, send } from "./api.js";

const POLL_MS = 2000;
const RETRY_MS = 1500;
const PAGE = 100;
const EVENT_NAME = "fine_tuning.job.event";

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/**
 * Calls onEvent(event) for every event of the job, oldest first, then live ones, until the job
 * has finished (`isFinished()` resolves true once the stream closes or a poll finds it so) or
 * `signal` aborts. Resolves to "stream" or "poll": how the events came.
 */
export async function followEvents(jobId, { onEvent, isFinished, signal }) {
  const seen = new Set();
  const deliver = (event) => {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    onEvent(event);
  };
  const streamed = await followStream(jobId, deliver, isFinished, signal);
  if (streamed || signal.aborted) return "stream";
  await followPages(jobId, seen, deliver, isFinished, signal);
  return "poll";
}

/** false when the server has no event stream (an older tunegate answers 400 to `stream`). */
async function followStream(jobId, deliver, isFinished, signal) {
  let lastId = null;
  while (!signal.aborted) {
    const resume = lastId ? `&last_event_id=${encodeURIComponent(lastId)}` : "";
    let response;
    try {
      response = await send(`/fine_tuning/jobs/${jobId}/events?stream=true${resume}`, {
        signal, headers: { Accept: "text/event-stream" },
      });
    } catch {
      if (signal.aborted) return true;
      await sleep(RETRY_MS, signal);
      continue;
    }
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.startsWith("text/event-stream")) {
      await response.body?.cancel();
      return lastId !== null; // a stream that worked before and now fails: stop, not poll
    }
    try {
      await readEvents(response, ({ id, event, data }) => {
        if (event !== EVENT_NAME) return;
        deliver(JSON.parse(data));
        lastId = id;
      });
    } catch {
      if (signal.aborted) return true; // left the page
    }
    if (await isFinished()) return true;
    await sleep(RETRY_MS, signal); // dropped (a restart, a proxy): resume after lastId
  }
  return true;
}

async function followPages(jobId, seen, deliver, isFinished, signal) {
  while (!signal.aborted) {
    const finished = await isFinished();
    try {
      (await newEvents(jobId, seen, signal)).forEach(deliver);
    } catch (error) {
      if (signal.aborted) return;
    }
    if (finished) return; // events were read after the job was seen finished: nothing missed
    await sleep(POLL_MS, signal);
  }
}

/** Events not seen yet, oldest first: pages (newest first) until one reaches a seen event. */
async function newEvents(jobId, seen, signal) {
  const found = [];
  let after = "";
  for (;;) {
    const page = await request(`/fine_tuning/jobs/${jobId}/events?limit=${PAGE}${after}`,
                               { signal });
    const fresh = page.data.filter((event) => !seen.has(event.id));
    found.push(...fresh);
    if (!page.has_more || fresh.length < page.data.length || !page.data.length) break;
    after = `&after=${encodeURIComponent(page.data[page.data.length - 1].id)}`;
  }
  return found.reverse();
}
