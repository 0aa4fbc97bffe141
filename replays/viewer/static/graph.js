// The decision graph on the run page: the card of the selected step is highlighted. The filmstrip's selection
// (set by viewer.js) is the source, so this needs no hook into viewer.js; the graph keeps the highlight when it is
// redrawn at the end of a live run. Clicking a card selects its step (viewer.js handles a[data-step] in #graph).
(function () {
  const graph = document.getElementById("graph");
  const strip = document.getElementById("filmstrip");
  if (!graph) return;

  function selectedStep() {
    const sel = strip && strip.querySelector(".film.sel");
    if (sel && /^film-\d+$/.test(sel.id)) return sel.id.slice(5);
    const m = location.hash.match(/^#step-(\d+)$/);
    return m ? m[1] : null;
  }

  function mark() {
    const step = selectedStep();
    for (const el of graph.querySelectorAll(".gstep.sel")) {
      if (el.dataset.step !== step) { el.classList.remove("sel"); el.removeAttribute("aria-current"); }
    }
    if (step === null) return;
    const card = document.getElementById("graph-step-" + step);
    if (card && !card.classList.contains("sel")) { card.classList.add("sel"); card.setAttribute("aria-current", "step"); }
  }

  // A live run: when the filmstrip has steps the graph has not drawn yet, fetch the graph again (at most one
  // request at a time; changes that come meanwhile are drawn by the next one).
  let runId = null;
  try { runId = JSON.parse(document.getElementById("initial").textContent).run.run_id; } catch (e) { runId = null; }
  // The filmstrip's steps and label marks (viewer.js writes ✓ / ✗ / ✎ into each item's .marks): when either
  // changes, the graph is drawn again so its marks follow a label given or undone on this page.
  function filmState() {
    const films = strip.querySelectorAll(".film");
    return films.length + "|" + Array.from(strip.querySelectorAll(".film .marks"), (el) => el.textContent).join(",");
  }
  let fetching = false;
  let drawnFor = strip ? filmState() : "";  // the filmstrip's state when the graph was drawn
  async function redraw() {
    if (fetching || !runId || !strip) return;
    const state = filmState();
    if (state === drawnFor) return;  // one request per change at most, even if the graph never matches
    fetching = true;
    drawnFor = state;
    try {
      const r = await fetch(`/api/runs/${encodeURIComponent(runId)}/graph`, {cache: "no-store"});
      if (r.ok) graph.innerHTML = await r.text();  // drawn by the server, every recorded value escaped
    } catch (e) {
      drawnFor = "";  // try again with the next change
    } finally {
      fetching = false;
    }
    if (filmState() !== drawnFor) redraw();
  }

  if (strip) {
    new MutationObserver(() => { mark(); redraw(); })
      .observe(strip, {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["class"]});
  }
  new MutationObserver(mark).observe(graph, {childList: true});
  window.addEventListener("hashchange", mark);
  mark();
})();
