// The run page's OCR: the reasoning-action verdict beside the confidence, the OCR layer over the screenshot
// (templates/_ocr.html, routes in replays/viewer/ocr_panel.py) and "find text on every step".
// Recorded text is untrusted: OCR text goes into the page with textContent / createTextNode only; the verdict
// goes through esc() where viewer.js builds HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const quote = (s) => `“${String(s).slice(0, 80)}”`;
  const SOURCES = {element: "element", element_label: "element label", ocr_under: "OCR under", ocr_nearest: "OCR nearest"};
  let runId = JSON.parse($("initial").textContent).run.run_id, shown = null, query = "", hitSteps = new Map(); // step -> line indices matching the query
  let wanted = -1; // the step asked for last (an older answer arriving late is dropped)

  // The verdict row (HTML, every value escaped): verdict chip, what the reasoning named, what the point showed.
  function verdictHtml(check) {
    if (!check) return "";
    const claimed = (check.claimed || []).map(quote).join(", ");
    const observed = Object.entries(check.observed || {}).map(([k, v]) => `${SOURCES[k] || k} ${quote(v)}`).join(" · ");
    return `<div class="verdict-row" id="verdict">reasoning vs point <span class="chip verdict-${esc(check.verdict)}">${esc(check.verdict)}</span>` +
      (claimed ? ` <span>named ${esc(claimed)}</span>` : "") + (observed ? ` <span>· at the point: ${esc(observed)}</span>` : "") +
      `<div class="muted">${esc(check.reason || "")}</div></div>`;
  }
  const filmMark = (check) => (check && check.verdict === "mismatch"
    ? '<span class="mk mismatch" title="mismatch: the text at the point is not what the reasoning named">≠</span>' : "");

  function statusText(view) {
    if (view.status === "off") return "OCR off";
    if (view.status === "done") return `OCR: ${view.lines.length} line${view.lines.length === 1 ? "" : "s"} (${view.engine}${view.runtime ? ", " + view.runtime : ""})`;
    const word = {not_done: "OCR not done", error: "OCR error", skipped: "OCR skipped"}[view.status] || `OCR ${view.status}`;
    return view.reason ? `${word}: ${view.reason}` : word;
  }

  function layer() {
    let svg = $("ocr-overlay");
    if (!svg) {
      svg = document.createElementNS(SVG, "svg");
      svg.id = "ocr-overlay";
      svg.setAttribute("class", "overlay ocr-overlay");
      $("shot-wrap").appendChild(svg);
    }
    return svg;
  }

  function draw() {
    const svg = layer();
    svg.replaceChildren();
    if (!shown || shown.status !== "done" || !shown.size) return;
    const hits = new Set(hitSteps.get(shown.step) || []);
    const all = $("t-ocr").checked;
    svg.setAttribute("viewBox", `0 0 ${shown.size[0]} ${shown.size[1]}`);
    shown.lines.forEach((line, n) => {
      const hit = hits.has(n);
      if (!all && !hit) return;
      const [l, t, r, b] = line.box;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", hit ? "ocr-line hit" : "ocr-line");
      rect.setAttribute("x", l); rect.setAttribute("y", t);
      rect.setAttribute("width", Math.max(1, r - l)); rect.setAttribute("height", Math.max(1, b - t));
      rect.dataset.line = n;
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${line.text} (score ${Number(line.score).toFixed(2)})`;
      rect.appendChild(title);
      svg.appendChild(rect);
    });
  }

  async function show(run, step) {
    runId = run; wanted = step;
    const r = await fetch(`/api/runs/${encodeURIComponent(run)}/ocr/steps/${encodeURIComponent(step)}`);
    if (wanted !== step) return;
    if (!r.ok) { shown = null; $("ocr-status").textContent = `OCR: error ${r.status}`; draw(); return; }
    shown = await r.json();
    if (wanted !== step) return;
    $("ocr-status").textContent = statusText(shown);
    $("ocr-status").dataset.status = shown.status;
    draw();
  }

  async function find(q) {
    query = q.trim();
    hitSteps = new Map();
    const list = $("ocr-hits"), found = $("ocr-found");
    list.replaceChildren();
    if (!query) { found.textContent = ""; draw(); return; }
    const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/ocr/search?q=${encodeURIComponent(query)}`);
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { found.textContent = `search failed: ${data.error || data.detail || r.status}`; return; }
    if (data.status === "off") { found.textContent = "OCR was off for this run"; draw(); return; }
    for (const hit of data.hits) hitSteps.set(hit.step, hit.lines);
    found.textContent = data.hits.length
      ? `${quote(query)} on ${data.hits.length} step${data.hits.length === 1 ? "" : "s"}${data.truncated ? " (first ones)" : ""}:`
      : `${quote(query)} is on no step (${data.steps_read} read)`;
    for (const hit of data.hits) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "ocr-hit";
      b.dataset.step = hit.step;
      b.textContent = `step ${hit.step}`;
      b.title = hit.texts.join(" · ");
      b.addEventListener("click", () => { const item = $(`film-${hit.step}`); if (item) item.click(); });
      list.appendChild(b);
    }
    draw();
  }

  $("t-ocr").addEventListener("change", draw);
  $("ocr-search").addEventListener("submit", (ev) => { ev.preventDefault(); find($("ocr-q").value); });
  window.glassboxOcr = {verdictHtml, filmMark, show};
})();
