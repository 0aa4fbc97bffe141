// Keyboard navigation for the shared run page: left/right (or k/j) go to the previous/next step, and the
// filmstrip follows the step in view. Everything works without it: the steps are plain sections and links.
(() => {
  const steps = [...document.querySelectorAll("section.step")];
  const bar = document.querySelector("nav.filmstrip");
  const film = new Map([...document.querySelectorAll("a.film")].map((a) => [a.dataset.step, a]));
  if (!steps.length) return;
  const barHeight = () => (bar ? bar.getBoundingClientRect().height : 0);
  function inView() {
    // The last step whose top has reached the filmstrip's bottom edge (with a little slack): the one being read.
    const line = barHeight() + 40;
    let found = 0;
    steps.forEach((s, i) => { if (s.getBoundingClientRect().top <= line) found = i; });
    return found;
  }
  function mark(i) {
    steps.forEach((s, j) => s.classList.toggle("current", j === i));
    for (const a of film.values()) a.classList.remove("current");
    const a = film.get(steps[i].dataset.step);
    if (!a) return;
    a.classList.add("current");
    // Scroll the strip itself: scrollIntoView on a link in a sticky bar would scroll the page back up to it.
    if (bar && (a.offsetLeft < bar.scrollLeft || a.offsetLeft + a.offsetWidth > bar.scrollLeft + bar.clientWidth)) {
      bar.scrollLeft = a.offsetLeft - (bar.clientWidth - a.offsetWidth) / 2;
    }
  }
  let current = 0;
  // Where go() left the page: while it is still there, the step go() chose is current (the last steps cannot
  // scroll to the top, so the position alone would not say which one it was).
  let jumpedTo = null;
  const stillJumped = () => jumpedTo !== null && Math.abs(window.scrollY - jumpedTo) < 1;
  function go(i) {
    current = Math.max(0, Math.min(steps.length - 1, i));
    const most = document.documentElement.scrollHeight - window.innerHeight;
    jumpedTo = Math.max(0, Math.min(most, steps[current].getBoundingClientRect().top + window.scrollY - barHeight() - 8));
    window.scrollTo(0, jumpedTo);
    jumpedTo = window.scrollY; // where the browser actually put it
    mark(current);
  }
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.target.closest("input, textarea, select")) return;
    const moves = {ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1};
    if (e.key in moves) go((stillJumped() ? current : inView()) + moves[e.key]);
    else if (e.key === "Home") go(0);
    else if (e.key === "End") go(steps.length - 1);
    else return;
    e.preventDefault();
  });
  let pending = false;
  window.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (stillJumped()) return;
      jumpedTo = null;
      current = inView();
      mark(current);
    });
  }, {passive: true});
  current = inView();
  mark(current);
})();
