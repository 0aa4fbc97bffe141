// Glassbox run page: filmstrip, step details, overlays, live steps (SSE), labelling.
// Recorded text is untrusted (a run folder may come from elsewhere): every value put into HTML goes through esc(),
// paths through fileUrl(); writes carry the per-server token from the page's <meta name="glassbox-token">.
"use strict";
const state = JSON.parse(document.getElementById("initial").textContent);
const token = document.querySelector('meta[name="glassbox-token"]').content;
const writeHeaders = {"Content-Type": "application/json", "X-Glassbox-Token": token};
const runId = state.run.run_id;
let current = -1;
let followLast = true;
let picking = null; // {coordinate: [x, y]} while marking where the agent should have clicked
const $ = (id) => document.getElementById(id);
const fileUrl = (p) => `/runs/${encodeURIComponent(runId)}/files/` + String(p ?? "").split("/").map(encodeURIComponent).join("/");
const num = (v, digits) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "?");
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

function actionLabel(step) {
  const a = step.action;
  if (!a) return step.error_kind === "parse" ? "parse error" : "no action";
  let extra = "";
  if (Array.isArray(a.coordinate)) extra = ` (${a.coordinate.map((v) => Math.round(v)).join(", ")})`;
  else if (a.text !== undefined) extra = ` “${String(a.text).slice(0, 24)}”`;
  else if (Array.isArray(a.keys)) extra = ` ${a.keys.join("+")}`;
  else if (a.status) extra = ` ${a.status}`;
  return String(a.action) + extra;
}

function labelsFor(i) { return state.labels.filter((l) => l.step === i); }

function filmItem(step) {
  const b = document.createElement("button");
  b.className = "film" + (step.outcome === "error" ? " err" : "");
  b.id = `film-${step.index}`;
  b.dataset.index = step.index;
  b.innerHTML = `<img loading="lazy" src="${esc(fileUrl(step.screenshot))}" alt=""><span class="n">${esc(step.index)}</span>` +
    `<span class="a">${esc(actionLabel(step))}</span><span class="lab"></span>`;
  b.addEventListener("click", () => { followLast = step.index === state.steps.length - 1; select(step.index); });
  return b;
}

function refreshFilmLabels() {
  for (const step of state.steps) {
    const el = document.querySelector(`#film-${step.index} .lab`);
    if (!el) continue;
    const ls = labelsFor(step.index);
    el.textContent = ls.length ? (ls[ls.length - 1].verdict === "wrong" ? "✗ labelled" : "✓ labelled") : "";
    el.className = "lab " + (ls.length ? ls[ls.length - 1].verdict : "");
  }
}

function renderFilmstrip() {
  const strip = $("filmstrip");
  strip.innerHTML = "";
  if (!state.steps.length) strip.innerHTML = '<span class="muted">No steps yet.</span>';
  for (const step of state.steps) strip.appendChild(filmItem(step));
  refreshFilmLabels();
}

function modelPointPx(step) {
  const c = step.coordinate;
  if (!c) return null;
  const [w, h] = c.screenshot_size;
  if (c.mode === "absolute" && c.resized_size) return [c.model[0] / c.resized_size[0] * w, c.model[1] / c.resized_size[1] * h];
  return [c.model[0] / c.divisor * w, c.model[1] / c.divisor * h];
}

function drawOverlay() {
  const step = state.steps[current];
  const svg = $("overlay");
  if (!step) { svg.innerHTML = ""; return; }
  const [w, h] = step.screenshot_size;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  let out = "";
  const c = step.coordinate;
  if (c && $("t-box").checked && step.evidence) {
    const [l, t, r, b] = step.evidence.box;
    out += `<rect class="ev" x="${esc(l)}" y="${esc(t)}" width="${esc(r - l)}" height="${esc(b - t)}"/>`;
  }
  if (c && $("t-exec").checked) {
    const s = c.device_scale_factor;
    const [x, y] = [c.css[0] * s, c.css[1] * s];
    out += `<circle class="exec" cx="${esc(x)}" cy="${esc(y)}" r="11"/><line class="exec" x1="${esc(x - 17)}" y1="${esc(y)}" x2="${esc(x + 17)}" y2="${esc(y)}"/><line class="exec" x1="${esc(x)}" y1="${esc(y - 17)}" x2="${esc(x)}" y2="${esc(y + 17)}"/>`;
  }
  const mp = modelPointPx(step);
  if (mp && $("t-model").checked) out += `<rect class="model" x="${esc(mp[0] - 7)}" y="${esc(mp[1] - 7)}" width="14" height="14"/>`;
  if ($("t-labels").checked) {
    for (const l of labelsFor(current)) {
      if (l.correction && l.correction.coordinate) {
        const [x, y] = [l.correction.coordinate[0] / 1000 * w, l.correction.coordinate[1] / 1000 * h];
        out += `<circle class="fix" cx="${esc(x)}" cy="${esc(y)}" r="12"/><text class="fixt" x="${esc(x + 16)}" y="${esc(y + 5)}">fix</text>`;
      }
    }
  }
  if (picking && picking.coordinate) {
    const [x, y] = [picking.coordinate[0] / 1000 * w, picking.coordinate[1] / 1000 * h];
    out += `<circle class="pick" cx="${esc(x)}" cy="${esc(y)}" r="12"/>`;
  }
  svg.innerHTML = out;
}

