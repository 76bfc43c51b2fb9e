// The rating page (templates/evaluation/assignment.html): keyboard-only rating, draft autosave,
// time on item, and a single submit however often Enter or the button is pressed.
(function () {
  "use strict";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function collect(form) {
    const draft = { scores: {}, preference: "", comment: "", unsafe: false, unsafe_reason: "", harm: {}, evidence: [], criteria: {} };
    form.querySelectorAll("input[type=radio]:checked").forEach(function (input) {
      if (input.name === "preference") draft.preference = input.value;
      else if (input.name.startsWith("harm_")) draft.harm[input.name.replace(/^harm_/, "")] = input.value;
      else if (input.name.startsWith("criterion-")) draft.criteria[input.name.replace(/^criterion-/, "")] = input.value === "1";
      else draft.scores[input.name.replace(/^score-/, "")] = input.value;
    });
    const evidence = form.querySelector("[name=evidence]");
    if (evidence) { try { draft.evidence = JSON.parse(evidence.value || "[]"); } catch (error) { draft.evidence = []; } }
    draft.comment = form.querySelector("[name=comment]").value;
    draft.unsafe = form.querySelector("[name=unsafe]").checked;
    draft.unsafe_reason = form.querySelector("[name=unsafe_reason]").value;
    return draft;
  }

  const SUBMITTED_PREFIX = "rating-submitted:";

  // What the last submit of this form posted, kept in this tab only until the next rating page opens (the stored
  // text of every other item goes then too). Null when there is none or the browser keeps no session storage.
  function takeSubmitted(key) {
    try {
      const posted = sessionStorage.getItem(key);
      Object.keys(sessionStorage).forEach(function (name) { if (name.startsWith(SUBMITTED_PREFIX)) sessionStorage.removeItem(name); });
      return posted ? JSON.parse(posted) : null;
    } catch (error) {
      return null;
    }
  }

  // A criterion's grade as the radio's value: met "1", not met "0" (a draft keeps true/false, a refused post "1"/"0").
  function gradeValue(grade) {
    if (grade === undefined || grade === "") return undefined;
    return grade === true || grade === "1" ? "1" : "0";
  }

  // Put back what a refused submit posted.
  function restore(form, entered) {
    form.querySelectorAll("input[type=radio]").forEach(function (input) {
      const wanted = input.name === "preference" ? entered.preference
        : input.name.startsWith("harm_") ? (entered.harm || {})[input.name.replace(/^harm_/, "")]
        : input.name.startsWith("criterion-") ? gradeValue((entered.criteria || {})[input.name.replace(/^criterion-/, "")])
        : (entered.scores || {})[input.name.replace(/^score-/, "")];
      input.checked = wanted !== undefined && String(wanted) === input.value;
    });
    const evidence = form.querySelector("[name=evidence]");
    if (evidence) {
      evidence.value = JSON.stringify(entered.evidence || []);
      document.dispatchEvent(new Event("evidence:restored"));
    }
    form.querySelector("[name=comment]").value = entered.comment || "";
    form.querySelector("[name=unsafe]").checked = Boolean(entered.unsafe);
    form.querySelector("[name=unsafe_reason]").value = entered.unsafe_reason || "";
  }

  // "1,234 of 5,000 characters" under a limited field; past the limit (a long paste, or text put back from a
  // refused submit) it says by how much, and the text stays whole: a maxlength would cut a paste silently.
  function setupCounter(form, counter) {
    const field = form.querySelector("[name=" + counter.dataset.counterFor + "]");
    const limit = Number(field.dataset.limit);
    function update() {
      const length = field.value.length;
      counter.textContent = length.toLocaleString("en-US") + " of " + limit.toLocaleString("en-US") + " characters" +
        (length > limit ? ": " + (length - limit).toLocaleString("en-US") + " too many" : "");
      counter.classList.toggle("bad", length > limit);
      counter.classList.toggle("muted", length <= limit);
      field.setAttribute("aria-invalid", String(length > limit));
    }
    field.addEventListener("input", update);
    update();
  }

  function setup(form) {
    const dimensions = Array.from(form.querySelectorAll("fieldset.dimension"));
    const status = form.querySelector("[data-autosave-status]");
    const help = document.getElementById("keyboard-help");
    const refusal = form.querySelector("[data-submit-error]");
    // A refused submit comes back with what it posted, even when the server could not keep that as a draft (too long).
    const submittedKey = SUBMITTED_PREFIX + form.getAttribute("action");
    const posted = takeSubmitted(submittedKey);
    if (refusal && posted) restore(form, posted);
    form.querySelectorAll("[data-counter-for]").forEach(function (counter) { setupCounter(form, counter); });
    let active = 0;
    let visibleSince = document.hidden ? null : Date.now();
    let spentMs = 0;
    let saveTimer = null;
    let submitted = false;

    // scroll: false on opening the page, which stays at its top (on a phone the form is far below the chart).
    function activate(index, scroll) {
      active = Math.max(0, Math.min(dimensions.length - 1, index));
      dimensions.forEach(function (fieldset, i) { fieldset.classList.toggle("active", i === active); });
      dimensions[active].focus({ preventScroll: scroll === false });
    }

    function firstUnanswered() {
      const index = dimensions.findIndex(function (fieldset) { return !fieldset.querySelector("input:checked"); });
      return index === -1 ? 0 : index;
    }

    function saveDraft() {
      clearTimeout(saveTimer);
      saveTimer = setTimeout(function () {
        if (submitted || !form.dataset.draftUrl) return;
        if (status) status.textContent = "Saving draft…";
        fetch(form.dataset.draftUrl, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify(collect(form)),
        }).then(function (response) {
          form.dataset.draftSaved = response.ok ? "true" : "false";
          if (response.ok) { if (status) status.textContent = "Draft saved"; return; }
          return response.json().then(function (body) {
            if (status) status.textContent = "Draft not saved: " + (body.error || "HTTP " + response.status);
          }, function () {
            if (status) status.textContent = "Draft not saved (HTTP " + response.status + ")";
          });
        }).catch(function () { if (status) status.textContent = "Draft not saved (offline?)"; });
      }, 400);
    }

    function timeSpentSeconds() {
      const now = Date.now();
      return (spentMs + (visibleSince ? now - visibleSince : 0)) / 1000;
    }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden && visibleSince) { spentMs += Date.now() - visibleSince; visibleSince = null; }
      else if (!document.hidden && !visibleSince) { visibleSince = Date.now(); }
    });

    form.addEventListener("change", saveDraft);
    form.addEventListener("input", function (event) { if (event.target.matches("textarea, input[type=text]")) saveDraft(); });
    dimensions.forEach(function (fieldset, index) {
      fieldset.addEventListener("focusin", function () { active = index; dimensions.forEach(function (f, i) { f.classList.toggle("active", i === index); }); });
    });

    form.addEventListener("submit", function (event) {
      if (submitted) { event.preventDefault(); return; }
      submitted = true;
      try { sessionStorage.setItem(submittedKey, JSON.stringify(collect(form))); } catch (error) { /* storage full or off: the server's draft remains */ }
      form.querySelector("[name=time_spent_s]").value = timeSpentSeconds().toFixed(1);
      const button = form.querySelector("[data-submit]");
      if (button) button.disabled = true;
    });

    document.addEventListener("keydown", function (event) {
      const typing = event.target.matches("textarea, input[type=text], select");
      if (event.key === "?" && !typing) { help.hidden = !help.hidden; event.preventDefault(); return; }
      if (event.key === "Escape") { help.hidden = true; if (typing) event.target.blur(); return; }
      if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "Enter") {
        if (event.target.closest("summary, a, button")) return;  // Enter on a control does what the control does: open a panel, follow a link
        if (!form.querySelector("[data-submit]")) return;
        event.preventDefault();
        if (typeof form.requestSubmit === "function") form.requestSubmit(); else form.submit();
        return;
      }
      if (event.key === "ArrowDown" || event.key === "ArrowRight") { activate(active + 1); event.preventDefault(); return; }
      if (event.key === "ArrowUp" || event.key === "ArrowLeft") { activate(active - 1); event.preventDefault(); return; }
      if (event.key === "c") { form.querySelector("[name=comment]").focus(); event.preventDefault(); return; }
      if (event.key === "e" && form.querySelector("[data-evidence-from]")) { form.querySelector("[data-evidence-from]").focus(); event.preventDefault(); return; }
      if (/^[0-9]$/.test(event.key)) {
        const choice = dimensions[active].querySelector('input[data-key="' + event.key + '"]');
        if (!choice) return;
        choice.checked = true;
        choice.dispatchEvent(new Event("change", { bubbles: true }));
        event.preventDefault();
        if (active < dimensions.length - 1) activate(active + 1);
        else form.querySelector("[data-submit]") && form.querySelector("[data-submit]").focus();
      }
    });

    document.querySelectorAll("[data-help-toggle]").forEach(function (button) {
      button.addEventListener("click", function () { help.hidden = !help.hidden; });
    });
    activate(firstUnanswered(), false);
    if (refusal) {
      // The refusal says what to fix: in view, and read out first, rather than above the visible area.
      refusal.scrollIntoView({ block: "center" });
      refusal.focus({ preventScroll: true });
      if (posted) saveDraft();  // the server's draft becomes what the page shows, if it can
    }
    form.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("[data-rating-form]");
    if (form) setup(form);
  });
})();
