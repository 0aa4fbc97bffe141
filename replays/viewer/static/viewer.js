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
// The API counts lines from 0 (as the files are read); people, the CLI and the HTML export count them from 1.
const lineNumber = (step) => (Number.isInteger(step.line) ? step.line + 1 : "?");

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
function decisionsFor(i) { return (state.decisions || []).filter((d) => d.step === i); }
// The step's reasoning-action verdict: OCR's where read (the page's verdicts), else the one recorded with the step.
function verdictOf(step) { return (state.verdicts || {})[step.index] || step.consistency || null; }

// state.steps[i] is the step recorded with index i; an unreadable line of steps.jsonl is {index, line, unreadable}
// in its place, so a label always goes to the step that was selected (never one shifted by a skipped line).
function placeStep(entry) {
  while (state.steps.length < entry.index) state.steps.push({index: state.steps.length, unreadable: "no line was recorded for this step"});
  state.steps[entry.index] = entry;
}
function placeSteps(entries) { state.steps = []; for (const e of entries) placeStep(e); }

// A person's approval answer that made the step act elsewhere (agent.approval: gate "replace", answered by a person).
function correctedByPerson(step) {
  const g = step.gate;
  return !!g && g.decision === "replace" && (g.answered_by === "viewer" || g.answered_by === "terminal");
}

function confText(v) { return typeof v === "number" && isFinite(v) ? v.toFixed(2) : "?"; }

function filmItem(step) {
  const b = document.createElement("button");
  b.id = `film-${step.index}`;
  b.dataset.index = step.index;
  if (step.unreadable) {
    b.className = "film unreadable";
    b.title = `step ${step.index}: line ${lineNumber(step)} of steps.jsonl cannot be read (${step.unreadable})`;
    b.innerHTML = `<span class="noshot">⚠ unreadable</span><span class="n">${esc(step.index)}</span>` +
      `<span class="a">${esc(step.unreadable)}</span><span class="marks"></span>`;
  } else {
    const band = window.confBand(step.confidence);
    b.className = "film" + (step.outcome === "error" ? " err" : "") + ` band-${band}`;
    b.dataset.confidence = step.confidence ?? "";
    b.title = `step ${step.index} · confidence ${confText(step.confidence)} (${band})`;
    b.innerHTML = `<img loading="lazy" src="${esc(fileUrl(step.screenshot))}" alt=""><span class="n">${esc(step.index)}</span>` +
      `<span class="cb conf-${band}" title="confidence ${esc(band)}">${esc(confText(step.confidence))}</span>` +
      `<span class="a">${esc(actionLabel(step))}</span><span class="marks"></span>`;
  }
  b.addEventListener("click", () => { followLast = step.index === state.steps.length - 1; select(step.index); });
  return b;
}

function refreshFilmLabels() {
  for (const step of state.steps) {
    const el = document.querySelector(`#film-${step.index} .marks`);
    if (!el) continue;
    const ls = labelsFor(step.index);
    const last = ls.length ? ls[ls.length - 1] : null;
    let out = "";
    if (last) out += last.verdict === "wrong" ? '<span class="mk wrong" title="labelled wrong">✗</span>' : '<span class="mk correct" title="labelled correct">✓</span>';
    if (!step.unreadable && window.glassboxOcr) out += window.glassboxOcr.filmMark(verdictOf(step)); // static/ocr.js
    if (!step.unreadable && correctedByPerson(step)) out += `<span class="mk corrected" title="corrected by a person (${esc(step.gate.answered_by)}) before acting">✎</span>`;
    el.innerHTML = out;
    el.parentElement.classList.toggle("labelled", !!last);
  }
}

function renderFilmstrip() {
  const strip = $("filmstrip");
  strip.innerHTML = "";
  if (!state.steps.length) strip.innerHTML = '<span class="muted">No steps yet.</span>';
  for (const step of state.steps) strip.appendChild(filmItem(step));
  refreshFilmLabels();
  refreshLeast();
}