function kv(rows) {
  return "<table class=\"kv\">" + rows.filter((r) => r).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("") + "</table>";
}

function renderDetails() {
  const step = state.steps[current];
  const d = $("details");
  if (!step) { d.innerHTML = '<p class="muted">Waiting for the first step…</p>'; return; }
  const t = step.timings;
  const conf = step.confidence === null || step.confidence === undefined
    ? `<span class="muted">unknown — ${esc(step.confidence_reason || step.unavailable.confidence || "")}</span>`
    : `<meter min="0" max="1" value="${esc(step.confidence)}"></meter> ${num(step.confidence, 3)}` +
      Object.entries(step.confidence_parts || {}).map(([k, v]) => `<div class="muted">${esc(k)}: ${Number(v).toFixed(3)}</div>`).join("");
  const el = step.element ? `${esc(step.element.tag)} “${esc(step.element.text.slice(0, 60))}”` : "";
  const ev = step.evidence ? `<img class="crop" src="${esc(fileUrl(step.evidence.crop))}" alt="evidence crop">` : `<span class="muted">${esc(step.unavailable.evidence || "")}</span>`;
  const coord = step.coordinate
    ? `model (${esc(step.coordinate.model.map((v) => +v.toFixed(1)).join(", "))}) ${esc(step.coordinate.mode)} → CSS (${esc(step.coordinate.css.join(", "))}) ×${esc(step.coordinate.device_scale_factor)}${step.coordinate.clamped ? " <b>clamped</b>" : ""}`
    : "";
  const labels = labelsFor(current).map((l) => `<li class="${esc(l.verdict)}">${l.verdict === "wrong" ? "✗ wrong" : "✓ correct"}` +
    (l.correction ? ` → ${esc(l.correction.action)}${l.correction.coordinate ? " (" + esc(l.correction.coordinate.map(Math.round).join(", ")) + ")" : ""}${l.correction.text ? " “" + esc(l.correction.text) + "”" : ""}` : "") +
    (l.note ? ` <span class="muted">${esc(l.note)}</span>` : "") + ` <button class="undo" data-id="${esc(l.id)}">Undo</button></li>`).join("");
  d.innerHTML = `
    <h2 id="step-title">Step ${esc(step.index)} · ${esc(actionLabel(step))}</h2>
    ${step.error ? `<div class="error">${esc(step.error_kind || "error")}: ${esc(step.error)}</div>` : ""}
    ${step.replay ? `<div class="replay">${esc(step.replay.decision)} · recorded step ${esc(step.replay.source_step ?? "—")}` +
      (step.replay.screen_diff !== null ? ` · screen diff ${num(step.replay.screen_diff, 3)}` : "") +
      (step.replay.reason ? `<br>${esc(step.replay.reason)}` : "") +
      (step.replay.side_by_side ? `<br><a href="${esc(fileUrl(step.replay.side_by_side))}" target="_blank" rel="noopener">side by side</a>` : "") + `</div>` : ""}
    <details open><summary>Reasoning</summary><pre class="reasoning">${esc(step.reasoning || "(none)")}</pre></details>
    <details open><summary>Tool call</summary><pre class="tool">${esc(step.tool_calls.map((c) => JSON.stringify(c)).join("\n") || "(none)")}</pre></details>
    ${kv([["confidence", conf], coord && ["coordinate", coord], el && ["element", el], ["evidence", ev],
          ["url", esc(step.url || "")], ["timings", `perceive ${num(t.perceive_ms, 0)} · think ${num(t.think_ms, 0)} · act ${num(t.act_ms, 0)} · record ${num(t.record_ms, 1)} ms`],
          ["policy", esc(step.policy + (step.model ? " · " + step.model : ""))],
          step.decoding && ["decoding", decodingLabel(step.decoding)],
          ["attention", (step.attention || []).filter((a) => a.group === "deep").map((a) =>
            `${esc(a.target)}: peak (${esc(a.peak_px.join(", "))}), concentration ${num(a.concentration, 2)}` +
            (a.peak_to_click_px !== null ? `, ${num(a.peak_to_click_px, 0)} px from click` : "")).join("<br>") ||
            `<span class="muted">${esc((step.unavailable || {}).attention || "")}</span>`]])}
    <details><summary>Raw output</summary><pre>${esc(step.raw_output || "")}</pre></details>
    <details><summary>Not recorded</summary><ul class="muted">${Object.entries(step.unavailable || {}).map(([k, v]) => `<li>${esc(k)}: ${esc(v)}</li>`).join("")}</ul></details>
    <div class="label-box">
      <h3>Label this step</h3>
      <button id="mark-correct">Correct</button> <button id="mark-wrong">Wrong…</button>
      <div id="fix" ${picking ? "" : "hidden"}>
        <p class="hint">Click on the screenshot where it should have acted.</p>
        <label>Action <select id="fix-action">${["left_click", "double_click", "right_click", "triple_click", "upload_file", "type", "key", "scroll", "wait", "terminate"].map((a) => `<option>${a}</option>`).join("")}</select></label>
        <label>Text <input id="fix-text" placeholder="text to type / keys"></label>
        <label>Note <input id="fix-note" placeholder="why"></label>
        <div class="point" id="fix-point">${picking && picking.coordinate ? "point " + esc(picking.coordinate.map(Math.round).join(", ")) : "no point yet"}</div>
        <button id="fix-save">Save label</button> <button id="fix-cancel">Cancel</button>
        <div id="fix-error" class="error" hidden></div>
      </div>
      <ul class="labels">${labels}</ul>
      <button id="resume-btn" title="Replay the steps before this one, apply a correction labelled here, then let the run's policy go on">Resume from this step</button>
    </div>`;
  $("mark-correct").onclick = () => saveLabel({verdict: "correct"});
  $("resume-btn").onclick = () => startReplay({from_step: current});
  $("mark-wrong").onclick = () => { picking = {coordinate: null}; renderDetails(); drawOverlay(); };
  if (picking) {
    const a = step.action && step.action.action;
    if (a && [...$("fix-action").options].some((o) => o.value === a)) $("fix-action").value = a;
    $("fix-save").onclick = () => {
      const action = $("fix-action").value;
      const text = $("fix-text").value;
      const correction = {action};
      if (picking.coordinate) correction.coordinate = picking.coordinate;
      if (action === "type") correction.text = text;
      if (action === "key") correction.keys = text.split("+").map((k) => k.trim()).filter(Boolean);
      saveLabel({verdict: "wrong", correction, note: $("fix-note").value || null});
    };
    $("fix-cancel").onclick = () => { picking = null; renderDetails(); drawOverlay(); };
  }
  for (const b of d.querySelectorAll("button.undo")) b.onclick = () => undoLabel(+b.dataset.id);
}

