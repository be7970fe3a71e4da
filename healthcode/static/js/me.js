/* The resident's code page: a live clock, and a code that renews itself before it expires.
 *
 * The code is fetched afresh (JSON with its QR image inline, so picture and words always belong
 * to the same signed token) at 60 % of its life. If fetching fails, the page keeps trying;
 * once the code shown has expired it is marked out of date and its QR is hidden: an expired
 * code must never look valid. Times are corrected by the server's clock, so a phone with a
 * wrong clock neither marks a good code stale nor keeps showing an expired one.
 *
 * A status change is pushed: an EventSource on /me/events says "status" the moment the health
 * authority changes it, and the page fetches its new code at once. The timed renewal stays, so
 * a closed stream only delays a change to the next renewal. Changes of status and the switch
 * to "out of date" are announced to screen readers through a live region.
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
  var announcer = document.getElementById("announce");
  var advice = document.getElementById("advice");
  var adviceWhy = document.getElementById("advice-why");
  var adviceNext = document.getElementById("advice-next");

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

  function announce(message) {
    // cleared first, so the same words twice are read twice
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = message; }, 50);
  }

  function renderAdvice() {
    var a = code.advice;
    advice.hidden = !a;
    adviceWhy.textContent = a ? a.why : "";
    adviceWhy.parentNode.hidden = !(a && a.why);
    adviceNext.textContent = a ? a.next : "";
  }

  function render() {
    section.className = "code status-" + code.status;
    section.dataset.state = "fresh";
    section.dataset.status = code.status;
    section.dataset.expiresAt = code.expires_at;
    label.textContent = text.status[code.status] || code.status;
    nameEl.textContent = code.masked_name || "";
    if (code.image && qr.getAttribute("src") !== code.image) {
      qr.setAttribute("src", code.image);
    }
    renderAdvice();
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
    announce(text.stale + ". " + text.stale_detail);
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
        var statusChanged = fresh.status !== code.status;
        var wasStale = section.dataset.state === "stale";
        code = fresh;
        showNotice("");
        render();
        keepLast();
        tick();
        if (statusChanged || wasStale) {
          announce(text.status_now.replace("%(status)s", text.status[code.status] || code.status)
                   + (code.advice && code.advice.why ? " " + code.advice.why : ""));
        }
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

  function listen() {
    if (!window.EventSource || !page.events_url) {
      return;
    }
    var source = null;
    function open() {
      source = new window.EventSource(page.events_url + "?v=" +
                                      encodeURIComponent(code.status_version));
      source.addEventListener("status", function (event) {
        var pushed = JSON.parse(event.data);
        if (pushed.status_version !== code.status_version) {
          schedule(0);
        }
      });
      source.onerror = function () {
        // the browser retries an open stream by itself; a refused one (signed out, the
        // worker full) is closed for good: the timed renewal carries on alone
        if (source.readyState === window.EventSource.CLOSED && !signedOut) {
          window.setTimeout(open, 30000);
        }
      };
    }
    open();
  }

  // What the offline stand-in (/me/offline, from the service worker) may show: the status,
  // masked name and expiry, never the code itself.
  function keepLast() {
    if (!window.caches) {
      return;
    }
    var last = {status: code.status, masked_name: code.masked_name, expires_ms: code.expires_ms};
    window.caches.open("hc-me-last").then(function (cache) {
      return cache.put("/me/last", new Response(JSON.stringify(last),
                                                {headers: {"Content-Type": "application/json"}}));
    }).catch(function () { /* storage refused: the offline page shows less */ });
  }

  function registerWorker() {
    if (!navigator.serviceWorker || !page.worker_url) {
      return;
    }
    navigator.serviceWorker.register(page.worker_url, {scope: page.worker_scope})
      .then(function (registration) {
        if (registration.active) {
          registration.active.postMessage("language-changed");
        }
      }).catch(function () { /* no offline page: the browser's own error shows instead */ });
    var signout = document.querySelector("form.signout");
    if (signout) {
      signout.addEventListener("submit", function () {
        if (window.caches) {
          window.caches.delete("hc-me-last");
        }
      });
    }
  }

  render();
  tick();
  keepLast();
  window.setInterval(tick, 1000);
  scheduleNext();
  listen();
  registerWorker();
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