// The step with the lowest known confidence (the first of equals); -1 when no step has one.
function leastConfident() {
  let best = -1;
  for (const s of state.steps) {
    if (s.unreadable || typeof s.confidence !== "number") continue;
    if (best < 0 || s.confidence < state.steps[best].confidence) best = s.index;
  }
  return best;
}
function refreshLeast() {
  const i = leastConfident(), btn = $("least-btn");
  btn.disabled = i < 0;
  btn.title = i < 0 ? "no step has a confidence" : `Select step ${i}, the lowest confidence (${confText(state.steps[i].confidence)}) (key l)`;
}
function jumpToLeast() {
  const i = leastConfident();
  if (i >= 0) { followLast = false; select(i); }
}
$("least-btn").addEventListener("click", jumpToLeast);

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
  if (!step || step.unreadable) { svg.innerHTML = ""; return; }
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
  if ($("t-asked") && $("t-asked").checked) {
    decisionsFor(current).forEach((dec, n) => {
      if (!Array.isArray(dec.pixel)) return;
      const [x, y] = dec.pixel.map(Number);
      if (!isFinite(x) || !isFinite(y)) return;
      out += `<circle class="asked" cx="${esc(x)}" cy="${esc(y)}" r="13"/><text class="askedt" x="${esc(x + 16)}" y="${esc(y - 8)}">${esc("asked " + (n + 1))}</text>`;
    });
  }
  if (picking && picking.coordinate) {
    const [x, y] = [picking.coordinate[0] / 1000 * w, picking.coordinate[1] / 1000 * h];
    out += `<circle class="pick" cx="${esc(x)}" cy="${esc(y)}" r="12"/>`;
  }
  svg.innerHTML = out;
}

// What a model said it would do here when asked afterwards (glassbox decide): beside what the run did.
function decisionsHtml(list) {
  if (!list.length) return "";
  const items = list.map((dec, n) => {
    const who = esc(dec.policy + (dec.model ? " · " + dec.model : ""));
    const what = dec.error ? `<span class="error">${esc(dec.error)}</span>`
      : esc(dec.action || "no action") + (Array.isArray(dec.pixel) ? ` at (${esc(dec.pixel.join(", "))})` : "");
    const calls = (dec.tool_calls || []).map((c) => JSON.stringify(c)).join("\n");
    return `<li><b>asked ${n + 1}</b> · ${who} · ${esc(String(dec.created_at || "").slice(0, 19).replace("T", " "))}: ${what}` +
      ` · confidence ${confText(dec.confidence)}${dec.prompt_source === "rebuilt" ? ' <span class="muted">(prompt rebuilt)</span>' : ""}` +
      (dec.reasoning ? `<pre class="reasoning">${esc(dec.reasoning)}</pre>` : "") + (calls ? `<pre class="tool">${esc(calls)}</pre>` : "") + "</li>";
  }).join("");
  return `<details open id="decisions"><summary>Asked afterwards (${list.length})</summary><ol class="decisions">${items}</ol></details>`;
}

function kv(rows) {
  return "<table class=\"kv\">" + rows.filter((r) => r).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("") + "</table>";
}

function confidenceHtml(step) {
  if (step.confidence === null || step.confidence === undefined) {
    return `<span class="chip conf-unknown">unknown</span> <span class="muted">${esc(step.confidence_reason || (step.unavailable || {}).confidence || "")}</span>`;
  }
  const t = window.confThresholds, band = window.confBand(step.confidence);
  // low/high/optimum: the browser draws the meter in its "bad" colour below low, so 0.2 is never green.
  return `<meter id="conf-meter" min="0" max="1" low="${esc(t.low)}" high="${esc(t.high)}" optimum="1" value="${esc(step.confidence)}"></meter>` +
    ` <b>${num(step.confidence, 3)}</b> <span class="chip conf-${band}">${esc(band)}</span>`;
}

// What a label's correction can be (replays.labels.Correction): no scroll (it needs pixels); upload_file only on a step
// that uploaded (the file is that step's); answer and goto_url take the text field.
const WRONG_ACTIONS = ["left_click", "double_click", "right_click", "triple_click", "type", "key", "wait", "answer", "goto_url", "terminate"];
const POINT_ACTIONS = ["left_click", "double_click", "right_click", "triple_click", "mouse_move", "upload_file"];

