// Refresh the live counters every 2 s; the page is complete without this script.
(function () {
  "use strict";
  function refresh() {
    fetch("/console/live.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        Object.keys(data.cards).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) { el.textContent = data.cards[id]; }
        });
        document.querySelectorAll("[data-counter]").forEach(function (el) {
          var n = data.counters[el.getAttribute("data-counter")];
          if (n !== undefined) { el.textContent = String(n); }
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();
