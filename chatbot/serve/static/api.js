// The page's client of this server's /v1 API: JSON calls, server-sent events, the API key and errors.
// Every error becomes an ApiError whose message is one line a person can act on.

const KEY = "chatbot.apiKey";

export class ApiError extends Error {
  constructor(message, { status = 0, code = null, param = null, retryAfter = null } = {}) {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter; // seconds, when the server said to wait
  }
}

let askForKey = async () => null; // set by the page: shows the key dialog, resolves to the key (null: cancelled)

export function onKeyNeeded(ask) {
  askForKey = ask;
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const found = { ...extra };
  const key = apiKey();
  if (key) found.Authorization = `Bearer ${key}`;
  return found;
}

const unreachable = () =>
  new ApiError(`cannot reach the server at ${location.origin}: is chatbot serve still running? Nothing was lost; send again when it is back.`);

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  let param = null;
  try {
    const body = await response.json();
    if (body && body.error) ({ message, code, param } = body.error);
  } catch {
    // not JSON (a proxy's page): the status line says it
  }
  const wait = Number(response.headers.get("Retry-After"));
  return new ApiError(message, { status: response.status, code, param, retryAfter: Number.isFinite(wait) && wait > 0 ? wait : null });
}

// fetch `path` with the key; on 401, ask for a key (again, saying so, while the one given is refused) and retry.
async function send(path, init) {
  for (;;) {
    const used = apiKey();
    let response;
    try {
      response = await fetch(path, { ...init, headers: headers(init.headers) });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw unreachable();
    }
    if (response.status !== 401) {
      if (!response.ok) throw await errorOf(response);
      return response;
    }
    const problem = await errorOf(response);
    if (apiKey() !== used) continue; // another request was given a new key meanwhile
    const key = await askForKey(used ? "That key was not accepted: check it and try again." : null);
    if (!key) throw problem; // the dialog was closed without a key
  }
}

export async function call(method, path, body = undefined, { signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  return response.json();
}

export async function download(path) {
  const response = await send(path, { method: "GET", headers: {} });
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition);
  return { blob: await response.blob(), filename: name ? name[1] : "conversation" };
}

// POST `body` to `path` with stream: true and call on(event, data) for each server-sent event.
export async function stream(path, body, on, { signal } = {}) {
  const response = await send(path, {
    method: "POST",
    signal,
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw unreachable();
    }
    if (chunk.done) break;
    buffer += chunk.value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) on(event, JSON.parse(data.join("\n")));
    }
  }
}
