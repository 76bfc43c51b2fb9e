// Following a job's progress, shared by the job page (job.js) and the twin page (twin.js). Events arrive
// over the job's websocket; when none has come for a while (the socket is down, or the embedded mode,
// where a worker's events cannot reach the web process) the page polls the job's status instead. A
// status request that fails (logged out, no longer allowed, the server failing) stops the polling and
// is reported, so a page left open does not ask forever.
//
// followJob({socketPath, statusUrl, state, onUpdate(payload, via), onConnection(status, error)})
//   state: the job's state when the page was rendered; a finished job is not polled.
//   via: "socket" or "poll"; status: "live", "polling" or "stopped".
(function () {
  "use strict";

  const FINISHED = ["succeeded", "succeeded_with_failures", "failed", "cancelled"];
  const QUIET_MS = 3000;  // no event for this long: poll
  const POLL_EVERY_MS = 2000;

  window.followJob = function (options) {
    let state = options.state;
    let lastEvent = 0;
    let stopped = false;

    function update(payload, via) {
      if (payload.state) state = payload.state;
      options.onUpdate(payload, via);
    }

    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + options.socketPath);
    socket.onmessage = function (event) { lastEvent = Date.now(); update(JSON.parse(event.data), "socket"); };
    socket.onopen = function () { options.onConnection("live"); };
    socket.onclose = function () { if (!stopped) options.onConnection("polling"); };

    const timer = setInterval(function () {
      if (FINISHED.includes(state) || Date.now() - lastEvent <= QUIET_MS) return;
      fetch(options.statusUrl, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      }).then(function (payload) { update(payload, "poll"); }).catch(function (error) {
        clearInterval(timer);
        stopped = true;
        options.onConnection("stopped", error);
      });
    }, POLL_EVERY_MS);
  };

  window.followJob.FINISHED = FINISHED;

  // Writes a job's field into the element of ``section`` marked data-field="<field>" (a <progress> gets its value).
  window.followJob.show = function (section, field, value) {
    const element = section.querySelector('[data-field="' + field + '"]');
    if (!element) return;
    if (element.tagName === "PROGRESS") element.value = value; else element.textContent = value == null ? "" : value;
  };
})();