function renderDetails() {
  const step = state.steps[current];
  const d = $("details");
  if (!step) { d.innerHTML = '<p class="muted">Waiting for the first step…</p>'; return; }
  if (step.unreadable) {
    d.innerHTML = `<div class="label-box"><h2 id="step-title">Step ${esc(step.index)} · unreadable</h2>
      <div class="error">Line ${esc(lineNumber(step))} of steps.jsonl cannot be read: ${esc(step.unreadable)}.
      The step keeps its place; it cannot be labelled.</div></div>`;
    return;
  }
  const t = step.timings;
  const el = step.element ? `${esc(step.element.tag)} “${esc(step.element.text.slice(0, 60))}”` +
    (step.element.label ? ` labelled “${esc(step.element.label.slice(0, 60))}”` : "") : "";
  const ev = step.evidence ? `<img class="crop" src="${esc(fileUrl(step.evidence.crop))}" alt="evidence crop">` : `<span class="muted">${esc(step.unavailable.evidence || "")}</span>`;
  const coord = step.coordinate
    ? `model (${esc(step.coordinate.model.map((v) => +v.toFixed(1)).join(", "))}) ${esc(step.coordinate.mode)} → CSS (${esc(step.coordinate.css.join(", "))}) ×${esc(step.coordinate.device_scale_factor)}${step.coordinate.clamped ? " <b>clamped</b>" : ""}`
    : "";
  const parts = Object.entries(step.confidence_parts || {}).map(([k, v]) => `${esc(k)} ${Number(v).toFixed(3)}`).join(" · ");
  const labels = labelsFor(current).map((l) => `<li class="${esc(l.verdict)}">${l.verdict === "wrong" ? "✗ wrong" : "✓ correct"}` +
    (l.correction ? ` → ${esc(l.correction.action)}${l.correction.coordinate ? " (" + esc(l.correction.coordinate.map(Math.round).join(", ")) + ")" : ""}${l.correction.text ? " “" + esc(l.correction.text) + "”" : ""}` : "") +
    (l.note ? ` <span class="muted">${esc(l.note)}</span>` : "") + ` <button class="undo" data-id="${esc(l.id)}">Undo</button></li>`).join("");
  // A gate that let the step through without holding it says nothing worth a row (every step of a run with gates has one).
  const held = step.gate && (step.gate.decision !== "proceed" || step.gate.answered_by || step.gate.timed_out || step.gate.error);
  const gate = held ? `${esc(step.gate.who)}: ${esc(step.gate.decision)}${step.gate.answered_by ? " by " + esc(step.gate.answered_by) : ""}` +
    (step.gate.reason ? ` <span class="muted">${esc(step.gate.reason)}</span>` : "") : "";
  const note = $("label-note") ? $("label-note").value : "";
  d.innerHTML = `
    <div class="label-box">
      <h2 id="step-title">Step ${esc(step.index)} · ${esc(actionLabel(step))}${correctedByPerson(step) ? ' <span class="mk corrected" title="corrected by a person before acting">✎</span>' : ""}</h2>
      <div class="conf-row">confidence ${confidenceHtml(step)}${parts ? `<div class="muted parts">${parts}</div>` : ""}</div>
      ${window.glassboxOcr ? window.glassboxOcr.verdictHtml(verdictOf(step)) : ""}
      <div class="label-buttons" role="group" aria-label="label this step">
        <button id="mark-correct" class="approve" title="Label this step correct (key c)">Correct <kbd>c</kbd></button>
        <button id="mark-wrong" class="wrong-btn" title="Label this step wrong: click where it should have acted (key w, then a click)">Wrong… <kbd>w</kbd></button>
        <button id="undo-last" title="Undo this step's last label (key u)" ${labelsFor(current).length ? "" : "disabled"}>Undo <kbd>u</kbd></button>
        <input id="label-note" placeholder="note (optional)" aria-label="note for the label" value="${esc(note)}">
      </div>
      <div class="keys-hint muted" ${picking ? "hidden" : ""}>keys: c correct · w then click: wrong, here · u undo · j/k step · l least confident</div>
      <div id="fix" ${picking ? "" : "hidden"}>
        <p class="hint">${picking && picking.quick ? "Click on the screenshot where it should have acted: the label is saved with that point (Esc: cancel)." : "Click on the screenshot where it should have acted."}</p>
        <div ${picking && picking.quick ? "hidden" : ""}>
        <label>Action <select id="fix-action">${[...WRONG_ACTIONS, ...(step.action && step.action.action === "upload_file" ? ["upload_file"] : [])].map((a) => `<option>${a}</option>`).join("")}</select></label>
        <label>Text <input id="fix-text" placeholder="text to type / keys / URL / answer / success or failure"></label>
        <label>Note <input id="fix-note" placeholder="why"></label>
        <div class="point" id="fix-point">${picking && picking.coordinate ? "point " + esc(picking.coordinate.map(Math.round).join(", ")) : "no point yet"}</div>
        <button id="fix-save">Save label</button> <button id="fix-cancel">Cancel</button>
        </div>
      </div>
      <div id="fix-error" class="error" hidden></div>
      <ul class="labels">${labels}</ul>
    </div>
    <div class="detail-scroll">
    ${step.error ? `<div class="error">${esc(step.error_kind || "error")}: ${esc(step.error)}</div>` : ""}
    ${step.replay ? `<div class="replay">${esc(step.replay.decision)} · recorded step ${esc(step.replay.source_step ?? "—")}` +
      (step.replay.screen_diff !== null ? ` · screen diff ${num(step.replay.screen_diff, 3)}` : "") +
      (step.replay.reason ? `<br>${esc(step.replay.reason)}` : "") +
      (step.replay.side_by_side ? `<br><a href="${esc(fileUrl(step.replay.side_by_side))}" target="_blank" rel="noopener">side by side</a>` : "") + `</div>` : ""}
    <details open><summary>Reasoning</summary><pre class="reasoning">${esc(step.reasoning || "(none)")}</pre></details>
    <details open><summary>Tool call</summary><pre class="tool">${esc(step.tool_calls.map((c) => JSON.stringify(c)).join("\n") || "(none)")}</pre></details>
    ${decisionsHtml(decisionsFor(current))}
    ${kv([coord && ["coordinate", coord], el && ["element", el], ["evidence", ev], gate && ["gate", gate],
          (step.dialogs || []).length && ["dialogs", step.dialogs.map((d) =>
            `<span class="dialog">${esc(d.kind)} “${esc(d.message)}” · ${esc(d.answer)}</span>`).join("<br>") +
            (step.dialogs_more ? `<br>and ${esc(step.dialogs_more)} more, answered the same way` : "")],
          step.tab_change && ["tab", esc(step.tab_change)],
          (step.downloads || []).length && ["downloads", step.downloads.map(esc).join("<br>")],
          (step.blocked_tabs || []).length && ["blocked tabs", "opened by the page by itself, closed unseen:<br>" +
            step.blocked_tabs.map(esc).join("<br>") + (step.blocked_tabs_more ? `<br>and ${esc(step.blocked_tabs_more)} more` : "")],
          ["url", esc(step.url || "")], ["timings", `perceive ${num(t.perceive_ms, 0)} · think ${num(t.think_ms, 0)} · act ${num(t.act_ms, 0)} · record ${num(t.record_ms, 1)} ms`],
          ["policy", esc(step.policy + (step.model ? " · " + step.model : ""))],
          step.decoding && ["decoding", decodingLabel(step.decoding)],
          ["attention", (step.attention || []).filter((a) => a.group === "deep").map((a) =>
            `${esc(a.target)}: peak (${esc(a.peak_px.join(", "))}), concentration ${num(a.concentration, 2)}` +
            (a.peak_to_click_px !== null ? `, ${num(a.peak_to_click_px, 0)} px from click` : "")).join("<br>") ||
            `<span class="muted">${esc((step.unavailable || {}).attention || "")}</span>`]])}
    <details><summary>Raw output</summary><pre>${esc(step.raw_output || "")}</pre></details>
    <details><summary>Not recorded</summary><ul class="muted">${Object.entries(step.unavailable || {}).map(([k, v]) => `<li>${esc(k)}: ${esc(v)}</li>`).join("")}</ul></details>
    <button id="resume-btn" title="Replay the steps before this one, apply a correction labelled here, then let the run's policy go on">Resume from this step</button>
    </div>`;
  $("mark-correct").onclick = () => saveLabel({verdict: "correct", note: noteValue()});
  $("resume-btn").onclick = () => startReplay({from_step: current});
  $("mark-wrong").onclick = () => startWrong(false);
  $("undo-last").onclick = undoLast;
  if (picking) {
    const a = step.action && step.action.action;
    if (a && [...$("fix-action").options].some((o) => o.value === a)) $("fix-action").value = a;
    $("fix-save").onclick = () => {
      const action = $("fix-action").value;
      const text = $("fix-text").value;
      const correction = {action};
      if (picking.coordinate) correction.coordinate = picking.coordinate;
      if (["type", "answer", "goto_url"].includes(action) || (action === "terminate" && text.trim())) correction.text = action === "terminate" ? text.trim() : text;
      if (action === "key") correction.keys = text.split("+").map((k) => k.trim()).filter(Boolean);
      saveLabel({verdict: "wrong", correction, note: $("fix-note").value || noteValue()});
    };
    $("fix-cancel").onclick = cancelWrong;
  }
  for (const b of d.querySelectorAll("button.undo")) b.onclick = () => undoLabel(+b.dataset.id);
}

