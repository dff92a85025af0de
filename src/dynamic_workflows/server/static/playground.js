import { api, stream, el, badge, stepItem, attemptFailures, logLine, fmtValue, fmtPretty, setupAuthBar, debounce } from "./common.js";

const SEED = `from dynamic_workflows.sdk import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        name = event.payload.get("name", "world")

        greeting = await step.do("compose greeting", lambda: f"Hello, {name}!")
        print(greeting)

        await step.sleep("take a breath", "1 second")

        def count_letters(ctx):
            # The first attempt fails: watch the retry in the checklist.
            if ctx.attempt < 2:
                raise RuntimeError("flaky service, try again")
            return sum(c.isalpha() for c in greeting)

        letters = await step.do(
            "count letters", count_letters, retries={"limit": 3, "delay": "1 second"}
        )
        secret = await step.do("fetch api key", lambda: "sk-123", sensitive="output")
        print(f"{name} has {letters} letters; the key has {len(secret)} characters")
        return {"greeting": greeting, "letters": letters}
`;

const STORE_KEY = "dynwf-playground-code";
const code = document.getElementById("code");
const gutter = document.getElementById("gutter");
const payload = document.getElementById("payload");
const runError = document.getElementById("run-error");

function syncGutter() {
  const n = code.value.split("\n").length;
  code.style.height = `${Math.max(460, (n + 2) * 20 + 24)}px`;
  gutter.textContent = Array.from({ length: n }, (_, i) => i + 1).join("\n");
  gutter.scrollTop = code.scrollTop;
}

code.value = localStorage.getItem(STORE_KEY) || SEED;
syncGutter();
code.addEventListener("input", () => { localStorage.setItem(STORE_KEY, code.value); syncGutter(); });
code.addEventListener("scroll", () => { gutter.scrollTop = code.scrollTop; });
code.addEventListener("keydown", (e) => {
  if (e.key === "Tab") {
    e.preventDefault();
    const { selectionStart: s, selectionEnd: t } = code;
    code.setRangeText("    ", s, t, "end");
    code.dispatchEvent(new Event("input"));
  } else if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) {
    // Keep the indentation of the current line (and indent after a colon).
    const s = code.selectionStart;
    const line = code.value.slice(code.value.lastIndexOf("\n", s - 1) + 1, s);
    let indent = line.match(/^\s*/)[0];
    if (line.trimEnd().endsWith(":")) indent += "    ";
    e.preventDefault();
    code.setRangeText("\n" + indent, s, code.selectionEnd, "end");
    code.dispatchEvent(new Event("input"));
  }
});
document.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
document.getElementById("reset").addEventListener("click", () => { code.value = SEED; code.dispatchEvent(new Event("input")); });
document.getElementById("run").addEventListener("click", () => run());

async function run() {
  runError.textContent = "";
  let body;
  try { body = payload.value.trim() ? JSON.parse(payload.value) : {}; }
  catch (e) { runError.textContent = `payload is not JSON: ${e.message}`; return; }
  const button = document.getElementById("run");
  button.disabled = true;
  try {
    const created = await api("/playground/runs", { method: "POST", body: { code: code.value, payload: body } });
    addCard(created);
  } catch (e) {
    runError.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

function addCard({ uid, id, tenant }) {
  document.getElementById("runs-empty")?.remove();
  const status = el("span", { class: "status" }, badge("queued"));
  const steps = el("ul", { class: "steps" }, el("div", { class: "empty" }, "starting…"));
  const logs = el("pre", { class: "logs" }, el("span", { class: "note" }, "no output yet"));
  const result = el("div", { class: "section", hidden: true });
  const card = el("article", { class: "card", "data-uid": uid },
    el("header", {}, el("strong", {}, "Run"), el("span", { class: "id", title: tenant }, id.slice(0, 8)),
      el("a", { class: "small-link", href: `/admin/#uid=${encodeURIComponent(uid)}`, target: "_blank", rel: "noopener" }, "dashboard"), status),
    el("div", { class: "section" }, steps), result, logs);
  document.getElementById("runs").prepend(card);

  let done = false;
  const stops = [];
  const refresh = async () => {
    const st = await api(`/instances/${encodeURIComponent(uid)}`);
    status.replaceChildren(badge(st.status));
    card.dataset.status = st.status;
    if (st.steps && st.steps.length) {
      const failures = await attemptFailures(uid, st.steps).catch(() => ({}));
      steps.replaceChildren(...st.steps.map((s) => stepItem(s, failures[`${s.name}-${s.count}`])));
    }
    if (st.status === "complete") {
      result.hidden = false;
      result.replaceChildren(el("div", { class: "result", "data-role": "output" }, fmtPretty(st.output)));
    } else if (st.error) {
      result.hidden = false;
      result.replaceChildren(el("div", { class: "result err", "data-role": "error" }, `${st.error.name}: ${st.error.message}`));
    }
    if (["complete", "errored", "terminated"].includes(st.status) && !done) {
      done = true;
      setTimeout(() => stops.forEach((s) => s()), 1500);  // let the last log lines arrive
    }
  };
  const soon = debounce(() => refresh().catch(() => {}), 80);
  stops.push(stream(`/watch?uid=${encodeURIComponent(uid)}`, soon));
  stops.push(stream(`/instances/${encodeURIComponent(uid)}/logs`, (_ev, rec) => {
    logs.querySelector(".note")?.remove();
    logs.append(logLine(rec));
    logs.scrollTop = logs.scrollHeight;
  }));
  const ticker = setInterval(() => { if (!done) soon(); else clearInterval(ticker); }, 1000);
  refresh().catch(() => {});
}

setupAuthBar();
