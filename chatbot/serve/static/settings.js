// The decoding controls: shown with their current values (the server's defaults until changed), kept in this
// browser, and turned into the fields of the next request (temperature, top_p, top_k, beam_width, max_tokens, n, seed).

const STORED = "chatbot.decoding";
const FIELDS = ["sampler", "temperature", "top_p", "top_k", "beam_width", "max_tokens", "n", "seed"];
const $ = (id) => document.getElementById(id);

let defaults = { sampler: "top_p", temperature: 0.8, top_p: 0.9, top_k: 40, beam_width: 5, max_tokens: 40, n: 1, seed: null };

// The server's default decoding (GET /v1/models' `decoding`, a DecodingConfig) as the controls' values.
export function setDefaults(decoding) {
  if (!decoding) return;
  const sampler = ["top_p", "top_k", "greedy", "beam"].includes(decoding.sampler) ? decoding.sampler : "top_p";
  defaults = {
    sampler,
    temperature: decoding.temperature,
    top_p: decoding.sampler === "sample" ? 1 : decoding.top_p,
    top_k: decoding.top_k,
    beam_width: decoding.num_beams,
    max_tokens: decoding.max_reply_tokens,
    n: decoding.num_return_sequences,
    seed: null,
  };
  show(stored());
}

function stored() {
  try {
    return JSON.parse(localStorage.getItem(STORED)) || {};
  } catch {
    return {};
  }
}

function number(id) {
  const value = $(id).valueAsNumber;
  return Number.isFinite(value) ? value : null;
}

// The values the controls hold now, a default where one is empty.
export function current() {
  const values = { sampler: $("sampler").value };
  for (const field of FIELDS.slice(1)) values[field] = number(field) ?? defaults[field];
  return values;
}

function show(overrides) {
  const values = { ...defaults, ...overrides };
  for (const field of FIELDS) $(field).value = values[field] ?? "";
  refresh();
}

// Which controls matter for the chosen method, and the one-line summary on the closed panel.
function refresh() {
  const values = current();
  const uses = {
    temperature: values.sampler === "top_p" || values.sampler === "top_k",
    top_p: values.sampler === "top_p",
    top_k: values.sampler === "top_k",
    beam_width: values.sampler === "beam",
  };
  for (const [field, used] of Object.entries(uses)) $(field).closest("label").hidden = !used;
  const method = {
    top_p: `top-p ${values.top_p}, temperature ${values.temperature}`,
    top_k: `top-k ${values.top_k}, temperature ${values.temperature}`,
    greedy: "greedy",
    beam: `beam search, width ${values.beam_width}`,
  }[values.sampler];
  const parts = [method, `up to ${values.max_tokens} tokens`];
  if (values.n > 1) parts.push(`${values.n} candidates`);
  parts.push(values.seed === null ? "random seed" : `seed ${values.seed}`);
  $("settings-summary").textContent = parts.join(" · ");
}

function save() {
  const values = current();
  const changed = {};
  for (const field of FIELDS) if (values[field] !== defaults[field]) changed[field] = values[field];
  localStorage.setItem(STORED, JSON.stringify(changed));
  refresh();
}

// The request fields for the next reply (the conversation API's DecodingFields).
export function requestFields() {
  const values = current();
  const body = { max_tokens: values.max_tokens };
  if (values.sampler === "greedy") body.temperature = 0;
  else if (values.sampler === "beam") body.beam_width = values.beam_width;
  else if (values.sampler === "top_k") Object.assign(body, { top_k: values.top_k, temperature: values.temperature });
  else Object.assign(body, { top_p: values.top_p, temperature: values.temperature });
  if (values.n > 1) body.n = values.n;
  if (values.seed !== null) body.seed = values.seed;
  return body;
}

export function setUp() {
  for (const field of FIELDS) $(field).addEventListener("change", save);
  $("reset-settings").addEventListener("click", () => {
    localStorage.removeItem(STORED);
    show({});
  });
  show(stored());
}

// A reply's stored settings (TurnObject.decoding), in words.
export function describe(decoding) {
  if (!decoding) return "";
  const parts = [];
  const sampler = decoding.sampler;
  if (sampler === "top_p") parts.push(`top-p ${decoding.top_p}`, `temperature ${decoding.temperature}`);
  else if (sampler === "top_k") parts.push(`top-k ${decoding.top_k}`, `temperature ${decoding.temperature}`);
  else if (sampler === "sample") parts.push(`sampling at temperature ${decoding.temperature}`);
  else if (sampler === "beam") parts.push(`beam search, width ${decoding.num_beams}`);
  else parts.push(String(sampler));
  parts.push(`up to ${decoding.max_reply_tokens} tokens`);
  if (decoding.no_repeat_ngram) parts.push(`no repeated ${decoding.no_repeat_ngram}-gram`);
  if (decoding.num_return_sequences > 1) parts.push(`candidate ${(decoding.chosen ?? 0) + 1} of ${decoding.num_return_sequences}`);
  return parts.join(", ");
}
