// Photo page: the marks drawn as SVG circles over the EXIF-free photo, per-class toggles, zoom (wheel or
// buttons) and pan (drag), the lesion list, and corrections (add, remove, reclassify) sent to the API;
// every correction comes back as a new version with the counts recomputed from the marks. Undo and
// "revert to" save an earlier version's marks as a new version; keyboard shortcuts are listed on the page.
(function () {
  "use strict";
  const app = document.getElementById("photo-app");
  if (!app) return;
  const photoId = app.dataset.photo;
  const W = Number(app.dataset.width), H = Number(app.dataset.height);
  const canCorrect = app.dataset.canCorrect === "1";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const COLOURS = { inflammatory: "#e62828", comedone: "#1e78ff", scar: "#ffc800" };
  const SVGNS = "http://www.w3.org/2000/svg";
  const viewer = document.getElementById("viewer");
  const stage = document.getElementById("stage");
  const img = document.getElementById("photo-img");
  const svg = document.getElementById("overlay");
  const status = document.getElementById("status-line");
  const addClass = document.getElementById("add-class");
  let data = null, selected = null;
  let scale = 1, fit = 1, tx = 0, ty = 0;

  function api(path, opts) {
    opts = opts || {};
    opts.credentials = "same-origin";
    opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
    return fetch(path, opts).then((r) => r.json().then((j) => {
      if (!r.ok) throw new Error(typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail));
      return j;
    }));
  }

  function visibleClasses() {
    return new Set(Array.from(document.querySelectorAll(".class-toggle")).filter((c) => c.checked).map((c) => c.value));
  }

  function renderExperts() {
    // Expert-style marks: small dots under the counted marks, never selectable or corrected.
    const marks = data.expert_marks || [];
    document.getElementById("expert-toggle").hidden = marks.length === 0;
    document.getElementById("expert-count").textContent = marks.length;
    if (!document.getElementById("show-experts").checked) return;
    marks.forEach((m) => {
      const d = document.createElementNS(SVGNS, "circle");
      d.setAttribute("cx", m.x); d.setAttribute("cy", m.y); d.setAttribute("r", 3);
      d.classList.add("expert-mark");
      svg.append(d);
    });
  }

  function render() {
    const show = visibleClasses();
    svg.replaceChildren();
    renderExperts();
    const tbody = document.querySelector("#lesion-list tbody");
    tbody.replaceChildren();
    data.marks.forEach((m) => {
      const r = Math.max(6, Math.max(m.bbox[2], m.bbox[3]) / 2 + 4);
      const c = document.createElementNS(SVGNS, "circle");
      c.setAttribute("cx", m.x); c.setAttribute("cy", m.y); c.setAttribute("r", r);
      c.setAttribute("stroke", COLOURS[m.class] || "#fff");
      c.dataset.id = m.id; c.dataset.cls = m.class;
      c.classList.add("mark");
      if (!show.has(m.class)) c.classList.add("hidden");
      if (m.id === selected) c.classList.add("selected");
      const t = document.createElementNS(SVGNS, "title");
      t.textContent = `${m.id} ${m.class} (${m.region}, ${m.source})`;
      c.append(t);
      svg.append(c);
      const tr = document.createElement("tr");
      tr.dataset.id = m.id;
      if (m.id === selected) tr.className = "selected";
      [m.id, m.class, m.region, m.score.toFixed(2), m.source].forEach((v, j) => {
        const td = document.createElement("td");
        if (j === 1) {
          const key = document.createElement("span");
          key.className = `key c-${v}`;
          key.textContent = v;
          td.append(key);
        } else {
          td.textContent = v;
        }
        tr.append(td);
      });
      tr.hidden = !show.has(m.class);
      tbody.append(tr);
    });
    const counts = data.counts || {};
    document.querySelectorAll("[data-count]").forEach((td) => { td.textContent = counts[td.dataset.count] ?? ""; });
    const model = data.model_counts || {};
    document.querySelectorAll("[data-model-count]").forEach((td) => { td.textContent = model[td.dataset.modelCount] ?? ""; });
    const rbody = document.querySelector("#region-counts tbody");
    rbody.replaceChildren(...Object.entries(data.counts_by_region || {})
      .filter(([, c]) => c.inflammatory + c.comedone + c.scar > 0)
      .map(([region, c]) => {
        const tr = document.createElement("tr");
        [region.replace("_", " "), c.inflammatory, c.comedone, c.scar].forEach((v, j) => {
          const td = document.createElement("td");
          td.textContent = v;
          if (j > 0) td.className = "num";
          tr.append(td);
        });
        return tr;
      }));
    document.getElementById("version-line").textContent = data.version
      ? `Marks version ${data.version}` + (data.changed_by ? `, last changed by ${data.changed_by}` : " (model)") : "";
    const undo = document.getElementById("undo-btn");
    if (undo) undo.disabled = !(data.version > 1);
    updateSelection();
  }

  function loadHistory() {
    return api(`/api/v1/photos/${photoId}/versions`).then((vs) => {
      const ol = document.getElementById("history");
      ol.replaceChildren(...vs.slice().reverse().map((v) => {
        const li = document.createElement("li");
        li.textContent = `v${v.version} ${v.change} — ${v.by}, ${v.at.slice(0, 16).replace("T", " ")} UTC `;
        if (canCorrect && v.version < data.version) {
          const b = document.createElement("button");
          b.type = "button"; b.className = "small revert"; b.dataset.version = v.version;
          b.textContent = `revert to v${v.version}`;
          li.append(b);
        }
        return li;
      }));
    });
  }

  function updateSelection() {
    if (!canCorrect) return;
    const m = data.marks.find((x) => x.id === selected);
    document.getElementById("selected-info").textContent = m ? `Selected ${m.id}: ${m.class}` : "Click a mark to select it.";
    ["reclass-to", "reclass-btn", "remove-btn"].forEach((id) => { document.getElementById(id).disabled = !m; });
    if (m) {
      const to = document.getElementById("reclass-to");
      if (to.value === m.class) to.value = Array.from(to.options).map((o) => o.value).find((v) => v !== m.class);
    }
  }

  function select(id) {
    selected = selected === id ? null : id;
    render();
  }

  function correct(change) {
    status.textContent = "Saving…";
    change.base_version = data.version;
    return api(`/api/v1/photos/${photoId}/marks`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(change),
    }).then((j) => {
      data = j;
      if (!data.marks.some((m) => m.id === selected)) selected = null;
      status.textContent = `Saved as version ${j.version}.`;
      render();
      return loadHistory();
    }).catch((e) => { status.textContent = e.message; });
  }

  function revert(to) { return correct({ op: "revert", to_version: to }); }
  function undo() { if (data && data.version > 1) revert(data.version - 1); }

  // --- zoom and pan -------------------------------------------------------------------------------------
  function apply() { stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; }
  function fitView() {
    fit = Math.min(viewer.clientWidth / W, viewer.clientHeight / H);
    scale = fit;
    tx = (viewer.clientWidth - W * scale) / 2; ty = (viewer.clientHeight - H * scale) / 2;
    img.style.width = `${W}px`; img.style.height = `${H}px`;
    apply();
  }
  function zoomAt(factor, cx, cy) {
    const s = Math.min(Math.max(scale * factor, fit * 0.5), fit * 40);
    tx = cx - (cx - tx) * (s / scale); ty = cy - (cy - ty) * (s / scale);
    scale = s; apply();
  }
  viewer.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = viewer.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  document.getElementById("zoom-in").onclick = () => zoomAt(1.5, viewer.clientWidth / 2, viewer.clientHeight / 2);
  document.getElementById("zoom-out").onclick = () => zoomAt(1 / 1.5, viewer.clientWidth / 2, viewer.clientHeight / 2);
  document.getElementById("zoom-reset").onclick = fitView;

  let drag = null;
  viewer.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, tx, ty, moved: false }; });
  viewer.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
    if (drag.moved) { tx = drag.tx + dx; ty = drag.ty + dy; apply(); }
  });
  viewer.addEventListener("pointerup", (e) => {
    const wasDrag = drag && drag.moved;
    drag = null;
    if (wasDrag) return;
    const target = e.target;
    if (target.classList && target.classList.contains("mark")) { select(target.dataset.id); return; }
    if (canCorrect && addClass && addClass.value) {
      const r = viewer.getBoundingClientRect();
      const x = (e.clientX - r.left - tx) / scale, y = (e.clientY - r.top - ty) / scale;
      if (x >= 0 && y >= 0 && x < W && y < H) correct({ op: "add", cls: addClass.value, x, y });
    }
  });

  document.querySelectorAll(".class-toggle").forEach((c) => c.addEventListener("change", render));
  document.getElementById("show-experts").addEventListener("change", render);
  document.querySelector("#lesion-list tbody").addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr) select(tr.dataset.id);
  });
  function setAddMode(cls) {
    addClass.value = cls;
    viewer.classList.toggle("adding", !!cls);
  }
  function reclassify(cls) {
    const m = data.marks.find((x) => x.id === selected);
    if (m && m.class !== cls) correct({ op: "reclassify", id: selected, cls });
  }
  function step(delta) {
    const shown = data.marks.filter((m) => visibleClasses().has(m.class));
    if (!shown.length) return;
    const i = shown.findIndex((m) => m.id === selected);
    selected = shown[(i + delta + shown.length) % shown.length].id;
    render();
  }
  if (canCorrect) {
    addClass.addEventListener("change", () => setAddMode(addClass.value));
    document.getElementById("remove-btn").onclick = () => selected && correct({ op: "remove", id: selected });
    document.getElementById("reclass-btn").onclick = () =>
      selected && correct({ op: "reclassify", id: selected, cls: document.getElementById("reclass-to").value });
    document.getElementById("undo-btn").onclick = undo;
    document.getElementById("history").addEventListener("click", (e) => {
      const b = e.target.closest("button.revert");
      if (b) revert(Number(b.dataset.version));
    });
  }
  // Keyboard shortcuts (not while typing in a field): see the list under the viewer.
  const ADD_KEYS = { 1: "inflammatory", 2: "comedone", 3: "scar" };
  const CLASS_KEYS = { i: "inflammatory", c: "comedone", s: "scar" };
  document.addEventListener("keydown", (e) => {
    if (!data || e.altKey || e.target.closest("input, select, textarea")) return;
    const k = e.key;
    const mid = () => [viewer.clientWidth / 2, viewer.clientHeight / 2];
    if (k === "+" || k === "=") zoomAt(1.5, ...mid());
    else if (k === "-") zoomAt(1 / 1.5, ...mid());
    else if (k === "f") fitView();
    else if (k === "n") step(1);
    else if (k === "p") step(-1);
    else if (!canCorrect) { if (k === "Escape") { selected = null; render(); } return; }
    else if ((k === "z" && (e.ctrlKey || e.metaKey)) || k === "u") undo();
    else if (k === "Delete" || k === "Backspace") { if (selected) correct({ op: "remove", id: selected }); }
    else if (ADD_KEYS[k]) setAddMode(ADD_KEYS[k]);
    else if (k === "0") setAddMode("");
    else if (k === "Escape") { setAddMode(""); selected = null; render(); }
    else if (CLASS_KEYS[k] && !e.ctrlKey && !e.metaKey) reclassify(CLASS_KEYS[k]);
    else return;
    e.preventDefault();
  });

  if (img.complete) fitView(); else img.addEventListener("load", fitView);
  window.addEventListener("resize", fitView);
  function showWarnings() {
    const ul = document.getElementById("photo-warnings");
    ul.replaceChildren(...(data.warnings || []).map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  }
  api(`/api/v1/photos/${photoId}`).then((j) => { data = j; render(); showWarnings(); return loadHistory(); })
    .then(() => { app.dataset.ready = "1"; })
    .catch((e) => { status.textContent = e.message; });
})();
