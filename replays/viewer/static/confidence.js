// The confidence scale in the browser: thresholds come from the page (<body data-conf-low/-high>), set from
// replays/confidence.py, so there is one source of truth.
(function () {
  const body = document.body;
  const low = Number(body.dataset.confLow), high = Number(body.dataset.confHigh);
  window.confBand = function (value) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "unknown";
    const v = Number(value);
    return v < low ? "low" : v < high ? "medium" : "high";
  };
  window.confThresholds = { low: low, high: high };
})();
