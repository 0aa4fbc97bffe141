// Replay / Replay with fallback / Resume from the run page. A policy that decides (fallback, resume) is asked with
// what the run recorded; a served model's server and model are shown before it starts, and the form asks only for
// what is missing (the API key when its variable is not set where the viewer runs). The key goes to the viewer in
// the POST body and from there only into the new run's process environment.
"use strict";
(() => {
  const token = document.querySelector('meta[name="glassbox-token"]').content;
  const headers = {"Content-Type": "application/json", "X-Glassbox-Token": token};
  const $ = (id) => document.getElementById(id);
  const api = (runId) => `/api/runs/${encodeURIComponent(runId)}`;
  let pending = null; // {runId, body} while the form is open

  function title(body) {
    if (body.from_step !== undefined && body.from_step !== null) return `Resume from step ${body.from_step}`;
    return body.fallback === "policy" ? "Replay with fallback" : "Replay";
  }

  function showForm(runId, body, plan, error) {
    pending = {runId, body};
    const missing = new Set(plan.missing || []);
    $("rf-title").textContent = title(body);
    $("rf-message").textContent = plan.served
      ? "The steps will be asked of the served model the run used." + (missing.size ? " Give what is missing:" : "")
      : (missing.size ? "Give what is missing:" : "");
    $("rf-policy").textContent = plan.policy || "—";
    $("rf-server-row").hidden = !plan.served;
    $("rf-server").textContent = plan.base_url || "not recorded";
    $("rf-model").textContent = plan.model || "not recorded";
    $("rf-key-row").hidden = !plan.served;
    $("rf-key").textContent = !plan.served ? "" : plan.api_key_set
      ? `from $${plan.api_key_env} (set here)` : `$${plan.api_key_env} is not set where the viewer runs`;
    $("rf-base-url-wrap").hidden = !missing.has("base_url");
    $("rf-model-input-wrap").hidden = !missing.has("model");
    $("rf-api-key-wrap").hidden = !missing.has("api_key");
    $("rf-api-key-hint").textContent = `kept in memory for this run only, never written; leave empty if the server needs none`;
    const err = $("rf-error");
    err.hidden = !error;
    err.textContent = error || "";
    const dialog = $("replay-form");
    if (!dialog.open) dialog.showModal();
    const first = ["rf-base-url", "rf-model-input", "rf-api-key"].find((id) => !$(id).closest("label").hidden);
    (first ? $(first) : $("rf-start")).focus();
  }

  async function post(runId, body) {
    const r = await fetch(`${api(runId)}/replay`, {method: "POST", headers, body: JSON.stringify(body)});
    const data = await r.json().catch(() => ({}));
    if (r.ok) { leaving = true; location.href = data.url; return; }
    const message = data.error || data.detail || `the viewer answered ${r.status}`;
    if (data.policy !== undefined) showForm(runId, body, data, message); // a plan: something is missing
    else showForm(runId, body, {policy: null, missing: []}, message);
  }

  // One new run per press: a double click (or a press while the first request is out) must not start two.
  let starting = false;
  let leaving = false; // a run was started and the page is on its way to it

  async function start(runId, body) {
    if (starting || leaving) return;
    starting = true;
    try {
      await begin(runId, body);
    } finally {
      starting = false;
    }
  }

  async function begin(runId, body) {
    const decides = body.fallback === "policy" || (body.from_step !== undefined && body.from_step !== null);
    if (!decides) return post(runId, body);
    const q = new URLSearchParams({fallback: body.fallback || "none"});
    if (body.from_step !== undefined && body.from_step !== null) q.set("from_step", body.from_step);
    const r = await fetch(`${api(runId)}/replay-plan?${q}`);
    const plan = await r.json().catch(() => ({}));
    if (!r.ok) return showForm(runId, body, {policy: null, missing: []}, plan.error || `the viewer answered ${r.status}`);
    if (plan.served || (plan.missing || []).length) return showForm(runId, body, plan, null);
    return post(runId, body);
  }

  $("rf-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!pending || leaving) return;
    const body = {...pending.body};
    for (const [id, key] of [["rf-base-url", "base_url"], ["rf-model-input", "model"]]) {
      if (!$(id).closest("label").hidden && $(id).value.trim()) body[key] = $(id).value.trim();
    }
    if (!$("rf-api-key-wrap").hidden) body.api_key = $("rf-api-key").value; // "" = the server needs no key
    $("rf-start").disabled = true;
    post(pending.runId, body).finally(() => { $("rf-start").disabled = false; });
  });
  $("rf-cancel").addEventListener("click", () => { $("replay-form").close(); pending = null; $("rf-api-key").value = ""; });
  window.glassboxReplay = {start};
})();
