// The diff page opens at the first difference (links from run pages carry #first-diff; a typed URL may not).
"use strict";
(() => {
  const first = document.getElementById("first-diff");
  if (first && !location.hash) first.scrollIntoView({block: "start"});
})();
