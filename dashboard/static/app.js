// quantum_flow dashboard: draws the Mermaid graphs and keeps a page's live part current.
// The server renders every page; this file only (1) renders <pre class="mermaid"> blocks with
// the vendored Mermaid, and (2) listens to the page's server-sent events (fed by NOTIFY
// quantum_flow_events) and, after a change (and every data-refresh ms), fetches the page's
// live part again and swaps it in.
(() => {
  "use strict";
  const live = document.getElementById("live");
  const hasMermaid = typeof window.mermaid !== "undefined";
  if (hasMermaid) {
    document.body.classList.add("has-mermaid");
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  }

  const renderGraphs = async () => {
    if (!hasMermaid) return;
    const nodes = document.querySelectorAll("pre.mermaid:not([data-processed])");
    if (nodes.length === 0) return;
    try {
      await window.mermaid.run({ nodes });
    } catch (e) {
      console.error("mermaid", e);
    }
  };

  // How many times the live part was swapped in (the browser tests read it).
  let refreshes = 0;
  let timer = null;
  let busy = false;
  let again = false;

  const refresh = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(live.dataset.fragment, { headers: { Accept: "text/html" } });
      if (response.ok) {
        const html = await response.text();
        // keep open <details> open across the swap
        const open = new Set(
          Array.from(live.querySelectorAll("details[open]")).map((d) => d.dataset.tasksOf || "")
        );
        live.innerHTML = html;
        live.querySelectorAll("details[data-tasks-of]").forEach((d) => {
          if (open.has(d.dataset.tasksOf)) d.open = true;
        });
        refreshes += 1;
        live.dataset.refreshes = String(refreshes);
        await renderGraphs();
      }
    } catch (e) {
      console.error("refresh", e);
    } finally {
      busy = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };

  // Events come in bursts (a run's steps change in one commit): one fetch per burst.
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 100);
  };

  renderGraphs();
  if (!live || !live.dataset.events || !live.dataset.fragment) return;
  const source = new EventSource(live.dataset.events);
  source.addEventListener("change", schedule);
  source.addEventListener("resync", schedule);
  source.addEventListener("open", () => {
    document.body.dataset.live = "on";
  });
  source.addEventListener("error", () => {
    document.body.dataset.live = "off";
  });
  // Task counts and retries change without a status change (no event): fetch again now and
  // then while the page is visible, unless it shows a run that has ended.
  const every = Number(live.dataset.refresh || 0);
  if (every > 0) {
    setInterval(() => {
      if (document.hidden || live.querySelector("[data-ended]")) return;
      schedule();
    }, every);
  }
})();
