import { api, stream, el, badge, stepItem, attemptFailures, logLine, fmtTime, toast, setupAuthBar, debounce, fmtValue, fmtPretty } from "./common.js";

const PAGE = 20;
const state = { tenant: null, status: "", offset: 0, selected: null, stopDetail: [] };

async function loadInfo() {
  try {
    const info = await api("/info");
    document.getElementById("meta").textContent =
      `backend ${info.backend} · ${info.store} · ${info.isolates.length} live isolate(s)`;
  } catch (e) { /* the auth bar says why */ }
}

async function loadTenants() {
  const box = document.getElementById("tenants");
  const { items } = await api("/tenants");
  box.replaceChildren(
    el("button", { class: `chip${state.tenant === null ? " active" : ""}`, onclick: () => selectTenant(null) }, "all"),
    ...items.map((t) => el("button", {
      class: `chip${state.tenant === t.id ? " active" : ""}`, "data-tenant": t.id,
      title: `version ${t.version} (${t.source}), ${t.versions} version(s)`,
      onclick: () => selectTenant(t.id),
    }, t.id, el("small", {}, String(t.instances)))),
  );
  if (!items.length) box.append(el("div", { class: "empty" }, "No tenants: add tenants/<id>/index.py"));
}

function selectTenant(id) { state.tenant = id; state.offset = 0; loadTenants(); loadInstances(); }

async function loadInstances() {
  const q = new URLSearchParams({ limit: PAGE, offset: state.offset });
  if (state.tenant) q.set("tenant", state.tenant);
  if (state.status) q.set("status", state.status);
  const data = await api(`/instances?${q}`);
  const body = document.getElementById("instances");
  body.replaceChildren(...data.items.map((i) => el("tr", {
    class: i.uid === state.selected ? "selected" : "", "data-uid": i.uid, "data-id": i.id,
    onclick: () => selectInstance(i.uid),
  }, el("td", { class: "id", title: i.id }, i.id), el("td", {}, i.tenant ?? "—"),
     el("td", {}, badge(i.status)), el("td", { title: new Date(i.created * 1000).toLocaleString() }, fmtTime(i.created).slice(0, 8)))));
  document.getElementById("no-instances").hidden = data.items.length > 0;
  const last = Math.min(data.offset + data.items.length, data.total);
  document.getElementById("page-info").textContent = data.total ? `${data.offset + 1}–${last} of ${data.total}` : "";
  document.getElementById("prev").disabled = state.offset === 0;
  document.getElementById("next").disabled = last >= data.total;
}