function noteValue() { const n = $("label-note"); return n && n.value.trim() ? n.value.trim() : null; }

// "Wrong…": pick where the step should have acted. quick (key w): the click itself saves the label.
function startWrong(quick) {
  const step = state.steps[current];
  if (!step || step.unreadable) return;
  picking = {coordinate: null, quick};
  renderDetails(); drawOverlay();
  $("shot-wrap").classList.add("picking");
  showWholeShot();
}
function cancelWrong() { picking = null; $("shot-wrap").classList.remove("picking"); renderDetails(); drawOverlay(); }

// The screenshot to click must be entirely on screen: scroll the step view to the top when it is not.
function showWholeShot() {
  const r = $("shot-wrap").getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) $("step-view").scrollIntoView({block: "start"});
}

function showLabelError(text) {
  const e = $("fix-error");
  if (e) { e.hidden = false; e.textContent = text; } else alert(text);
}

async function saveLabel(body) {
  const step = current;
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/steps/${step}/labels`, {
    method: "POST", headers: writeHeaders, body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { if (step === current) showLabelError(data.error || data.detail || `error ${r.status}`); return; }
  state.labels.push(data);
  if (step === current) {
    picking = null;
    $("shot-wrap").classList.remove("picking");
    if ($("label-note")) $("label-note").value = "";
    renderDetails(); drawOverlay();
  }
  refreshFilmLabels();
}

function startReplay(body) { return window.glassboxReplay.start(runId, body); } // static/replay.js
$("replay-btn").addEventListener("click", () => startReplay({fallback: "none"}));
$("replay-fb-btn").addEventListener("click", () => startReplay({fallback: "policy"}));

async function undoLabel(id) {
  const r = await fetch(`/api/labels/${encodeURIComponent(id)}`, {method: "DELETE", headers: {"X-Glassbox-Token": token}});
  if (r.ok) { state.labels = state.labels.filter((l) => l.id !== id); renderDetails(); drawOverlay(); refreshFilmLabels(); }
  else showLabelError(`undo failed: error ${r.status}`);
}

function undoLast() {
  const ls = labelsFor(current);
  if (ls.length) undoLabel(ls[ls.length - 1].id);
}

function select(i) {
  if (i < 0 || i >= state.steps.length) return;
  if (i !== current) { picking = null; $("shot-wrap").classList.remove("picking"); }
  current = i;
  const step = state.steps[i];
  if (step.unreadable) $("shot").removeAttribute("src"); else $("shot").src = fileUrl(step.screenshot);
  $("shot-wrap").classList.toggle("unreadable", !!step.unreadable);
  for (const el of document.querySelectorAll(".film.sel")) el.classList.remove("sel");
  const item = $(`film-${i}`);
  if (item) { item.classList.add("sel"); item.scrollIntoView({block: "nearest", inline: "nearest"}); }
  history.replaceState(null, "", `#step-${i}`);
  renderDetails(); drawOverlay();
  if (window.attentionPanel) window.attentionPanel.show(runId, step.index); // templates/_attention.html
  if (window.glassboxOcr) window.glassboxOcr.show(runId, step.index); // templates/_ocr.html
}

