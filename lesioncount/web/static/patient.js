// Patient and visit pages: comparability with the baseline; the aligned before/after view (the latest photo lies over the baseline; the slider shows
// it from the left edge up to its value, and Blink switches between the two twice a second), and the
// report built in the background with its progress shown, then downloaded (the links work without
// JavaScript too, building the report inside the request).
(function () {
  "use strict";
  // Comparability with the baseline, the report's own verdict, fetched per follow-up (it registers the
  // photos, so it is not computed while the page is built): the table says yes or why not, and a visit
  // that is not comparable gets its change struck through and a red ring on the chart.
  document.querySelectorAll("td.comparable[data-url]").forEach((td) => {
    fetch(td.dataset.url, { credentials: "same-origin" }).then((r) => r.json().then((j) => {
      if (!r.ok) throw new Error(j.detail || r.statusText);
      td.textContent = j.comparable ? "yes" : `NO: ${j.warnings[0] || "see the report"}`;
      td.title = j.warnings.join("; ");
      td.dataset.comparable = j.comparable ? "1" : "0";
      if (!j.comparable) {
        td.closest("tr").classList.add("not-comparable");
        if (!td.dataset.visit) return;
        document.querySelectorAll(`svg.chart circle[data-visit="${td.dataset.visit}"]`).forEach((c) => {
          c.classList.add("not-comparable");
          c.querySelector("title").textContent += ". Not comparable with the baseline: " + j.warnings.join("; ");
        });
      }
    })).catch((e) => { td.textContent = `unknown (${e.message})`; });
  });
  const reports = document.getElementById("reports");
  if (reports) {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const status = document.getElementById("report-progress");
    let busy = false;
    reports.querySelectorAll("a.report-job").forEach((a) => a.addEventListener("click", (e) => {
      e.preventDefault();
      if (busy) return;
      busy = true;
      status.textContent = "Building the report…";
      const api = (url, opts) => fetch(url, Object.assign({ credentials: "same-origin" }, opts)).then((r) =>
        r.json().then((j) => { if (!r.ok) throw new Error(j.detail || r.statusText); return j; }));
      const poll = (job) => {
        if (job.status === "done") { busy = false; status.textContent = `Report ready (${job.elapsed_s} s).`; window.location.href = job.download; return; }
        if (job.status === "failed") { busy = false; status.textContent = `The report failed: ${job.error}`; return; }
        status.textContent = `Building the report: ${job.stage} (${Math.round(job.elapsed_s)} s)…`;
        setTimeout(() => api(`/api/v1/report-jobs/${job.id}`).then(poll).catch(fail), 500);
      };
      const fail = (err) => { busy = false; status.textContent = `The report failed: ${err.message}`; };
      api(`${reports.dataset.jobs}?fmt=${a.dataset.fmt}`, { method: "POST", headers: { "X-CSRF-Token": csrf } })
        .then(poll).catch(fail);
    }));
  }
  const after = document.getElementById("ba-after");
  const range = document.getElementById("ba-range");
  if (!after || !range) return;
  let timer = null;
  function show(pct) { after.style.clipPath = `inset(0 ${100 - pct}% 0 0)`; }
  range.addEventListener("input", () => show(Number(range.value)));
  document.getElementById("ba-blink").addEventListener("click", (e) => {
    if (timer) { clearInterval(timer); timer = null; e.target.textContent = "Blink"; show(Number(range.value)); return; }
    let on = false;
    timer = setInterval(() => { on = !on; show(on ? 100 : 0); }, 500);
    e.target.textContent = "Stop";
  });
  show(Number(range.value));
})();
