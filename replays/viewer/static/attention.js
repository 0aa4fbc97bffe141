// The attention panel (templates/_attention.html): the selected step's maps as shallow / middle / deep small
// multiples with their figures, a target switch (the action, the reasoning, ...), and the step's `glassbox explain`
// results. The page calls attentionPanel.show(runId, stepIndex) when a step is selected.
// Everything shown comes from /api/runs/{id}/steps/{n}/attention; recorded text goes in as textContent only.
"use strict";
window.attentionPanel = (() => {
  const panel = document.getElementById("attention-panel");
  const q = (sel) => panel.querySelector(sel);
  let shown = {run: null, step: null, target: null};
  let request = 0; // answers to an older selection are dropped
  let data = null;

  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "text") node.textContent = v; else if (k in node) node[k] = v; else node.setAttribute(k, v);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  };
  const pct = (v) => (typeof v === "number" && isFinite(v) ? `${Math.round(v * 100)} %` : null);
  const fixed = (v, d) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : null);

  function figureList(rows) {
    const dl = el("dl", {className: "attn-figures"});
    for (const [name, value, title] of rows) {
      if (value === null || value === undefined) continue;
      dl.append(el("dt", {text: name, title: title || ""}), el("dd", {text: value}));
    }
    return dl;
  }

  function mapFigure(m) {
    const img = el("img", {src: m.image, alt: `attention of ${shownTargetName()} in the ${m.name.toLowerCase()}, over the dimmed screenshot`, loading: "lazy"});
    const rows = [
      ["peak", `(${m.peak_px.join(", ")}) px`, "the cell with the most attention, in screenshot pixels"],
      ["concentration", `${fixed(m.concentration, 2)} (${pct(m.concentration)} in the top 5 % of cells)`, "1: all in a few cells; 0.05: spread evenly"],
      ["in the box", m.mass_in_evidence === null ? "no box for this target" : pct(m.mass_in_evidence), "share inside the action's evidence box"],
      ["peak to click", m.peak_to_click_px === null ? null : `${Math.round(m.peak_to_click_px)} px`, "distance from the peak to the executed point"],
      ["top region", m.top ? `${pct(m.top.mass)} of the mass` : null, "share in the outlined cells"],
    ];
    return el("figure", {className: "attn-map", "data-group": m.group}, [
      el("figcaption", {}, [document.createTextNode(m.name + " "), el("span", {className: "muted", text: m.about})]),
      img,
      figureList(rows),
    ]);
  }

  function shownTargetName() {
    const t = data && data.targets.find((x) => x.target === shown.target);
    return t ? t.name : "";
  }

  function renderTargets() {
    const box = q(".attn-targets");
    box.replaceChildren();
    if (!data || data.targets.length < 2) return;
    box.append(el("span", {className: "muted", text: "attention of"}));
    for (const t of data.targets) {
      const b = el("button", {type: "button", text: t.name, "aria-pressed": String(t.target === shown.target)});
      b.addEventListener("click", () => { shown.target = t.target; renderTargets(); renderMaps(); });
      box.append(b);
    }
  }

  function renderMaps() {
    const grid = q(".attn-multiples");
    grid.replaceChildren();
    const t = data && data.targets.find((x) => x.target === shown.target);
    if (!t) return;
    const [w, h] = data.screenshot_size;
    grid.style.setProperty("--attn-ratio", `${w} / ${h}`);
    grid.dataset.target = t.target;
    for (const m of t.maps) grid.append(mapFigure(m));
  }

  function renderExplain() {
    const box = q(".attn-explain");
    box.replaceChildren();
    if (!data || !data.explain.length) return;
    box.append(el("h3", {text: `glassbox explain (${data.explain.length})`}));
    for (const x of data.explain) {
      const meta = [x.created_at, x.model].filter(Boolean).join(" · ");
      box.append(el("p", {}, [el("strong", {text: x.title}), meta ? el("span", {className: "muted", text: " · " + meta}) : null]));
      if (x.problem) { box.append(el("p", {className: "problem", text: x.problem})); continue; }
      const grid = el("div", {className: "attn-multiples"});
      for (const m of x.maps) {
        const rows = [
          ["peak", m.peak_px ? `(${m.peak_px.join(", ")}) px` : null],
          ["concentration", fixed(m.concentration, 2)],
          ["in the box", m.mass_in_evidence === null ? null : pct(m.mass_in_evidence)],
        ];
        const link = el("a", {href: m.picture, target: "_blank", rel: "noopener"}, [el("img", {src: m.picture, alt: `explain: ${m.name}`, loading: "lazy"})]);
        grid.append(el("figure", {className: "attn-explain-map"}, [el("figcaption", {text: m.name, title: m.name}), link, figureList(rows)]));
      }
      box.append(grid);
    }
  }

  function render() {
    q(".attn-step").textContent = data ? `· step ${data.step}` : "";
    const reason = q(".attn-reason");
    reason.hidden = !(data && data.reason);
    reason.textContent = data && data.reason ? `No attention maps for this step: ${data.reason}.` : "";
    q(".attn-legend").hidden = !(data && data.targets.length);
    if (data && !data.targets.some((t) => t.target === shown.target)) {
      shown.target = (data.targets.find((t) => t.target === "action") || data.targets[0] || {}).target || null;
    }
    renderTargets(); renderMaps(); renderExplain();
  }

  async function show(runId, stepIndex) {
    if (shown.run === runId && shown.step === stepIndex && data) return;
    shown = {...shown, run: runId, step: stepIndex};
    const mine = ++request;
    panel.setAttribute("aria-busy", "true");
    let answer = null;
    try {
      const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(stepIndex)}/attention`);
      answer = r.ok ? await r.json() : {step: stepIndex, screenshot_size: [16, 10], targets: [], explain: [],
        reason: `the viewer could not read them (${r.status})`};
    } catch (e) {
      answer = {step: stepIndex, screenshot_size: [16, 10], targets: [], explain: [], reason: `the viewer did not answer (${e})`};
    }
    if (mine !== request) return;
    data = answer;
    panel.removeAttribute("aria-busy");
    render();
  }

  return {show};
})();
