// Keeps the Integrations page's statuses current while something syncs; the page works without it.
(function () {
  "use strict";
  var list = document.getElementById("integrations");
  if (!list || !window.fetch) { return; }
  var url = list.getAttribute("data-status-url");
  var EVERY_MS = 2500;

  function syncing() {
    return list.querySelectorAll('[data-status="syncing"]').length > 0;
  }

  function show(item) {
    var card = document.getElementById("integration-" + item.id);
    if (!card) { return; }
    var wasSyncing = card.getAttribute("data-status") === "syncing";
    card.setAttribute("data-status", item.status);
    var status = card.querySelector(".status");
    status.className = "status status-" + item.status;
    status.querySelector(".label").textContent = item.label;
    card.querySelector(".detail").textContent = item.detail;
    card.querySelector(".synced .when").textContent = item.last_synced;
    // The buttons depend on the state: after a sync ends, a reload shows the right ones.
    if (wasSyncing && item.status !== "syncing" && item.status !== "connected") { window.location.reload(); }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (body) { body.integrations.forEach(show); }
        if (syncing()) { window.setTimeout(poll, EVERY_MS); }
      })
      .catch(function () { window.setTimeout(poll, EVERY_MS * 4); });
  }

  if (syncing()) { window.setTimeout(poll, EVERY_MS); }
})();
