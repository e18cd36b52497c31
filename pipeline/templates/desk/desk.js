// The desk's only script; everything works without it. It adds tabs to previews (keyboard: arrows, Home,
// End) and keeps a distribution's progress up to date while it is scheduled or sending.
"use strict";
document.documentElement.classList.add("js");

function setUpTabs(root) {
  const tabs = Array.from(root.querySelectorAll('[role="tab"]'));
  function select(tab, focus) {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute("aria-selected", on ? "true" : "false");
      other.tabIndex = on ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
      if (event.key in moves) {
        event.preventDefault();
        select(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
      }
    });
  });
  select(tabs[0], false);
}

function followProgress(section) {
  const url = section.dataset.progress;
  let live = section.dataset.live === "yes";
  async function poll() {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const type = answer.headers.get("Content-Type") || "";
      if (!answer.ok || !type.startsWith("application/json")) {
        // Signed out (the answer is the sign-in page) or refused: stop, and say so instead of going quiet.
        live = false;
        document.getElementById("dist-progress-text").textContent = "Progress stopped updating: reload the page (you may need to sign in again).";
        return;
      }
      const p = await answer.json();
      document.getElementById("dist-status").textContent = p.status;
      document.getElementById("dist-status").className = "status status-" + p.status;
      const bar = document.getElementById("dist-progress");
      bar.max = Math.max(p.total, 1);
      bar.value = p.done;
      document.getElementById("dist-done").textContent = p.done;
      document.getElementById("dist-total").textContent = p.total;
      document.getElementById("dist-sent").textContent = p.sent;
      for (const [kind, n] of Object.entries(p.engagement)) {
        const cell = document.querySelector('[data-engagement="' + kind + '"]');
        if (cell) cell.textContent = n;
      }
      const known = Object.keys(p.counts).every((s) => document.querySelector('[data-count="' + s + '"]'));
      for (const [status, n] of Object.entries(p.counts)) {
        const cell = document.querySelector('[data-count="' + status + '"]');
        if (cell) cell.textContent = n;
      }
      if (live && !p.live) {
        window.location.reload(); // finished: the page shows the final counts, chart and actions
        return;
      }
      if (!known) window.location.reload();
      live = p.live;
    } finally {
      if (live) window.setTimeout(poll, 1500);
    }
  }
  if (live) window.setTimeout(poll, 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-tabs]").forEach(setUpTabs);
  document.querySelectorAll("[data-progress]").forEach(followProgress);
});
