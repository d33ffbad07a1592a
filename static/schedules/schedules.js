// The report page's schedules section: loaded as a fragment (it needs its own queries),
// and the "Download PDF" button: POST, then poll the status URL until the PDF is ready.
(function () {
  "use strict";
  const INTERVAL = 1000;
  const holder = document.querySelector("[data-schedules-url]");
  if (!holder) return;

  function token() {
    const input = holder.querySelector("[data-pdf-token] input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function poll(url, status) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (body.status === "done") {
      status.textContent = "PDF ready.";
      window.location.assign(body.pdf_url);
    } else if (body.status === "failed") {
      status.textContent = "The PDF failed: " + body.error;
    } else {
      status.textContent = "Making the PDF… (" + body.status + ")";
      setTimeout(function () { poll(url, status).catch(failed(status)); }, INTERVAL);
    }
  }

  function failed(status) {
    return function (error) { status.textContent = "The PDF failed: " + error; };
  }

  async function requestPdf(button) {
    const status = holder.querySelector("[data-pdf-status]");
    button.disabled = true;
    status.textContent = "Queued…";
    try {
      const response = await fetch(button.dataset.pdfUrl, {
        method: "POST",
        headers: { "X-CSRFToken": token(), Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json();
      if (response.status !== 202) throw new Error(JSON.stringify(body.errors || body));
      await poll(body.status_url, status);
    } catch (error) {
      failed(status)(error.message);
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    const response = await fetch(holder.dataset.schedulesUrl, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!response.ok) return;
    holder.innerHTML = await response.text();
    const button = holder.querySelector("[data-pdf-url]");
    if (button) button.addEventListener("click", function () { requestPdf(button); });
    // Back from one of its forms: show what changed.
    if (window.location.hash.startsWith("#schedule")) {
      const manage = holder.querySelector("[data-schedules-manage]");
      if (manage) manage.open = true;
      holder.scrollIntoView();
    }
  }

  document.addEventListener("DOMContentLoaded", load);
})();