function selectInstance(uid) {
  state.selected = uid;
  for (const stop of state.stopDetail) stop();
  state.stopDetail = [];
  document.querySelectorAll("#instances tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.uid === uid));
  renderDetailShell(uid);
  const refresh = debounce(() => loadDetail(uid), 120);
  state.stopDetail.push(stream(`/watch?uid=${encodeURIComponent(uid)}`, () => refresh()));
  const logs = document.getElementById("logs");
  state.stopDetail.push(stream(`/instances/${encodeURIComponent(uid)}/logs`, (_ev, rec) => {
    logs.querySelector(".note")?.remove();
    logs.append(logLine(rec));
    logs.scrollTop = logs.scrollHeight;
  }));
  const ticker = setInterval(() => { if (document.querySelector("#timeline li.running, #timeline li.waiting")) loadDetail(uid); }, 1000);
  state.stopDetail.push(() => clearInterval(ticker));
  loadDetail(uid);
}

function renderDetailShell(uid) {
  const act = (action) => async () => {
    try { await api(`/instances/${encodeURIComponent(uid)}/${action}`, { method: "POST" }); toast(`${action}: done`); }
    catch (e) { toast(e.message, true); }
    loadDetail(uid); loadInstances();
  };
  const del = async () => {
    if (!confirm("Delete this instance and all its records?")) return;
    try { await api(`/instances/${encodeURIComponent(uid)}`, { method: "DELETE" }); toast("deleted"); }
    catch (e) { toast(e.message, true); }
    state.selected = null;
    document.getElementById("detail").replaceChildren(el("div", { class: "panel" }, el("div", { class: "empty" }, "Deleted.")));
    loadInstances(); loadTenants();
  };
  const typeInput = el("input", { id: "event-type", placeholder: "event type", value: "approval" });
  const payloadInput = el("input", { id: "event-payload", placeholder: '{"approved": true}', value: '{"approved": true}' });
  const send = async () => {
    let payload;
    try { payload = payloadInput.value.trim() ? JSON.parse(payloadInput.value) : null; }
    catch (e) { toast(`payload is not JSON: ${e.message}`, true); return; }
    try { await api(`/instances/${encodeURIComponent(uid)}/events`, { method: "POST", body: { type: typeInput.value.trim(), payload } }); toast(`event ${typeInput.value} sent`); }
    catch (e) { toast(e.message, true); }
  };
  document.getElementById("detail").replaceChildren(
    el("div", { class: "panel" },
      el("h2", {}, "Instance", el("span", { class: "right", id: "detail-badge" })),
      el("div", { class: "body" },
        el("dl", { class: "kv", id: "detail-kv" }),
        el("div", { class: "toolbar" },
          el("button", { id: "btn-pause", onclick: act("pause") }, "Pause"),
          el("button", { id: "btn-resume", onclick: act("resume") }, "Resume"),
          el("button", { id: "btn-restart", onclick: act("restart") }, "Restart"),
          el("button", { id: "btn-terminate", class: "danger", onclick: act("terminate") }, "Terminate"),
          el("button", { id: "btn-delete", class: "danger", onclick: del }, "Delete")),
        el("div", { class: "event-form" }, typeInput, payloadInput, el("button", { id: "btn-send", onclick: send }, "Send event")),
        el("div", { id: "detail-result" }))),
    el("div", { class: "panel" }, el("h2", {}, "Step timeline"), el("div", { class: "body" }, el("ul", { class: "steps", id: "timeline" }))),
    el("div", { class: "panel" }, el("h2", {}, "Logs"), el("pre", { class: "logs", id: "logs" }, el("span", { class: "note" }, "waiting for output…"))),
  );
}

async function loadDetail(uid) {
  if (state.selected !== uid) return;
  let st;
  try { st = await api(`/instances/${encodeURIComponent(uid)}`); }
  catch (e) { toast(e.message, true); return; }
  document.getElementById("detail-badge")?.replaceChildren(badge(st.status));
  const kv = document.getElementById("detail-kv");
  if (!kv) return;
  kv.replaceChildren(
    el("dt", {}, "id"), el("dd", {}, st.id),
    el("dt", {}, "tenant"), el("dd", {}, st.tenant ?? "—"),
    el("dt", {}, "version"), el("dd", {}, (st.version || "—").slice(0, 16)),
    el("dt", {}, "created"), el("dd", {}, new Date(st.created * 1000).toLocaleString()),
  );
  const terminal = ["complete", "errored", "terminated"].includes(st.status);
  document.getElementById("btn-pause").disabled = terminal || st.status === "paused";
  document.getElementById("btn-resume").disabled = !["paused", "waitingForPause"].includes(st.status);
  document.getElementById("btn-terminate").disabled = terminal;
  document.getElementById("btn-send").disabled = terminal;
  const result = document.getElementById("detail-result");
  result.replaceChildren();
  if (st.status === "complete") result.append(el("p", {}, "Output"), el("div", { class: "result", "data-role": "output" }, fmtPretty(st.output)));
  if (st.error) result.append(el("p", {}, "Error"), el("div", { class: "result err" }, `${st.error.name}: ${st.error.message}`));
  const steps = st.steps || [];
  const failures = await attemptFailures(uid, steps).catch(() => ({}));
  document.getElementById("timeline").replaceChildren(...(steps.length ? steps.map((s) => stepItem(s, failures[`${s.name}-${s.count}`])) : [el("div", { class: "empty" }, st.status === "queued" ? "queued…" : "no steps yet")]));
  const row = document.querySelector(`#instances tr[data-uid="${CSS.escape(uid)}"] td:nth-child(3)`);
  row?.replaceChildren(badge(st.status));
}

setupAuthBar();
document.getElementById("status-filter").addEventListener("change", (e) => { state.status = e.target.value; state.offset = 0; loadInstances(); });
document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadInstances(); });
document.getElementById("next").addEventListener("click", () => { state.offset += PAGE; loadInstances(); });
document.getElementById("rescan").addEventListener("click", async () => {
  try { const r = await api("/tenants/rescan", { method: "POST" }); toast(r.deployed.length ? `deployed ${r.deployed.map((d) => d.tenant).join(", ")}` : "no changes"); loadTenants(); }
  catch (e) { toast(e.message, true); }
});
const refreshLists = debounce(() => { loadInstances(); loadTenants(); }, 400);
stream("/watch", () => refreshLists());
loadInfo(); loadTenants().catch(() => {}); loadInstances().catch(() => {});
const hash = new URLSearchParams(location.hash.slice(1)).get("uid");
if (hash) selectInstance(hash);
