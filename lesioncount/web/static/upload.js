// Drag-and-drop upload: each file goes to the JSON API in its own request, with its own progress bar (a
// request is all or nothing, so a bad file is refused alone, with its reason, and the others are counted).
// The visit's counting progress is polled until every photo is counted; then the page reloads to show the
// counts, unless a file was refused: its reason stays on screen beside a link to the counts.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("upload-list");
  const view = document.getElementById("upload-view");
  let pending = 0;

  function uploadOne(file) {
    const li = document.createElement("li");
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = 0;
    const label = document.createElement("span");
    label.textContent = file.name;
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = "uploading";
    li.append(bar, label, state);
    list.append(li);
    const body = new FormData();
    body.append("files", file, file.name);
    body.append("view", view.value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    pending += 1;
    xhr.onloadend = () => {
      pending -= 1;
      if (xhr.status === 201) {
        bar.value = 1;
        state.textContent = "uploaded, counting…";
        li.className = "ok";
      } else {
        let msg = "upload failed";
        try { msg = JSON.parse(xhr.responseText).detail; } catch (err) { /* not JSON */ }
        state.textContent = typeof msg === "string" ? msg : JSON.stringify(msg);
        li.className = "failed";
      }
      if (pending === 0) poll();
    };
    xhr.send(body);
  }

  function uploadAll(files) { Array.from(files).forEach(uploadOne); }

  function poll() {
    const line = document.getElementById("count-progress");
    const bar = document.getElementById("count-bar");
    const text = document.getElementById("count-text");
    fetch(form.dataset.progress, { credentials: "same-origin" })
      .then((r) => r.json())
      .then((p) => {
        line.hidden = false;
        bar.max = Math.max(1, p.total);
        bar.value = p.finished;
        text.textContent = `${p.finished} of ${p.total} photos counted`;
        if (p.finished < p.total) { setTimeout(poll, 1000); return; }
        const failed = list.querySelectorAll("li.failed").length;
        if (!failed) { window.location.reload(); return; }
        list.querySelectorAll("li.ok .state").forEach((s) => { s.textContent = "counted"; });
        const done = list.querySelectorAll("li.ok").length;
        text.textContent = `${done} photo${done === 1 ? "" : "s"} counted, ${failed} refused (reasons above). `;
        const a = Object.assign(document.createElement("a"), { href: window.location.href, id: "show-counts" });
        a.textContent = "Show the counts";
        text.append(a);
      });
  }

  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => uploadAll(e.dataTransfer.files));
  input.addEventListener("change", () => { uploadAll(input.files); input.value = ""; });
  form.addEventListener("submit", (e) => e.preventDefault());
  // Photos still counting from an earlier upload: show their progress too.
  if (document.querySelector("#photos td.status") &&
      Array.from(document.querySelectorAll("#photos td.status")).some((td) => /queued|counting/.test(td.textContent))) poll();
})();