$("shot-wrap").addEventListener("click", (ev) => {
  if (!picking) return;
  const img = $("shot").getBoundingClientRect();
  const x = (ev.clientX - img.left) / img.width * 1000, y = (ev.clientY - img.top) / img.height * 1000;
  if (x < 0 || y < 0 || x > 1000 || y > 1000) return;
  picking.coordinate = [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  $("fix-error").hidden = true; // an error about the previous point is stale now
  $("fix-point").textContent = "point " + picking.coordinate.map(Math.round).join(", ");
  drawOverlay();
  if (picking.quick) {
    // w + click: wrong, it should have acted here (the step's own point action, else a left click).
    const step = state.steps[current];
    const own = step.action && step.action.action;
    saveLabel({verdict: "wrong", correction: {action: POINT_ACTIONS.includes(own) ? own : "left_click", coordinate: picking.coordinate}, note: noteValue()});
  }
});
for (const id of ["t-model", "t-exec", "t-box", "t-labels", "t-asked"]) $(id).addEventListener("change", drawOverlay);
$("t-asked").parentElement.hidden = !(state.decisions || []).length; // only a run a model was asked about afterwards
document.addEventListener("keydown", (ev) => {
  if (ev.target.matches("input, select, textarea, [contenteditable]") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "ArrowRight" || ev.key === "j") { followLast = current + 1 === state.steps.length - 1; select(current + 1); }
  else if (ev.key === "ArrowLeft" || ev.key === "k") { followLast = false; select(current - 1); }
  else if (ev.key === "Escape" && picking) cancelWrong();
  else if (ev.key === "l") jumpToLeast();
  else if (!state.steps[current] || state.steps[current].unreadable) return;
  // While a step waits for this person, c / w / u would label another step than the one they are answering.
  else if (pending && ["c", "w", "u"].includes(ev.key)) return;
  else if (ev.key === "c") saveLabel({verdict: "correct", note: noteValue()});
  else if (ev.key === "w") startWrong(true);
  else if (ev.key === "u") undoLast();
  else return;
  ev.preventDefault();
});
document.getElementById("graph").addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-step]");
  if (a && a.dataset.step !== "") { ev.preventDefault(); followLast = false; select(+a.dataset.step); }
});

