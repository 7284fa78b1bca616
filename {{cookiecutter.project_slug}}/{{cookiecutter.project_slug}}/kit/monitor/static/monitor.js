// Live refresh for the jobs monitor.
//
// Every element with a data-live="<url>" attribute is fetched again every few
// seconds and its content replaced by the server's fresh HTML. The server
// renders and escapes everything; this script only swaps markup. It is the
// monitor's only script, served as a file: the Content-Security-Policy
// forbids inline script, so there is none.
(function () {
  "use strict";

  const STORAGE_KEY = "jobs-monitor-paused";
  const body = document.body;
  const regions = Array.from(document.querySelectorAll("[data-live]")).filter(
    (region) => !region.hasAttribute("data-live-off")
  );
  const toggle = document.getElementById("live-toggle");
  const picker = document.getElementById("live-interval");
  const status = document.getElementById("live-status");

  // The server clamps the interval (?refresh=N) and renders the result here.
  let seconds = Number(body.dataset.refresh) || 5;
  let paused = window.localStorage.getItem(STORAGE_KEY) === "1";
  let timer = null;
  let stopped = false;

  function say(text) {
    if (status) status.textContent = text;
  }

  function schedule() {
    window.clearTimeout(timer);
    if (!paused && !stopped && !document.hidden && regions.length) {
      timer = window.setTimeout(refreshAll, seconds * 1000);
    }
  }

  // Keep open <details> (tracebacks) open across a refresh.
  function openDetails(region) {
    return Array.from(region.querySelectorAll("details")).map((d) => d.open);
  }

  function restoreDetails(region, states) {
    region.querySelectorAll("details").forEach((d, i) => {
      if (i < states.length) d.open = states[i];
    });
  }

  function selecting(region) {
    const selection = window.getSelection();
    return selection && !selection.isCollapsed && region.contains(selection.anchorNode);
  }

  async function refresh(region) {
    if (selecting(region)) return; // do not yank text the user is copying
    const response = await fetch(region.dataset.live, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (response.status === 401 || response.redirected) {
      stopped = true;
      say("logged out: reload the page");
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    const states = openDetails(region);
    region.innerHTML = await response.text();
    restoreDetails(region, states);
  }

  async function refreshAll() {
    try {
      await Promise.all(regions.map(refresh));
      if (!stopped) say("updated " + new Date().toLocaleTimeString());
    } catch (error) {
      say("update failed, retrying (" + error.message + ")");
    }
    schedule();
  }

  function render() {
    if (!toggle) return;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    if (paused) say("paused");
  }

  if (!regions.length) {
    // Nothing on this page changes by itself (a finished job, a deep page).
    document.querySelectorAll(".live-controls").forEach((el) => (el.hidden = true));
  }

  if (toggle) {
    toggle.addEventListener("click", () => {
      paused = !paused;
      window.localStorage.setItem(STORAGE_KEY, paused ? "1" : "0");
      render();
      if (paused) window.clearTimeout(timer);
      else refreshAll();
    });
  }

  if (picker) {
    picker.addEventListener("change", () => {
      seconds = Number(picker.value) || seconds;
      // Keep the choice in the address, so a bookmark keeps it too.
      const url = new URL(window.location.href);
      url.searchParams.set("refresh", String(seconds));
      window.history.replaceState(null, "", url);
      schedule();
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) window.clearTimeout(timer);
    else if (!paused) refreshAll();
  });

  // Forms with data-confirm="question" ask before they are sent.
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset ? event.target.dataset.confirm : null;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  render();
  schedule();
})();
