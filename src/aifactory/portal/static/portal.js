// Progressive enhancement only: every page works without this file.
// Live eligibility on the apply wizard, 2-second polling of job tables/state, log following.
"use strict";

(function () {
  const TERMINAL = ["completed", "failed", "cancelled", "timed_out", "node_failed", "preempted"];

  function liveEligibility() {
    const form = document.getElementById("apply-form");
    const target = document.getElementById("eligibility");
    if (!form || !target) return;
    let timer = null;
    const check = () => {
      const body = new FormData(form);
      body.delete("attachments"); // the PDFs travel with the submission only
      fetch(form.dataset.check, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-Fragment": "eligibility" },
      }).then((r) => (r.ok ? r.text() : null)).then((html) => {
        if (html !== null) target.innerHTML = html; // server-rendered, escaped fragment
      }).catch(() => {});
    };
    const soon = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
    form.addEventListener("change", soon);
    form.addEventListener("input", soon);
  }

  function poll(el) {
    const tick = () => {
      const state = el.querySelector("[data-state]");
      if (state && TERMINAL.includes(state.dataset.state)) return;
      fetch(el.dataset.poll, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.text() : null))
        .then((html) => { if (html !== null) el.innerHTML = html; })
        .catch(() => {})
        .finally(() => setTimeout(tick, 2000));
    };
    setTimeout(tick, 2000);
  }

  function follow(pre) {
    const tick = () => {
      const url = pre.dataset.follow + "&offset=" + encodeURIComponent(pre.dataset.offset);
      fetch(url, { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((chunk) => {
          if (!chunk) return;
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          if (chunk.text) pre.appendChild(document.createTextNode(chunk.text)); // text, never HTML
          pre.dataset.offset = String(chunk.next_offset);
          pre.dataset.finished = chunk.finished ? "true" : "false";
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        })
        .catch(() => {})
        .finally(() => { if (pre.dataset.finished !== "true") setTimeout(tick, 1000); });
    };
    if (pre.dataset.finished !== "true") setTimeout(tick, 500);
  }

  document.addEventListener("DOMContentLoaded", () => {
    // A refused form: the error summary gets the focus, so it is what is read out first.
    const summary = document.getElementById("error-summary");
    if (summary) summary.focus();
    liveEligibility();
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("pre[data-follow]").forEach(follow);
  });
})();
