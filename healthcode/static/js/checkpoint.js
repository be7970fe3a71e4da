/* The checkpoint scanner: camera frames -> jsQR (served by this app) -> POST /api/v1/verify.
 *
 * The answer is shown full-screen as soon as it arrives: colour, reason in words, masked name,
 * expiry and whether it was checked online. The last few results are kept in this page's
 * memory only, never stored. Requests carry the session's CSRF token, since the session
 * cookie alone would let any page that can make the browser post act as this checkpoint.
 */
(function () {
  "use strict";
  var text = JSON.parse(document.getElementById("hc-text").textContent);
  var page = JSON.parse(document.getElementById("hc-page").textContent);
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var lang = document.documentElement.lang || "en";

  var SCAN_EVERY_MS = 100;
  var SAME_CODE_MS = 5000; // the same code held in front of the camera is one scan, not many
  var MAX_SIDE = 800; // frames are scaled down to this: enough for a phone-screen QR, and fast

  var video = document.getElementById("video");
  var canvas = document.getElementById("frame");
  var context = canvas.getContext("2d", {willReadFrequently: true});
  var cameraStatus = document.getElementById("camera-status");
  var startButton = document.getElementById("camera-start");
  var result = document.getElementById("result");
  var recentList = document.getElementById("recent");

  var recent = [];
  var lastText = null;
  var lastAt = 0;
  var busy = false;
  var scanning = false;

  var timeFormat = new Intl.DateTimeFormat(lang, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
  });
  var dateTimeFormat = new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeStyle: "medium"});

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    var el = byId(id);
    el.textContent = value || "";
    return el;
  }

  function format(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) {
      return values[key] === undefined ? "" : String(values[key]);
    });
  }

  function errorWords(reason, retryAfter) {
    var words = text.error[reason] || text.error.error;
    return format(words, {seconds: retryAfter || ""});
  }

  // -- talking to the service ------------------------------------------------------------------

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRF-Token": csrf},
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () {
        return {};
      }).then(function (data) {
        return {ok: response.ok, status: response.status, data: data,
                retryAfter: response.headers.get("Retry-After")};
      });
    });
  }

  // -- the full-screen result ------------------------------------------------------------------

  function show(view) {
    result.className = "result result-" + view.tone;
    result.dataset.kind = view.kind;
    result.dataset.valid = view.valid === undefined ? "" : String(view.valid);
    result.dataset.status = view.status || "";
    result.dataset.reason = view.reason || "";
    result.dataset.latency = view.latency === undefined ? "" : String(view.latency);
    setText("result-kind", view.kind === "lookup" ? text.lookup : text.scan);
    setText("result-headline", view.headline);
    setText("result-reason", view.detail);
    setText("result-current", view.current).hidden = !view.current;
    setText("result-rule", view.rule).hidden = !view.rule;
    setText("result-name", view.name);
    byId("result-name-row").hidden = !view.name;
    setText("result-expiry", view.expiry);
    byId("result-expiry-row").hidden = !view.expiry;
    setText("result-online", view.online).hidden = !view.online;
    result.hidden = false;
    result.focus();
    if (view.tone !== "pending") {
      remember(view);
    }
  }

  function verdict(answer, latency) {
    var status = answer.status;
    var name = answer.subject && answer.subject.masked_name;
    var view = {
      kind: "scan", valid: answer.valid, status: status, reason: answer.valid ? "valid" : answer.reason,
      name: name,
      expiry: answer.expires_at ? dateTimeFormat.format(new Date(answer.expires_at)) : "",
      // Online or not matters for a code that passed the offline checks; a forged or expired
      // code never reaches the online check, and saying "checked offline" would mislead.
      online: answer.checked_online ? text.checked_online
        : (answer.valid ? text.checked_offline : ""),
      latency: latency
    };
    if (answer.valid) {
      view.tone = status;
      view.headline = text.status[status] || status;
      view.detail = text.reason.valid;
    } else {
      view.tone = "invalid";
      view.headline = text.not_valid;
      view.detail = text.reason[answer.reason] || text.reason.unknown;
      if (status && answer.reason === "superseded") {
        // a superseded code: the resident's status now, so staff know what a fresh code says
        view.current = format(text.current_status, {status: text.status[status] || status});
      }
      // refused by the checkpoint mode's rules: which one, as the rule describes itself
      var failed = (answer.rules || []).filter(function (r) { return r.result === "failed"; });
      if (failed.length) {
        view.rule = format(text.rule_failed, {rule: failed[0].description});
      }
    }
    return view;
  }

  function failure(kind, reason, retryAfter) {
    return {kind: kind, tone: "error", reason: reason, headline: text.not_valid,
            detail: errorWords(reason, retryAfter)};
  }

  function remember(view) {
    recent.unshift({at: new Date(), view: view});
    recent.length = Math.min(recent.length, page.keep);
    recentList.textContent = "";
    recent.forEach(function (entry) {
      var item = document.createElement("li");
      item.className = "recent-" + entry.view.tone;
      var parts = [timeFormat.format(entry.at), entry.view.headline];
      if (entry.view.name) {
        parts.push(entry.view.name);
      }
      item.textContent = parts.join(" · ");
      recentList.appendChild(item);
    });
  }

  function closeResult() {
    result.hidden = true;
    lastText = null; // the next scan may be the same code again, on purpose
  }

  // -- scanning ----------------------------------------------------------------------------------

  function verify(code, started) {
    busy = true;
    show({kind: "scan", tone: "pending", headline: text.checking, detail: ""});
    post(page.verify_url, {code: code, lang: lang}) // lang: rule descriptions in the page's
      .then(function (reply) {
        var latency = Math.round(performance.now() - started);
        if (reply.ok) {
          show(verdict(reply.data, latency));
        } else {
          show(failure("scan", reply.data.error || "error", reply.retryAfter));
        }
      })
      .catch(function () {
        show(failure("scan", "network"));
      })
      .then(function () {
        busy = false;
      });
  }

  function onCode(code, started) {
    var at = Date.now();
    if (busy || (code === lastText && at - lastAt < SAME_CODE_MS)) {
      return;
    }
    lastText = code;
    lastAt = at;
    verify(code, started);
  }

  function scanFrame() {
    if (!scanning) {
      return;
    }
    if (!busy && !document.hidden && video.readyState >= video.HAVE_CURRENT_DATA &&
        video.videoWidth > 0 && typeof window.jsQR === "function") {
      var started = performance.now();
      var scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
      var width = Math.round(video.videoWidth * scale);
      var height = Math.round(video.videoHeight * scale);
      canvas.width = width;
      canvas.height = height;
      context.drawImage(video, 0, 0, width, height);
      var frame = context.getImageData(0, 0, width, height);
      var found = window.jsQR(frame.data, width, height, {inversionAttempts: "dontInvert"});
      if (found && found.data) {
        onCode(found.data.trim(), started);
      }
    }
    window.setTimeout(scanFrame, SCAN_EVERY_MS);
  }

  function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraStatus.textContent = text.camera_missing;
      video.hidden = true;
      return;
    }
    navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}, audio: false})
      .then(function (stream) {
        video.srcObject = stream;
        return video.play();
      })
      .then(function () {
        video.hidden = false;
        cameraStatus.textContent = text.camera_on;
        startButton.hidden = true;
        if (!scanning) {
          scanning = true;
          scanFrame();
        }
      })
      .catch(function (error) {
        var refused = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
        cameraStatus.textContent = refused ? text.camera_refused : text.camera_missing;
        video.hidden = true; // an empty black box would look like a broken camera
        startButton.hidden = false;
      });
  }

  // -- forms ---------------------------------------------------------------------------------------

  byId("manual-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var field = byId("manual-code");
    var code = field.value.trim();
    if (code) {
      lastText = null;
      onCode(code, performance.now());
      field.value = "";
    }
  });

  byId("lookup-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var number = byId("doc-number");
    var body = {document: {type: byId("doc-type").value, number: number.value.trim(),
                           region: byId("doc-region").value.trim()}};
    // off the screen at once: a document number is not for the next person in the queue to read
    number.value = "";
    show({kind: "lookup", tone: "pending", headline: text.checking, detail: ""});
    post(page.lookup_url, body)
      .then(function (reply) {
        if (!reply.ok) {
          show(failure("lookup", reply.data.error || "error", reply.retryAfter));
        } else if (reply.data.found) {
          show({kind: "lookup", tone: reply.data.status, status: reply.data.status,
                reason: "found", headline: text.status[reply.data.status] || reply.data.status,
                detail: "", name: reply.data.masked_name, online: text.checked_online});
        } else {
          show({kind: "lookup", tone: "none", reason: "not_found", headline: text.found_none,
                detail: text.found_none_detail});
        }
      })
      .catch(function () {
        show(failure("lookup", "network"));
      });
  });

  byId("result-close").addEventListener("click", closeResult);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !result.hidden) {
      closeResult();
    }
  });
  startButton.addEventListener("click", startCamera);
  startCamera();
})();
