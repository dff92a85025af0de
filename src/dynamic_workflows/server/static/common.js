// Shared helpers: the admin API with its bearer token, Server-Sent Events over fetch (so the
// token travels in a header, never in a URL), and small rendering helpers.
const TOKEN_KEY = "dynwf-admin-token";

export function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`/admin/api${path}`, init);
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (res.status === 401) askForToken();
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// Read an SSE endpoint with fetch; reconnects until the returned function is called.
export function stream(path, onEvent) {
  const ctrl = new AbortController();
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const res = await fetch(`/admin/api${path}`, { headers: authHeaders(), signal: ctrl.signal });
        if (res.status === 401) { askForToken(); return; }
        if (!res.ok) return;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const chunk = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = "message", data = "";
            for (const line of chunk.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (data) { try { onEvent(event, JSON.parse(data)); } catch (e) { console.error(e); } }
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return () => ctrl.abort();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function badge(status) { return el("span", { class: `badge ${status}`, "data-status": status }, status); }

export function fmtDuration(start, end) {
  if (start == null) return "";
  const s = (end ?? Date.now() / 1000) - start;
  if (s < 1) return `${Math.max(0, Math.round(s * 1000))} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function fmtTime(ts) {
  if (ts == null) return "";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

export function fmtPretty(v) {
  if (v === "[REDACTED]") return v;
  return JSON.stringify(v, null, 2) ?? "null";
}

export function fmtValue(v) {
  if (v === "[REDACTED]") return v;
  const text = JSON.stringify(v, null, 1);
  return text === undefined ? "null" : text.replace(/\n\s*/g, " ");
}

const KIND_ICON = { do: "•", sleep: "☾", event: "✉" };
const STATE_ICON = { complete: "✓", errored: "✕" };

// One step of the timeline (dashboard) or of the checklist (playground).
export function stepItem(step, failures = []) {
  const kind = step.kind || "do";
  const label = kind === "sleep" ? "sleep" : kind === "event" ? "wait for event" : "";
  const icon = STATE_ICON[step.state] || KIND_ICON[kind] || "•";
  const attempts = step.attempts > 1 ? `${step.attempts} attempts` : "";
  const meta = [label, step.count > 1 ? `#${step.count}` : "", attempts].filter(Boolean).join(" · ");
  const li = el("li", { class: step.state, "data-step": step.name, "data-state": step.state },
    el("span", { class: "icon", title: step.state }, icon),
    el("span", { class: "name" }, step.name || "(unnamed)", meta && el("small", {}, meta)),
    el("span", { class: "dur" }, step.state === "complete" || step.state === "errored"
      ? fmtDuration(step.start, step.end)
      : step.state === "waiting" ? `waiting ${fmtDuration(step.start, null)}` : "running…"));
  for (const f of failures) {
    li.append(el("div", { class: "attempt" }, `attempt ${f.attempt} failed: ${f.name}: ${f.message}`));
  }
  if (step.error) li.append(el("div", { class: "out err" }, `${step.error.name}: ${step.error.message}`));
  else if (step.state === "complete" && kind !== "sleep" && step.output !== undefined) {
    li.append(el("div", { class: step.output === "[REDACTED]" ? "out redacted" : "out" }, fmtValue(step.output)));
  }
  return li;
}

export function logLine(rec) {
  return el("div", { class: rec.stream === "stderr" ? "stderr" : "" },
    el("span", { class: "ts" }, fmtTime(rec.ts)), rec.line);
}

let toastTimer;
export function toast(message, isError = false) {
  let t = document.querySelector(".toast");
  if (!t) { t = el("div", { class: "toast" }); document.body.append(t); }
  t.textContent = message;
  t.className = `toast show${isError ? " err" : ""}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = "toast"; }, 3500);
}

function askForToken() {
  const bar = document.querySelector(".authbar");
  if (bar) bar.classList.add("show");
}

export function setupAuthBar() {
  const bar = document.querySelector(".authbar");
  if (!bar) return;
  const input = bar.querySelector("input");
  bar.querySelector("button").addEventListener("click", () => {
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    location.reload();
  });
}

export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// Failed attempts per step key ("name-count") from an instance's event log.
export async function attemptFailures(uid, steps) {
  const byKey = {};
  if (!steps.some((s) => s.attempts > 1)) return byKey;
  const { items } = await api(`/instances/${encodeURIComponent(uid)}/history`);
  for (const h of items) {
    if (h.kind !== "attempt_failed" || !h.step) continue;
    const error = h.data.error || {};
    (byKey[h.step] ||= []).push({ attempt: h.data.attempt, name: error.name, message: error.message });
  }
  return byKey;
}