async function saveLabel(body) {
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/steps/${current}/labels`, {
    method: "POST", headers: writeHeaders, body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = $("fix-error");
    if (e) { e.hidden = false; e.textContent = data.error || data.detail || `error ${r.status}`; } else alert(data.error || r.status);
    return;
  }
  state.labels.push(data);
  picking = null;
  renderDetails(); drawOverlay(); refreshFilmLabels();
}

async function startReplay(body) {
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/replay`, {
    method: "POST", headers: writeHeaders, body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { alert(data.error || data.detail || `error ${r.status}`); return; }
  location.href = data.url;
}
$("replay-btn").addEventListener("click", () => startReplay({fallback: "none"}));
$("replay-fb-btn").addEventListener("click", () => startReplay({fallback: "policy"}));

async function undoLabel(id) {
  const r = await fetch(`/api/labels/${encodeURIComponent(id)}`, {method: "DELETE", headers: {"X-Glassbox-Token": token}});
  if (r.ok) { state.labels = state.labels.filter((l) => l.id !== id); renderDetails(); drawOverlay(); refreshFilmLabels(); }
}

function select(i) {
  if (i < 0 || i >= state.steps.length) return;
  if (i !== current) picking = null;
  current = i;
  const step = state.steps[i];
  $("shot").src = fileUrl(step.screenshot);
  for (const el of document.querySelectorAll(".film.sel")) el.classList.remove("sel");
  const item = $(`film-${i}`);
  if (item) { item.classList.add("sel"); item.scrollIntoView({block: "nearest", inline: "nearest"}); }
  history.replaceState(null, "", `#step-${i}`);
  renderDetails(); drawOverlay();
  if (window.attentionPanel) window.attentionPanel.show(runId, step.index); // templates/_attention.html
}

$("shot-wrap").addEventListener("click", (ev) => {
  if (!picking) return;
  const img = $("shot").getBoundingClientRect();
  const x = (ev.clientX - img.left) / img.width * 1000, y = (ev.clientY - img.top) / img.height * 1000;
  if (x < 0 || y < 0 || x > 1000 || y > 1000) return;
  picking.coordinate = [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  $("fix-point").textContent = "point " + picking.coordinate.map(Math.round).join(", ");
  drawOverlay();
});
for (const id of ["t-model", "t-exec", "t-box", "t-labels"]) $(id).addEventListener("change", drawOverlay);
document.addEventListener("keydown", (ev) => {
  if (ev.target.matches("input, select, textarea")) return;
  if (ev.key === "ArrowRight" || ev.key === "j") { followLast = current + 1 === state.steps.length - 1; select(current + 1); }
  if (ev.key === "ArrowLeft" || ev.key === "k") { followLast = false; select(current - 1); }
  if (ev.key === "Escape" && picking) { picking = null; renderDetails(); drawOverlay(); }
});
document.getElementById("graph").addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-step]");
  if (a && a.dataset.step !== "") { ev.preventDefault(); followLast = false; select(+a.dataset.step); }
});

