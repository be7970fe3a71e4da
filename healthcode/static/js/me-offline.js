/* The offline stand-in for /me (served by the resident page's service worker): the last status
 * this device showed, marked out of date, with no QR. Retrying reloads /me from the network. */
(function () {
  "use strict";
  var text = JSON.parse(document.getElementById("hc-text").textContent);
  var lang = document.documentElement.lang || "en";
  var format = new Intl.DateTimeFormat(lang, {hour: "2-digit", minute: "2-digit", hour12: false});

  document.getElementById("retry").addEventListener("click", function () {
    window.location.replace("/me");
  });
  window.addEventListener("online", function () {
    window.location.replace("/me");
  });
  if (!window.caches) {
    return;
  }
  window.caches.open("hc-me-last").then(function (cache) {
    return cache.match("/me/last");
  }).then(function (response) {
    return response ? response.json() : null;
  }).then(function (last) {
    if (!last) {
      return;
    }
    document.getElementById("masked-name").textContent = last.masked_name || "";
    document.getElementById("last-name-row").hidden = !last.masked_name;
    var status = text.status[last.status] || last.status;
    var known = document.getElementById("last-known");
    known.textContent = text.last_known.replace("%(status)s", status)
      .replace("%(time)s", format.format(new Date(last.expires_ms)));
    known.hidden = false;
  }).catch(function () { /* nothing kept: the page says only that it is out of date */ });
})();
