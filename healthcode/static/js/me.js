/* The resident's code page: a live clock, and a code that renews itself before it expires.
 *
 * The code is fetched afresh (JSON with its QR image inline, so picture and words always belong
 * to the same signed token) at 60 % of its life. If fetching fails, the page keeps trying;
 * once the code shown has expired it is marked out of date and its QR is hidden: an expired
 * code must never look valid. Times are corrected by the server's clock, so a phone with a
 * wrong clock neither marks a good code stale nor keeps showing an expired one.
 */
(function () {
  "use strict";
  var text = JSON.parse(document.getElementById("hc-text").textContent);
  var page = JSON.parse(document.getElementById("hc-page").textContent);
  var lang = document.documentElement.lang || "en";

  var section = document.getElementById("code");
  var label = document.getElementById("banner-label");
  var nameEl = document.getElementById("masked-name");
  var qr = document.getElementById("qr");
  var staleNote = document.getElementById("stale-note");
  var clock = document.getElementById("clock");
  var expires = document.getElementById("expires");
  var notice = document.getElementById("notice");

  var REFRESH_AT = 0.6; // of the code's life; the server re-signs after half of it
  var RETRY_MIN_MS = 2000;
  var RETRY_MAX_MS = 10000;

  var code = page.code;
  var offset = code.now_ms - Date.now(); // server clock minus device clock
  var failures = 0;
  var timer = null;
  var signedOut = false;

  var timeFormat = new Intl.DateTimeFormat(lang, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
  });

  function now() {
    return Date.now() + offset;
  }

  function showNotice(message) {
    notice.textContent = message;
    notice.hidden = !message;
  }

  function render() {
    section.className = "code status-" + code.status;
    section.dataset.state = "fresh";
    section.dataset.status = code.status;
    section.dataset.expiresAt = code.expires_at;
    label.textContent = text.status[code.status] || code.status;
    nameEl.textContent = code.masked_name || "";
    if (qr.getAttribute("src") !== code.image) {
      qr.setAttribute("src", code.image);
    }
    qr.hidden = false;
    staleNote.hidden = true;
    expires.setAttribute("datetime", code.expires_at);
    expires.textContent = timeFormat.format(new Date(code.expires_ms));
  }

  function markStale() {
    if (section.dataset.state === "stale") {
      return;
    }
    section.className = "code stale";
    section.dataset.state = "stale";
    label.textContent = text.stale;
    qr.hidden = true;
    staleNote.hidden = false;
  }

  function tick() {
    clock.textContent = timeFormat.format(new Date(now()));
    clock.setAttribute("datetime", new Date(now()).toISOString());
    if (now() >= code.expires_ms) {
      markStale();
    }
  }

  function schedule(delay) {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, Math.max(500, delay));
  }

  function scheduleNext() {
    var life = code.expires_ms - code.issued_ms;
    schedule(code.issued_ms + life * REFRESH_AT - now());
  }

  function retry() {
    failures += 1;
    schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * failures));
  }

  function refresh() {
    if (signedOut) {
      return;
    }
    var sent = Date.now();
    fetch(page.code_url, {credentials: "same-origin", cache: "no-store",
                          headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          signedOut = true;
          showNotice(text.error.unauthorized);
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (fresh) {
        if (!fresh) {
          return;
        }
        failures = 0;
        // half the round trip is the best guess of when the server read its clock
        offset = fresh.now_ms - (sent + (Date.now() - sent) / 2);
        var changed = fresh.expires_ms !== code.expires_ms || fresh.status !== code.status;
        code = fresh;
        showNotice("");
        render();
        tick();
        if (changed) {
          scheduleNext();
        } else {
          schedule(RETRY_MIN_MS); // still the cached token: ask again shortly
        }
      })
      .catch(function () {
        if (section.dataset.state !== "stale") {
          showNotice(text.offline);
        }
        retry();
      });
  }

  render();
  tick();
  window.setInterval(tick, 1000);
  scheduleNext();
  window.addEventListener("online", function () {
    schedule(0);
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && now() >= code.issued_ms +
        (code.expires_ms - code.issued_ms) * REFRESH_AT) {
      schedule(0);
    }
  });
})();