function setStatus(run) {
  const s = $("run-status");
  s.textContent = run.status; s.className = `status status-${run.status}`;
  $("end-reason").textContent = run.end_reason || "";
}

// -- a step waiting for a person (agent.approval): Approve, Correct (click the spot), Skip, Stop; Pause / Resume --
const FIX_ACTIONS = ["left_click", "double_click", "right_click", "triple_click", "mouse_move", "type", "key", "scroll", "wait", "terminate", "upload_file"];
let pending = null; // the held step (pending.json), or null
let fixing = null; // {coordinate: [x, y] | null} while the person marks where the step should act
let clock = null;

function describeAction(a) {
  if (!a) return "no action";
  let extra = "";
  if (a.text !== undefined) extra += ` “${String(a.text).slice(0, 60)}”`;
  if (Array.isArray(a.keys)) extra += ` ${a.keys.join("+")}`;
  if (a.status) extra += ` ${a.status}`;
  if (a.file) extra += ` ${a.file}`;
  return String(a.action) + extra;
}

function drawPendingOverlay() {
  const svg = $("pending-overlay");
  if (!pending) { svg.innerHTML = ""; return; }
  const [w, h] = pending.screenshot_size;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  let out = "";
  if (pending.point) {
    const [x, y] = [pending.point[0] / 1000 * w, pending.point[1] / 1000 * h];
    out += `<circle class="proposed" cx="${esc(x)}" cy="${esc(y)}" r="16"/><line class="proposed" x1="${esc(x - 24)}" y1="${esc(y)}" x2="${esc(x + 24)}" y2="${esc(y)}"/>` +
      `<line class="proposed" x1="${esc(x)}" y1="${esc(y - 24)}" x2="${esc(x)}" y2="${esc(y + 24)}"/><text class="proposedt" x="${esc(x + 20)}" y="${esc(y - 14)}">proposed</text>`;
  }
  if (fixing && fixing.coordinate) {
    const [x, y] = [fixing.coordinate[0] / 1000 * w, fixing.coordinate[1] / 1000 * h];
    out += `<circle class="pick" cx="${esc(x)}" cy="${esc(y)}" r="16"/><text class="fixt" x="${esc(x + 20)}" y="${esc(y + 6)}">here</text>`;
  }
  svg.innerHTML = out;
}

