// quantum_flow dashboard: draws the Mermaid graphs and keeps a page's live part current.
// The server renders every page; this file only (1) renders <pre class="mermaid"> blocks with
// the vendored Mermaid, and (2) listens to the page's server-sent events (fed by NOTIFY
// quantum_flow_events) and, after a change (and every data-refresh ms), fetches the page's
// live part again and swaps it in, keeping what the reader opened or closed and not redrawing
// a graph whose text did not change.
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

  // Each graph's Mermaid text, kept before Mermaid replaces it with the drawing.
  const keepSources = (root) => {
    root.querySelectorAll("figure.graph pre.mermaid:not([data-source])").forEach((pre) => {
      pre.dataset.source = pre.textContent;
    });
  };

  // How many times the live part was swapped in (the browser tests read it).
  let refreshes = 0;
  let timer = null;
  let busy = false;
  let again = false;

  const swap = (html) => {
    const open = new Map();
    live.querySelectorAll("details[data-key]").forEach((d) => open.set(d.dataset.key, d.open));
    const oldGraphs = Array.from(live.querySelectorAll("figure.graph"));
    live.innerHTML = html;
    keepSources(live);
    live.querySelectorAll("details[data-key]").forEach((d) => {
      if (open.has(d.dataset.key)) d.open = open.get(d.dataset.key);
    });
    // an unchanged graph keeps its drawing (no blink)
    live.querySelectorAll("figure.graph").forEach((figure, i) => {
      const old = oldGraphs[i];
      const fresh = figure.querySelector("pre.mermaid");
      const kept = old && old.querySelector("pre.mermaid");
      if (fresh && kept && kept.dataset.source === fresh.dataset.source) {
        figure.replaceWith(old);
      }
    });
  };

  const refresh = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(live.dataset.fragment, { headers: { Accept: "text/html" } });
      if (response.ok) {
        swap(await response.text());
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

  // At most one fetch per 150 ms however many events arrive (a run's steps change in one
  // commit; a busy list page hears every run's changes).
  const schedule = () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      refresh();
    }, 150);
  };

  keepSources(document);
  renderGraphs();
  if (!live || !live.dataset.events || !live.dataset.fragment) return;
  const source = new EventSource(live.dataset.events);
  source.addEventListener("change", schedule);
  source.addEventListener("resync", schedule);
  // "live" follows the server's own LISTEN connection, which the stream reports first and on
  // every change; a stream of ours that is down is not live either
  source.addEventListener("listen", (e) => {
    document.body.dataset.live = e.data === "on" ? "on" : "off";
  });
  source.addEventListener("open", () => {
    document.body.dataset.sse = "open";
    // what changed between this page's rendering (or a reconnect) and now
    schedule();
  });
  source.addEventListener("error", () => {
    document.body.dataset.live = "off";
    document.body.dataset.sse = "closed";
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
