/* Submits a page's embedded subscribe forms in place and shows the answer beside them. */
(function () {
  "use strict";

  var DONE_MARKER = "mailer-subscribed";
  var FAILED = "Sorry, that did not work. Please try again in a little while.";
  var TOO_MANY = "Too many attempts from here. Please try again later.";

  function statusOf(form) {
    var status = form.querySelector(".mailer-embed-status");
    if (!status) {
      status = document.createElement("p");
      status.className = "mailer-embed-status";
      status.setAttribute("role", "status");
      form.appendChild(status);
    }
    return status;
  }

  function show(form, text, ok) {
    var status = statusOf(form);
    status.textContent = text;
    status.setAttribute("data-state", ok ? "ok" : "error");
  }

  async function submit(event) {
    var form = event.currentTarget;
    event.preventDefault();
    var body = new FormData(form);
    // Browsers send only the origin as Referer across sites; the consent record wants the page.
    body.set("page_url", window.location.href.split("#")[0]);
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    show(form, "Sending…", true);
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: body,
        headers: { Accept: "application/json" },
        credentials: "omit",
        mode: "cors",
      });
      var answer = null;
      try {
        answer = await response.json();
      } catch (error) {
        answer = null;
      }
      if (response.status === 429) {
        show(form, TOO_MANY, false);
      } else if (answer && typeof answer.message === "string") {
        show(form, answer.message, answer.ok === true);
        if (answer.ok === true) form.reset();
      } else {
        show(form, FAILED, false);
      }
    } catch (error) {
      show(form, FAILED, false);
    } finally {
      if (button) button.disabled = false;
    }
  }

  function start() {
    var forms = document.querySelectorAll("form[data-mailer-embed]");
    for (var i = 0; i < forms.length; i += 1) {
      forms[i].addEventListener("submit", submit);
    }
    // Back from a post made without script: show the thank-you line the redirect points at.
    if (window.location.hash === "#" + DONE_MARKER) {
      var done = document.getElementById(DONE_MARKER);
      if (done) done.hidden = false;
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
