// The chat page: a list of conversations and the open one's turns, all from this server's /v1 API.
// What a person or the model wrote is only ever set as textContent: it is shown, never parsed as HTML.

import * as api from "./api.js";
import * as settings from "./settings.js";
import { siblings } from "./tree.js";

const $ = (id) => document.getElementById(id);
const state = {
  conversation: null, // the open ConversationObject; null for a new chat, created by its first message
  transcript: null, // GET /transcript of the open conversation
  pending: false, // a reply is being generated: the input waits
  controller: null, // aborts the pending stream (the Stop button)
  candidates: new Map(), // reply turn id -> the exchange's candidates and chosen index
  replay: new Map(), // reply turn id -> its ReplayedTurn
  details: new Set(), // reply turn ids whose details are open
  listBefore: null, // the next page of the conversation list
  routed: undefined, // the conversation id the address names (null: a new chat)
};

function element(tag, { text, className, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function button(label, onClick, attrs = {}) {
  const node = element("button", { text: label, attrs: { type: "button", ...attrs } });
  node.addEventListener("click", onClick);
  node.disabled = state.pending;
  return node;
}

// A control that is off for its own reason (the first of the alternatives, the candidate in use), pending or not.
function off(node, reason) {
  node.dataset.off = reason ? "1" : "";
  node.disabled = reason || state.pending;
}

function say(message) {
  $("status").textContent = message || "";
}

function problemText(error) {
  if (error.status === 503 && error.retryAfter) return `${error.message} (try again in ${error.retryAfter} s)`;
  return error.message || String(error);
}

function showError(id, error) {
  const node = $(id);
  node.textContent = error ? problemText(error) : "";
  node.hidden = !error;
}

function clearErrors() {
  for (const id of ["send-error", "chat-error"]) showError(id, null);
}

const base = () => `/v1/conversations/${state.conversation.id}`;

// ---- the conversation list -------------------------------------------------------------------------------

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
}

async function loadList(more = false) {
  const query = new URLSearchParams({ limit: "30" });
  const search = $("search").value.trim();
  if (search) query.set("search", search);
  if (more && state.listBefore) query.set("before", String(state.listBefore));
  try {
    const page = await api.call("GET", `/v1/conversations?${query}`);
    showError("list-error", null);
    const list = $("conversations");
    if (!more) list.replaceChildren();
    for (const conversation of page.data) list.append(listItem(conversation));
    if (!more && !page.data.length) list.append(element("li", { text: search ? "Nothing matches." : "No conversations yet.", className: "none" }));
    state.listBefore = page.last_id;
    $("more").hidden = !page.has_more;
  } catch (error) {
    showError("list-error", error);
  }
}

function listItem(conversation) {
  const open = state.conversation && state.conversation.id === conversation.id;
  const turns = conversation.num_turns === 1 ? "1 turn" : `${conversation.num_turns ?? 0} turns`;
  const link = element("a", { attrs: { href: `#/c/${conversation.id}` } }, [
    element("span", { text: conversation.title || `Conversation ${conversation.id}`, className: "name" }),
    element("span", { text: `${turns} · ${when(conversation.last_turn_at || conversation.created_at)}`, className: "meta" }),
  ]);
  if (open) link.setAttribute("aria-current", "page");
  return element("li", { attrs: { "data-id": String(conversation.id) } }, [link]);
}

// ---- the open conversation --------------------------------------------------------------------------------

function showHead() {
  const open = state.conversation;
  $("title").textContent = open ? open.title || `Conversation ${open.id}` : "New chat";
  $("conversation-actions").hidden = !open;
  document.title = open ? `${$("title").textContent} · chatbot` : "chatbot";
  for (const link of $("conversations").querySelectorAll("a")) {
    if (open && link.getAttribute("href") === `#/c/${open.id}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function newChat() {
  state.routed = null;
  state.conversation = null;
  state.transcript = null;
  state.candidates.clear();
  state.details.clear();
  state.replay.clear();
  if (location.hash) history.pushState(null, "", location.pathname);
  clearErrors();
  say("");
  showHead();
  render();
  closeSidebar();
  $("message").focus();
}

async function openConversation(id) {
  state.routed = id;
  clearErrors();
  try {
    state.conversation = await api.call("GET", `/v1/conversations/${id}`);
  } catch (error) {
    newChat();
    showError("chat-error", error.status === 404 ? new Error(`conversation ${id} is not on this server (deleted, or another key's)`) : error);
    return;
  }
  state.candidates.clear();
  state.details.clear();
  state.replay.clear();
  say("");
  showHead();
  closeSidebar();
  await loadTranscript();
}

async function loadTranscript() {
  if (!state.conversation) return;
  const id = state.conversation.id;
  try {
    const transcript = await api.call("GET", `${base()}/transcript`);
    if (!state.conversation || state.conversation.id !== id) return; // another conversation was opened meanwhile
    state.transcript = transcript;
    state.conversation = transcript.conversation;
    showHead();
    render();
  } catch (error) {
    showError("chat-error", error);
  }
}

function render() {
  const list = $("turns");
  const turns = state.transcript ? state.transcript.turns : [];
  list.replaceChildren(...turns.map((turn, index) => turnItem(turn, index)));
  $("empty").hidden = turns.length > 0 || state.pending;
  list.lastElementChild?.scrollIntoView({ block: "end" });
}

function turnItem(turn, index) {
  const mine = turn.role === "user";
  const item = element("li", { className: `turn ${mine ? "user" : "assistant"}`, attrs: { "data-turn-id": String(turn.id) } }, [
    element("div", { text: mine ? "You" : "Bot", className: "speaker" }),
    element("div", { text: turn.content, className: "content" }),
  ]);
  const tools = element("div", { className: "tools" });
  const found = siblings(state.transcript, index);
  if (found.ids.length > 1) tools.append(branchSwitch(found));
  if (mine) tools.append(button("Edit", () => startEdit(item, turn), { "aria-label": "Edit this message (a new branch)" }));
  else {
    tools.append(button("Retry", () => retry(item, turn), { "aria-label": "Another reply in place of this one" }));
    const details = detailsOf(turn);
    details.hidden = !state.details.has(turn.id);
    const toggle = button("Details", () => {
      details.hidden = !details.hidden;
      toggle.setAttribute("aria-expanded", String(!details.hidden));
      if (details.hidden) state.details.delete(turn.id);
      else state.details.add(turn.id);
    }, { "aria-expanded": String(!details.hidden) });
    tools.append(toggle);
    item.append(details);
  }
  item.insertBefore(tools, item.children[2] || null);
  const replayed = state.replay.get(turn.id);
  if (replayed) item.append(replayMark(replayed));
  const candidates = state.candidates.get(turn.id);
  if (candidates && candidates.list.length > 1) item.append(candidateList(turn, candidates));
  item.append(element("p", { className: "error turn-error", attrs: { role: "alert" } }));
  return item;
}

function branchSwitch(found) {
  const position = found.current + 1;
  const total = found.ids.length;
  const go = (step) => switchTo(found, found.current + step);
  const previous = button("‹", () => go(-1), { "aria-label": "Previous alternative" });
  const next = button("›", () => go(1), { "aria-label": "Next alternative" });
  off(previous, position === 1);
  off(next, position === total);
  return element("span", { className: "branches", attrs: { role: "group", "aria-label": "Alternatives" } }, [
    previous,
    element("span", { text: `${position} / ${total}`, className: "count" }),
    next,
  ]);
}

function detailsOf(turn) {
  const rows = [
    ["model", turn.model ? `${turn.model}${turn.model_id ? ` (id ${turn.model_id})` : ""}` : "unknown"],
    ["seed", turn.seed ?? "none"],
    ["settings", settings.describe(turn.decoding) || "not stored"],
  ];
  if (turn.latency_ms != null) rows.push(["took", `${Math.round(turn.latency_ms)} ms`]);
  const list = element("dl", { className: "details" });
  for (const [name, value] of rows) list.append(element("dt", { text: name }), element("dd", { text: String(value) }));
  return list;
}

function replayMark(replayed) {
  if (replayed.identical) return element("p", { text: "✓ identical on replay", className: "replay identical" });
  const text = replayed.regenerated === null ? `✗ could not be replayed: ${replayed.note}` : `✗ changed on replay: “${replayed.regenerated}”`;
  return element("p", { text, className: "replay changed" });
}

function candidateList(turn, candidates) {
  const list = element("ol", { className: "candidates", attrs: { "aria-label": "Candidates" } });
  candidates.list.forEach((candidate) => {
    const chosen = candidate.index === candidates.chosen;
    const use = button(chosen ? "In use" : "Use this", () => pick(turn, candidates, candidate.index));
    off(use, chosen);
    list.append(element("li", { className: chosen ? "chosen" : "" }, [element("span", { text: candidate.content }), use]));
  });
  return list;
}

// ---- actions ------------------------------------------------------------------------------------------------

function setPending(pending) {
  state.pending = pending;
  $("message").disabled = pending;
  $("send").hidden = pending;
  $("stop").hidden = !pending;
  for (const node of document.querySelectorAll("#turns button, #conversation-actions button")) {
    node.disabled = pending || node.dataset.off === "1";
  }
  $("empty").hidden = pending || (state.transcript?.turns.length ?? 0) > 0;
}

function remember(exchange) {
  if (exchange.reply && exchange.candidates.length > 1) {
    state.candidates.set(exchange.reply.id, { list: exchange.candidates, chosen: exchange.chosen });
  }
  say(exchange.notes.length ? `Note: ${exchange.notes.join("; ")}.` : "");
}

async function sendMessage() {
  const box = $("message");
  const text = box.value;
  if (!text.trim() || state.pending) return;
  clearErrors();
  setPending(true);
  const controller = new AbortController();
  state.controller = controller;
  const before = state.transcript ? state.transcript.turns.length : 0;
  let stored = false;
  const mine = element("li", { className: "turn user pending" }, [element("div", { text: "You", className: "speaker" }), element("div", { text, className: "content" })]);
  const reply = element("div", { text: "…", className: "content" });
  const theirs = element("li", { className: "turn assistant pending", attrs: { "aria-busy": "true" } }, [element("div", { text: "Bot", className: "speaker" }), reply]);
  try {
    if (!state.conversation) {
      state.conversation = await api.call("POST", "/v1/conversations", {}); // titled by its first message
      state.routed = state.conversation.id;
      history.pushState(null, "", `#/c/${state.conversation.id}`);
      showHead();
    }
    $("turns").append(mine, theirs);
    theirs.scrollIntoView({ block: "end" });
    let streamed = "";
    let done = null;
    await api.stream(
      `${base()}/messages`,
      { content: text, ...settings.requestFields() },
      (event, data) => {
        if (event === "message") {
          stored = true;
          box.value = "";
          mine.querySelector(".content").textContent = data.content;
        } else if (event === "delta") {
          streamed += data.content;
          reply.textContent = streamed;
        } else if (event === "done") done = data;
        else if (event === "error") throw new api.ApiError(data.error.message, { code: data.error.code });
      },
      { signal: controller.signal },
    );
    if (done) remember(done);
  } catch (error) {
    if (error.name === "AbortError") {
      say("Stopped. The server still finishes this reply and stores it; it appears here when it is ready.");
      followStopped(before, text);
    } else showError("send-error", error);
  } finally {
    state.controller = null;
    await loadTranscript(); // still pending: the page shows the stored turns before it takes input again
    mine.remove();
    theirs.remove();
    setPending(false);
    loadList();
    if (!stored && state.transcript && state.transcript.turns.length > before && lastUserText() === text.trim()) box.value = "";
    box.focus();
  }
}

function lastUserText() {
  const turns = state.transcript.turns.filter((turn) => turn.role === "user");
  return turns.length ? turns[turns.length - 1].content.trim() : null;
}

// After Stop: reload until the reply the server went on generating is stored (or 30 s have passed).
async function followStopped(before, text) {
  const id = state.conversation?.id;
  for (let tries = 0; tries < 30; tries += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (!state.conversation || state.conversation.id !== id || state.pending) return;
    await loadTranscript();
    const turns = state.transcript?.turns || [];
    if (turns.length > before && turns[turns.length - 1].role === "assistant") {
      if ($("message").value === text) $("message").value = "";
      say("");
      return;
    }
  }
}

async function act(item, run) {
  if (state.pending) return;
  clearErrors();
  setPending(true);
  try {
    await run();
  } catch (error) {
    setPending(false); // the turn stays as it was (an edit keeps its text): the error goes under it
    const line = item?.querySelector(".turn-error");
    if (line && line.isConnected) line.textContent = problemText(error);
    else showError("chat-error", error);
    return false;
  }
  await loadTranscript();
  setPending(false);
  loadList();
  return true;
}

function retry(item, turn) {
  return act(item, async () => {
    remember(await api.call("POST", `${base()}/retry`, { turn_id: turn.id, ...settings.requestFields() }));
  });
}

async function switchTo(found, index) {
  const number = found.branch.get(found.ids[index]);
  if (!number) return;
  await act(null, () => api.call("POST", `${base()}/branches/${number}/activate`));
}

async function pick(turn, candidates, index) {
  await act(null, async () => {
    const stored = await api.call("POST", `${base()}/turns/${turn.id}/pick`, { index });
    state.candidates.delete(turn.id);
    state.candidates.set(stored.id, { list: candidates.list, chosen: index });
  });
}

function startEdit(item, turn) {
  if (state.pending) return;
  const box = element("textarea", { attrs: { rows: "2", "aria-label": "Your message, rewritten" } });
  box.value = turn.content;
  const save = element("button", { text: "Send as a new branch", attrs: { type: "submit" } });
  const cancel = button("Cancel", () => render());
  const form = element("form", { className: "edit" }, [box, save, cancel]);
  const submit = async () => {
    if (!box.value.trim()) return;
    await act(item, async () => remember(await api.call("POST", `${base()}/edit`, { content: box.value, turn_id: turn.id, ...settings.requestFields() })));
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape") render();
  });
  item.querySelector(".content").replaceWith(form);
  item.querySelector(".tools").hidden = true;
  box.focus();
}

async function replay() {
  await act(null, async () => {
    say("Replaying: every reply is generated again with its stored model, settings and seed…");
    const result = await api.call("POST", `${base()}/replay`, {});
    state.replay = new Map(result.replies.map((replied) => [replied.turn_id, replied]));
    say(`Replay: ${result.identical} of ${result.total} replies came back identical.`);
  });
}

async function exportAs(format) {
  try {
    const { blob, filename } = await api.download(`${base()}/export?format=${format}`);
    const link = element("a", { attrs: { href: URL.createObjectURL(blob), download: filename } });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    showError("chat-error", error);
  }
}

let deleteArmed = null;

async function deleteConversation() {
  const control = $("delete");
  if (!deleteArmed) {
    control.textContent = "Really delete?";
    deleteArmed = setTimeout(() => {
      deleteArmed = null;
      control.textContent = "Delete";
    }, 5000);
    return;
  }
  clearTimeout(deleteArmed);
  deleteArmed = null;
  control.textContent = "Delete";
  try {
    await api.call("DELETE", base());
    newChat();
    loadList();
  } catch (error) {
    showError("chat-error", error);
  }
}

function startRename() {
  $("rename-input").value = state.conversation.title || "";
  $("rename-form").hidden = false;
  $("title").hidden = true;
  $("rename-input").focus();
}

function endRename() {
  $("rename-form").hidden = true;
  $("title").hidden = false;
}

async function rename(event) {
  event.preventDefault();
  try {
    state.conversation = await api.call("POST", base(), { title: $("rename-input").value });
    endRename();
    showHead();
    loadList();
  } catch (error) {
    showError("chat-error", error);
  }
}

// ---- the API key, the model, start-up ----------------------------------------------------------------------

let keyRequest = null;

function askForKey(problem) {
  if (keyRequest) return keyRequest;
  const dialog = $("key-dialog");
  showError("key-error", problem ? new Error(problem) : null);
  $("key-input").value = "";
  keyRequest = new Promise((resolve) => {
    const finish = (key) => {
      dialog.removeEventListener("close", closed);
      keyRequest = null;
      resolve(key);
    };
    const closed = () => {
      const key = $("key-input").value.trim();
      if (key) api.setApiKey(key);
      finish(key || null);
    };
    dialog.addEventListener("close", closed);
  });
  dialog.showModal();
  return keyRequest;
}

async function loadModel() {
  for (;;) {
    try {
      const models = await api.call("GET", "/v1/models");
      const model = models.data[0];
      settings.setDefaults(model.decoding);
      $("model").textContent = `Model: ${model.id}${model.model_id ? ` (id ${model.model_id})` : ""}`;
      if ($("status").textContent.startsWith("The model is loading")) say("");
      return;
    } catch (error) {
      if (error.status !== 503) {
        showError("chat-error", error);
        return;
      }
      say("The model is loading; you can type meanwhile.");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function openSidebar() {
  document.body.classList.add("sidebar-open");
  $("open-sidebar").setAttribute("aria-expanded", "true");
  $("search").focus();
}

function closeSidebar() {
  if (!document.body.classList.contains("sidebar-open")) return;
  document.body.classList.remove("sidebar-open");
  $("open-sidebar").setAttribute("aria-expanded", "false");
}

// `#/c/ID` opens conversation ID (so a reload or a shared link finds it); no fragment, a new chat.
function route() {
  const match = /^#\/c\/(\d+)$/.exec(location.hash);
  const id = match ? Number(match[1]) : null;
  if (id === state.routed) return; // a link fires both popstate and hashchange
  state.routed = id;
  if (id) openConversation(id);
  else newChat();
}

function start() {
  api.onKeyNeeded(askForKey);
  $("key-dialog").addEventListener("cancel", () => {
    $("key-input").value = ""; // Escape: no key
  });
  settings.setUp();
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("new-chat").addEventListener("click", newChat);
  $("more").addEventListener("click", () => loadList(true));
  let typing = null;
  $("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => loadList(), 250);
  });
  $("rename").addEventListener("click", startRename);
  $("rename-form").addEventListener("submit", rename);
  $("rename-cancel").addEventListener("click", endRename);
  $("replay").addEventListener("click", replay);
  $("export-jsonl").addEventListener("click", () => exportAs("jsonl"));
  $("export-md").addEventListener("click", () => exportAs("markdown"));
  $("delete").addEventListener("click", deleteConversation);
  $("open-sidebar").addEventListener("click", openSidebar);
  $("close-sidebar").addEventListener("click", closeSidebar);
  window.addEventListener("popstate", route);
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !state.pending) {
      loadList();
      loadTranscript();
    }
  });
  loadModel();
  loadList();
  if (/^#\/c\/\d+$/.test(location.hash)) route();
  else newChat();
}

start();
