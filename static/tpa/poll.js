// Polls a run's steps until the run finishes: the element with data-poll-url is replaced
// by the fragment that URL returns (which drops data-poll-url once the run is done).
(function () {
  "use strict";
  var INTERVAL = 1000;

  function poll() {
    var box = document.getElementById("run-steps");
    var url = box && box.getAttribute("data-poll-url");
    if (!url) return;
    fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#run-steps");
        if (fresh) box.replaceWith(fresh);
        setTimeout(poll, INTERVAL);
      })
      .catch(function () { setTimeout(poll, INTERVAL * 3); });
  }

  document.addEventListener("DOMContentLoaded", function () { setTimeout(poll, INTERVAL); });
})();