function tickClock() {
  if (!pending) return;
  const left = Math.max(0, Math.round((Date.parse(pending.asked_at) + pending.timeout_s * 1000 - Date.now()) / 1000));
  const then = {proceed: "it acts anyway", skip: "it is skipped", stop: "the run stops"}[pending.on_timeout] || pending.on_timeout;
  $("pending-clock").textContent = `no answer in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}: ${then}`;
}

function renderPending() {
  const box = $("pending");
  if (clock) { clearInterval(clock); clock = null; }
  if (!pending) { box.hidden = true; fixing = null; return; }
  box.hidden = false;
  $("pending-title").textContent = `Step ${pending.step} waits for you`;
  $("pending-why").textContent = pending.why === "ask_before" ? `asked before ${pending.action.action}` : "low confidence";
  $("pending-why").title = pending.why_text;
  const conf = pending.confidence === null || pending.confidence === undefined ? "unknown" : num(pending.confidence, 2);
  const point = pending.point ? ` at (${pending.point.map(Math.round).join(", ")})` : "";
  $("pending-proposed").innerHTML = `Proposed: <b>${esc(describeAction(pending.action))}${esc(point)}</b> · confidence <span class="conf">${esc(conf)}</span>` +
    `<div class="muted">${esc(pending.why_text)} · ${esc(pending.policy)}${pending.model ? " · " + esc(pending.model) : ""}</div>`;
  $("pending-reasoning").textContent = pending.reasoning || "(no reasoning)";
  const shot = $("pending-shot");
  const src = pending.screenshot ? fileUrl(pending.screenshot) : "";
  if (shot.getAttribute("src") !== src) shot.src = src;
  $("ap-fix").hidden = !fixing;
  showTextField();
  $("pending-shot-wrap").classList.toggle("picking", !!fixing);
  $("ap-point").textContent = fixing && fixing.coordinate ? "point " + fixing.coordinate.map(Math.round).join(", ") : "no point yet";
  for (const b of box.querySelectorAll(".pending-buttons button, #ap-send")) b.disabled = false;
  $("ap-sent").hidden = true;
  drawPendingOverlay();
  tickClock();
  clock = setInterval(tickClock, 1000);
}

function showPending(next) {
  const same = pending && next && pending.id === next.id;
  pending = next;
  if (!same) { fixing = null; $("ap-error").hidden = true; renderPending(); }
}

async function answer(choice, correction) {
  if (!pending) return;
  const body = {id: pending.id, choice};
  if (correction) body.correction = correction;
  for (const b of $("pending").querySelectorAll(".pending-buttons button, #ap-send")) b.disabled = true;
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/approval`, {method: "POST", headers: writeHeaders, body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    for (const b of $("pending").querySelectorAll(".pending-buttons button, #ap-send")) b.disabled = false;
    const e = $("ap-error"); e.hidden = false; e.textContent = data.error || data.detail || `error ${r.status}`;
    return;
  }
  $("ap-error").hidden = true;
  $("ap-sent").hidden = false;
  $("ap-sent").textContent = `${choice} sent; waiting for the run to take it…`;
}

$("ap-approve").addEventListener("click", () => answer("approve"));
$("ap-skip").addEventListener("click", () => answer("skip"));
$("ap-stop").addEventListener("click", () => answer("stop"));
$("ap-correct").addEventListener("click", () => {
  if (!pending) return;
  fixing = {coordinate: null};
  const sel = $("ap-action");
  const proposed = pending.action.action;
  const names = FIX_ACTIONS.includes(proposed) ? FIX_ACTIONS : [proposed, ...FIX_ACTIONS];
  sel.innerHTML = names.map((a) => `<option>${esc(a)}</option>`).join("");
  sel.value = proposed;
  $("ap-text").value = pending.action.text !== undefined ? String(pending.action.text) : Array.isArray(pending.action.keys) ? pending.action.keys.join("+") : "";
  renderPending();
});
function showTextField() {
  const a = $("ap-action").value;
  $("ap-text-wrap").hidden = !["type", "key", "answer", "goto_url"].includes(a);
  $("ap-text").placeholder = a === "key" ? "keys, e.g. ctrl+a" : a === "goto_url" ? "URL or path" : "text to type";
}
$("ap-action").addEventListener("change", showTextField);
$("ap-cancel").addEventListener("click", () => { fixing = null; $("ap-error").hidden = true; renderPending(); });
$("ap-send").addEventListener("click", () => {
  const action = $("ap-action").value;
  const text = $("ap-text").value;
  const correction = {action};
  if (fixing && fixing.coordinate) correction.coordinate = fixing.coordinate;
  if (action === "type") correction.text = text;
  if (action === "key") correction.keys = text.split("+").map((k) => k.trim()).filter(Boolean);
  if (action === "answer" || action === "goto_url") correction.text = text;
  answer("correct", correction);
});
$("pending-shot-wrap").addEventListener("click", (ev) => {
  if (!fixing) return;
  const img = $("pending-shot").getBoundingClientRect();
  const x = (ev.clientX - img.left) / img.width * 1000, y = (ev.clientY - img.top) / img.height * 1000;
  if (x < 0 || y < 0 || x > 1000 || y > 1000) return;
  fixing.coordinate = [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  $("ap-error").hidden = true;
  $("ap-point").textContent = "point " + fixing.coordinate.map(Math.round).join(", ");
  drawPendingOverlay();
});

function showPause(p) {
  const running = state.run.status === "running";
  const btn = $("pause-btn"), note = $("pause-note");
  btn.hidden = !running || !p;
  if (!running || !p) { note.hidden = true; return; }
  btn.textContent = p.paused ? "Resume" : "Pause";
  btn.title = p.paused ? "Let the run go on" : "Hold the run before its next step";
  note.hidden = !p.paused;
  note.textContent = p.holding_before !== null && p.holding_before !== undefined
    ? `paused before step ${p.holding_before}` : "pausing after the current step…";
}

$("pause-btn").addEventListener("click", async () => {
  const paused = $("pause-btn").textContent === "Pause";
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/pause`, {method: "POST", headers: writeHeaders, body: JSON.stringify({paused})});
  const data = await r.json().catch(() => ({}));
  if (r.ok) { state.pause = data; showPause(data); } else alert(data.error || data.detail || `error ${r.status}`);
});

