// The cohort import page: each chosen file goes up in chunks (healthagent/cohort/uploads.py), resuming from the
// offset the server holds after a failed request; then the import is queued and followed until it ends.
(function () {
  "use strict";
  const form = document.querySelector("[data-import-form]");
  if (!form) return;
  const errorBox = form.querySelector("[data-import-error]");
  const jobBox = document.querySelector("[data-import-job]");
  const csrf = () => form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // An upload made for a file is remembered in this tab, so choosing the same file again resumes it.
  const remembered = (file) => "upload:" + file.name + ":" + file.size + ":" + file.lastModified;

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  async function json(response) {
    const body = await response.json().catch(() => ({}));
    if (!response.ok && response.status !== 409) {
      throw new Error(response.status >= 500 ? "the server answered " + response.status : body.error || "the server answered " + response.status);
    }
    return body;
  }

  async function upload(file, bar) {
    const suffix = (file.name.match(/\.[A-Za-z0-9]+$/) || [""])[0];
    let state = null;
    const known = sessionStorage.getItem(remembered(file));
    if (known) {
      const response = await fetch(form.dataset.uploadsUrl + known + "/", { credentials: "same-origin" });
      if (response.ok) state = await response.json();
    }
    if (!state) {
      state = await json(await fetch(form.dataset.uploadsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
        body: JSON.stringify({ size: file.size, suffix: suffix }),
      }));
      sessionStorage.setItem(remembered(file), state.id);
    }
    let failures = 0;
    while (state.offset < state.size) {
      bar.value = state.offset / state.size;
      const chunk = file.slice(state.offset, Math.min(state.offset + state.chunk_bytes, state.size));
      try {
        const response = await fetch(form.dataset.uploadsUrl + state.id + "/?offset=" + state.offset, {
          method: "PUT",
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrf(), "Content-Type": "application/octet-stream" },
          body: chunk,
        });
        const body = await json(response);
        state.offset = body.offset;  // after a 409 too: carry on from what the server holds
        failures = 0;
      } catch (error) {
        // The network, or a proxy between restarts (no JSON answer): wait and send the chunk again; a 409 then
        // tells the offset the server holds.
        if ((error instanceof TypeError || /answered 50[234]/.test(error.message)) && failures < 8) {
          failures += 1;
          await sleep(500 * 2 ** failures);
          continue;
        }
        throw error;
      }
    }
    bar.value = 1;
    return state.id;
  }

  async function follow(statusUrl) {
    jobBox.hidden = false;
    const bar = jobBox.querySelector("[data-job-progress]");
    const message = jobBox.querySelector("[data-job-message]");
    for (;;) {
      let status;
      try {
        status = await json(await fetch(statusUrl, { credentials: "same-origin" }));
      } catch (error) {  // the page lost the server for a moment: the job runs on; ask again
        message.textContent = "reconnecting…";
        await sleep(2000);
        continue;
      }
      bar.value = status.progress;
      if (status.state === "succeeded") {
        message.innerHTML = "";
        const link = document.createElement("a");
        link.href = status.cohort_url;
        link.textContent = "Open the cohort";
        message.append(status.imported + " participants imported, " + status.dropped + " dropped (k-anonymity). ", link);
        return;
      }
      if (status.state === "failed" || status.state === "cancelled") {
        message.textContent = "";
        fail("The import failed: " + (status.error || status.message) + ". The uploaded files are deleted; nothing was imported.");
        return;
      }
      message.textContent = status.message || "waiting for a worker";
      await sleep(1000);
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const data = {};
      for (const [name, value] of new FormData(form).entries()) if (typeof value === "string") data[name] = value;
      const sent = [];
      for (const input of form.querySelectorAll("input[type=file][data-upload]")) {
        if (input.files.length) {
          const id = await upload(input.files[0], form.querySelector("[data-progress=" + input.dataset.upload + "]"));
          data[input.dataset.upload] = id;
          sent.push(input.files[0]);
        }
      }
      const queued = await json(await fetch(window.location.pathname, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams(data),
      }));
      // Only now are the uploads the job's: a refusal above keeps them, and a corrected form sends nothing again.
      for (const file of sent) sessionStorage.removeItem(remembered(file));
      await follow(queued.status);
    } catch (error) {
      fail(error.message);
    } finally {
      button.disabled = false;
    }
  });
})();
