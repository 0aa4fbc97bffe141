// The runs page refreshes itself: every 2 s (while the tab is visible) it asks /api/runs/rows for this page's rows,
// rendered by the server like the page, and swaps them in when they changed. Changing the order applies at once.
(function () {
  const table = document.querySelector("table.runs[data-rows-url]");
  const body = document.getElementById("runs-rows");
  const total = document.getElementById("runs-total");
  const note = document.getElementById("runs-live");
  const order = document.getElementById("order");
  if (order) order.addEventListener("change", () => order.form.submit());
  if (!table || !body) return;
  const url = table.dataset.rowsUrl;
  let shown = null, busy = false;

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url, {headers: {accept: "application/json"}, cache: "no-store"});
      if (!r.ok) { note.textContent = "live refresh paused: the viewer answered " + r.status; return; }
      const data = await r.json();
      if (data.html !== shown) {
        body.innerHTML = data.html;  // rendered (and escaped) by the server's template, as on first load
        if (shown !== null) note.textContent = "updated " + new Date().toLocaleTimeString();
      }
      shown = data.html;
      if (total) total.textContent = data.total;
      const noun = document.getElementById("runs-noun");
      if (noun) noun.textContent = data.total === 1 ? "run" : "runs";
    } catch (e) {
      note.textContent = "live refresh paused: the viewer is not answering";
    } finally {
      busy = false;
    }
  }
  refresh();
  setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);
})();