function live() {
  showPending(state.pending || null);
  showPause(state.pause || null);
  if (state.run.status !== "running") return;
  const es = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events?after=${state.steps.length - 1}`);
  es.addEventListener("step", (ev) => {
    const step = JSON.parse(ev.data);
    if (step.index < state.steps.length) return;
    if (!state.steps.length) $("filmstrip").innerHTML = "";
    state.steps.push(step);
    $("filmstrip").appendChild(filmItem(step));
    $("step-count").textContent = state.steps.length;
    if (followLast || current < 0) select(step.index);
  });
  es.addEventListener("run", (ev) => { state.run = JSON.parse(ev.data); setStatus(state.run); showPause(state.pause); });
  es.addEventListener("pending", (ev) => showPending(JSON.parse(ev.data)));
  es.addEventListener("pause", (ev) => { state.pause = JSON.parse(ev.data); showPause(state.pause); });
  es.addEventListener("end", async () => {
    es.close();
    const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/graph`);
    if (r.ok) $("graph").innerHTML = await r.text();
  });
}

renderFilmstrip();
const m = location.hash.match(/^#step-(\d+)$/);
const start = m ? Math.min(+m[1], state.steps.length - 1) : state.steps.length - 1;
if (start >= 0) { followLast = start === state.steps.length - 1; select(start); } else renderDetails();
live();

function decodingLabel(d) {
  // e.g. "fast, compiled · prompt 3529 tokens, 2253 reused · vision 23 · prefill 51 ms · 4.7 ms/token"
  const parts = [esc(d.path) + (d.compiled ? ", compiled" : "")];
  parts.push(`prompt ${esc(d.prompt_tokens)} tokens` + (d.path === "fast" ? `, ${esc(d.prefix_reused)} reused` : "") +
    (d.images_reused ? ` (${esc(d.images_reused)} screenshot${d.images_reused > 1 ? "s" : ""} unchanged)` : ""));
  const ms = (v) => (v === null || v === undefined ? null : v.toFixed(0));
  const times = [["vision", d.images_encoded === 0 ? null : ms(d.vision_ms)], ["prefill", ms(d.prefill_ms)], [d.path === "plain" ? "generate" : "decode", ms(d.decode_ms)]]
    .filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`);
  if (times.length) parts.push(times.join(" · ") + " ms");
  if (d.ms_per_token) parts.push(`${d.ms_per_token.toFixed(1)} ms/token`);
  if (d.compile_ms) parts.push(`compiled in ${(d.compile_ms / 1000).toFixed(1)} s`);
  return parts.join(" · ");
}