function setStatus(run) {
  const s = $("run-status");
  s.textContent = run.status; s.className = `status status-${run.status}`;
  $("end-reason").textContent = run.end_reason || "";
  renderChecks(run.checks || []);
}

// The run's checks as they are now (a finished run's arrive with its last run.json, without a reload).
function renderChecks(checks) {
  $("checks").innerHTML = checks.map((c) => `<li class="${c.passed ? "ok" : "bad"}">${c.passed ? "✓" : "✗"} ${esc(c.description)} ` +
    `<span class="muted">${esc(String(c.detail || "").slice(0, 200))}</span></li>`).join("");
  const passed = checks.filter((c) => c.passed).length;
  $("checks-summary").innerHTML = checks.length
    ? `<span class="${passed === checks.length ? "ok" : "bad"}">checks ${passed}/${checks.length} passed</span>` : "";
}

// -- a step waiting for a person (agent.approval): Approve, Correct (click the spot), Skip, Stop; Pause / Resume --
// upload_file is offered only on a step that uploads (the file is that step's: a correction cannot name another).
const FIX_ACTIONS = ["left_click", "double_click", "right_click", "triple_click", "mouse_move", "type", "key", "scroll", "wait", "answer", "goto_url", "terminate"];
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
  $("pending-why").textContent = pending.why === "ask_before" ? `asked before ${pending.action.action}`
    : pending.why === "mismatch" ? "text at the point does not match" : "low confidence";
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
$("ap-stop").addEventListener("click", () => {
  // Ending a run cannot be taken back (Approve and Skip only decide this step): asked once more.
  if (confirm("End this run here, as failed? The steps so far stay recorded; it can be resumed from this step later.")) answer("stop");
});
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

// Labels written by someone else (an approval answer leaves one on its step): fetched again, never retried.
async function reloadLabels() {
  const r = await fetch(`/api/runs/${encodeURIComponent(runId)}`);
  if (!r.ok) return;
  const data = await r.json();
  state.labels = data.labels;
  state.verdicts = data.verdicts; // OCR may have judged more steps since
  refreshFilmLabels();
  if (!picking) { renderDetails(); drawOverlay(); }
}

function live() {
  showPending(state.pending || null);
  showPause(state.pause || null);
  if (state.run.status !== "running") return;
  const es = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events?after=${state.steps.length - 1}`);
  es.addEventListener("step", (ev) => {
    const step = JSON.parse(ev.data);
    if (step.index < state.steps.length) return;
    if (!state.steps.length) $("filmstrip").innerHTML = "";
    const from = state.steps.length;
    placeStep(step);
    for (const s of state.steps.slice(from)) $("filmstrip").appendChild(filmItem(s));
    refreshFilmLabels(); refreshLeast();
    $("step-count").textContent = state.steps.length;
    if (followLast || current < 0) select(step.index);
    if (step.gate && step.gate.answered_by && step.gate.answered_by !== "timeout") reloadLabels();
  });
  es.addEventListener("run", (ev) => { state.run = JSON.parse(ev.data); setStatus(state.run); showPause(state.pause); });
  es.addEventListener("pending", (ev) => showPending(JSON.parse(ev.data)));
  es.addEventListener("pause", (ev) => { state.pause = JSON.parse(ev.data); showPause(state.pause); });
  es.addEventListener("end", async () => {
    es.close();
    const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/graph`);
    if (r.ok) $("graph").innerHTML = await r.text();
    reloadLabels();
  });
}

placeSteps(state.steps);
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
