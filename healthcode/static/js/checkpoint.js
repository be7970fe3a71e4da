/* The checkpoint scanner: camera frames -> a QR decoder (the browser's BarcodeDetector, else
 * zxing-cpp as WebAssembly, else jsQR; all but the first served by this app) -> POST /api/v1/verify,
 * and, when the service cannot be reached, the same checks in the browser (offline-verify.js)
 * against the signed trust bundle kept on this device.
 *
 * This is the only script the page's first load carries (issue 13.11: at most 100 KB before
 * the page is usable, on a weak signal). The rest comes when needed: the offline verifier and
 * the trust bundle once the page has loaded, zxing when the camera is on and the browser cannot
 * read QR codes itself, jsQR only where zxing cannot load or run (or is slow to arrive).
 *
 * The answer is shown full-screen as soon as it arrives. There are three kinds of answer and
 * only three (issue 12): valid (the colour), not valid (the code failed, with its reason), and
 * could not check (network, service or trust data unavailable), which has its own look and is
 * never kept in the recent list as a refusal: a failure to ask is not a verdict on a person.
 * The last few results are kept in this page's memory only, never stored. Requests carry the
 * session's CSRF token, since the session cookie alone would let any page that can make the
 * browser post act as this checkpoint.
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
  // zxing's time box: a frame that takes longer than FRAME_BUDGET_MS makes the next ones
  // smaller (down to MIN_SIDE, where a 105-module SHC code across two thirds of the frame
  // still has 3 px a module), and quick frames let it grow back, so a slow phone still reads
  // several frames a second and the page stays responsive
  var FRAME_BUDGET_MS = 120;
  var MIN_SIDE = 480;
  var ZXING_LOAD_MS = 15000; // a decoder that has not loaded by then is given up for jsQR
  // on a slow link the 0.4 MB WebAssembly takes a while: past this jsQR (42 KB) reads until
  // zxing is there, and zxing takes over once it is
  var ZXING_SLOW_MS = 3000;
  var WORKER_AFTER_MS = 10000; // the worker is registered by then even if the bundle hangs

  var video = document.getElementById("video");
  var canvas = document.getElementById("frame");
  var context = canvas.getContext("2d", {willReadFrequently: true});
  var cameraStatus = document.getElementById("camera-status");
  var startButton = document.getElementById("camera-start");
  var result = document.getElementById("result");
  var recentList = document.getElementById("recent");

  var offline = null; // window.HealthcodeOffline, once offline-verify.js is in (loadOffline)
  var trustStatus = document.getElementById("trust-status");
  var BUNDLE_CACHE = "hc-checkpoint-v1";
  var BUNDLE_EVERY_MS = 5 * 60 * 1000; // cheap: an unchanged bundle is a 304

  var recent = [];
  var typed = ""; // what a keyboard-wedge scanner types while a result is on screen
  var bundle = null; // {opened: openBundle result, trust: prepare result}
  var lastText = null;
  var lastAt = 0;
  var busy = false;
  var scanning = false;

  var timeFormat = new Intl.DateTimeFormat(lang, {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
  });
  // 24-hour times in every language, as Macau and Hong Kong write them (issue 13.11)
  var dateTimeFormat = new Intl.DateTimeFormat(lang, {dateStyle: "medium", timeStyle: "medium",
                                                      hourCycle: "h23"});

  /* One of this app's scripts (page.scripts), inserted the first time it is needed. Same
   * origin and content-hashed, so the page's CSP (script-src 'self', no inline script, no
   * eval) allows it exactly as it allows the page's own script tag. Resolves once it has run;
   * a failed load is forgotten, so a later call (back online) tries again. */
  var scripts = {};
  function loadScript(name) {
    var url = page.scripts && page.scripts[name];
    if (!url) {
      return Promise.reject(new Error("no script " + name));
    }
    if (!scripts[name]) {
      scripts[name] = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = url;
        tag.async = false; // scripts inserted together run in the order they were inserted
        tag.onload = function () {
          resolve();
        };
        tag.onerror = function () {
          delete scripts[name];
          tag.remove();
          reject(new Error("script " + name + " did not load"));
        };
        document.head.appendChild(tag);
      });
    }
    return scripts[name];
  }

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

  // A network that is up but does not answer ("lie-fi") must not hold a guard for long: past
  // this, the page checks offline (the service's own answers take milliseconds).
  var ANSWER_WITHIN_MS = 4000;

  function post(url, body) {
    var signal = window.AbortSignal && AbortSignal.timeout
      ? AbortSignal.timeout(ANSWER_WITHIN_MS) : undefined;
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      signal: signal,
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
    result.dataset.offline = view.offline ? "true" : "false";
    setText("result-kind", view.kind === "lookup" ? text.lookup : text.scan);
    setText("result-headline", view.headline);
    setText("result-reason", view.detail);
    setText("result-current", view.current).hidden = !view.current;
    setText("result-rule", view.rule).hidden = !view.rule;
    setText("result-why", view.why).hidden = !view.why;
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

  var shortTime = new Intl.DateTimeFormat(lang, {dateStyle: "short", timeStyle: "short",
                                                 hourCycle: "h23"});

  function when(seconds) {
    return shortTime.format(new Date(seconds * 1000));
  }

  function whenIso(text) {
    return text ? shortTime.format(new Date(text)) : "";
  }

  /* How the answer was reached, in words: online, online without the status store, or offline
   * against the trust bundle of a given time. */
  function howChecked(answer) {
    if (answer.checked_offline) {
      var words = format(text.checked_offline_at, {time: when(bundle.opened.issuedAt)});
      if (answer.valid && answer.status_as_of) {
        words += " · " + format(text.status_as_of, {time: whenIso(answer.status_as_of)});
      }
      return words;
    }
    if (answer.checked_online) {
      return text.checked_online;
    }
    if (answer.valid && answer.scheme === "native") {
      // the service answered from the token alone: its store was down (checked_online false)
      return format(text.status_not_asked, {time: whenIso(answer.issued_at)});
    }
    return answer.valid ? text.checked_online : "";
  }

  /* Why a yellow or red code is so, in the same words as the resident's page (issue 13.4). */
  function why(reasons) {
    var first = (reasons || []).filter(function (r) { return text.why[r]; })[0];
    return first ? text.why[first] : "";
  }

  function verdict(answer, latency) {
    var status = answer.status;
    var name = answer.subject && answer.subject.masked_name;
    var view = {
      kind: "scan", valid: answer.valid, status: status,
      reason: answer.valid ? "valid" : answer.reason,
      name: name,
      // a refused code's own "valid until" would contradict its headline (issue 13.11)
      expiry: answer.valid && answer.expires_at
        ? dateTimeFormat.format(new Date(answer.expires_at)) : "",
      // How it was checked matters for a code that passed; a forged or expired code is
      // refused whatever the service's status would have said.
      online: answer.valid ? howChecked(answer) : (answer.checked_offline
        ? format(text.checked_offline_at, {time: when(bundle.opened.issuedAt)}) : ""),
      offline: Boolean(answer.checked_offline),
      why: why(answer.reasons),
      latency: latency
    };
    if (answer.valid && status) {
      view.tone = status;
      view.headline = text.status[status] || status;
      // offline, "up to date" cannot be said: the colour is the one the code was issued with
      view.detail = answer.checked_offline ? text.offline_valid : text.reason.valid;
    } else if (answer.valid) {
      // genuine, but nothing here gives codes of this scheme a colour (issue 13.9)
      view.tone = "genuine";
      view.status = "";
      view.headline = text.genuine;
      view.detail = format(text.genuine_detail,
                           {scheme: text.schemes[answer.scheme] || answer.scheme || ""}) +
        (answer.issuer ? " · " + format(text.issuer, {issuer: answer.issuer}) : "");
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

  /* Could not check: never the invalid frame, never red, never "not valid". */
  function unchecked(kind, reason, detail, headline) {
    return {kind: kind, tone: "unchecked", valid: undefined, reason: reason,
            headline: headline || text.could_not_check, detail: detail};
  }

  function failure(kind, reason, retryAfter) {
    return unchecked(kind, reason, errorWords(reason, retryAfter));
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
    typed = "";
    // back to the code field, so the next typed or wedge-scanned code goes there (issue 13.11)
    byId("manual-code").focus();
  }

  // -- scanning ----------------------------------------------------------------------------------

  function verify(code, started) {
    busy = true;
    show({kind: "scan", tone: "pending", headline: text.checking, detail: ""});
    var done = function (view) {
      view.latency = Math.round(performance.now() - started);
      show(view);
    };
    var asked = navigator.onLine === false
      ? Promise.resolve(null) // the browser knows it is offline: do not wait for a timeout
      // lang: a mode's rule descriptions come back in the page's language
      : post(page.verify_url, {code: code, lang: lang}).catch(function () {
        return null;
      });
    asked
      .then(function (reply) {
        if (reply && reply.ok) {
          return done(verdict(reply.data, 0));
        }
        if (reply && reply.status < 500 && reply.status !== 0) {
          // the service answered but would not check (signed out, rate limited, too large)
          return done(failure("scan", reply.data.error || "error", reply.retryAfter));
        }
        // no answer, or the service is failing: check here, with the trust bundle
        return checkOffline(code).then(done);
      })
      .catch(function () {
        done(failure("scan", "error"));
      })
      .then(function () {
        busy = false;
      });
  }

  function checkOffline(code) {
    if (!bundle || !offline) {
      return Promise.resolve(unchecked("scan", "network", text.no_trust_detail));
    }
    if (bundleState() !== "current") {
      return Promise.resolve(unchecked("scan", "trust_expired", text.trust_expired_detail,
                                       text.trust_expired));
    }
    return offline.verify(code, bundle.trust).then(function (answer) {
      if (answer.unchecked) {
        return unchecked("scan", "offline_unsupported", answer.scheme === "icao-vds"
          ? text.icao_offline : text.offline_unsupported);
      }
      return verdict(answer, 0);
    });
  }

  // -- the trust bundle: fetched when online, kept on this device for offline checks --------

  function bundleState() {
    if (!bundle) return "none";
    var now = Date.now() / 1000;
    if (now >= bundle.opened.expiresAt) return "expired";
    return now < bundle.opened.notBefore - page.clock_skew ? "not_yet_valid" : "current";
  }

  function showTrustStatus() {
    var state = bundleState();
    trustStatus.dataset.state = state;
    trustStatus.textContent = state === "current"
      ? format(text.trust_ready, {time: when(bundle.opened.issuedAt),
                                  until: when(bundle.opened.expiresAt)})
      : (state === "none" ? text.trust_none : text.trust_expired_banner);
    // the service's own word that a trust source it imported is stale (trust/bundle.py)
    var warnings = bundle && Array.isArray(bundle.opened.payload.warnings)
      ? bundle.opened.payload.warnings.length : 0;
    trustStatus.dataset.warnings = String(warnings);
    if (state === "current" && warnings) {
      trustStatus.textContent += " · " + format(text.trust_warnings, {count: warnings});
    }
  }

  /* Open (verify) a bundle's JWS and make it the one offline checks use; a bundle that fails
   * its signature is dropped, and the one in use stays. */
  function useBundle(jws) {
    var opening = offline.openBundle(jws, page.trust_keys, undefined, page.issuer);
    return opening.then(function (opened) {
      if (bundle && bundle.opened.issuedAt > opened.issuedAt) {
        return false; // never step back to an older bundle
      }
      return offline.prepare(opened.payload, {issuer: page.issuer, skew: page.clock_skew,
                                              partners: page.partners})
        .then(function (trust) {
          bundle = {opened: opened, trust: trust, jws: jws};
          showTrustStatus();
          return true;
        });
    });
  }

  function cachedBundle() {
    if (!window.caches) return Promise.resolve(null);
    return caches.open(BUNDLE_CACHE).then(function (cache) {
      return cache.match(page.bundle_url);
    }).then(function (response) {
      return response ? response.text() : null;
    }).catch(function () {
      return null;
    });
  }

  function keepBundle(jws) {
    if (!window.caches) return Promise.resolve();
    return caches.open(BUNDLE_CACHE).then(function (cache) {
      return cache.put(page.bundle_url, new Response(jws, {
        headers: {"Content-Type": "application/jose"}}));
    }).catch(function () {});
  }

  /* The offline verifier and its CBOR library: after the page has loaded, with the bundle. */
  function loadOffline() {
    if (offline) {
      return Promise.resolve(offline);
    }
    return Promise.all([loadScript("cbor"), loadScript("offline")]).then(function () {
      offline = window.HealthcodeOffline || null;
      return offline;
    }, function () {
      return null;
    });
  }

  function refreshBundle() {
    return loadOffline().then(refreshWithVerifier);
  }

  function refreshWithVerifier() {
    if (!offline || !window.crypto || !window.crypto.subtle) {
      trustStatus.textContent = text.trust_none;
      return Promise.resolve();
    }
    var fromCache = bundle ? Promise.resolve() : cachedBundle().then(function (jws) {
      return jws ? useBundle(jws).catch(function () {}) : null;
    });
    return fromCache.then(function () {
      if (navigator.onLine === false) return null;
      // "no-cache": the browser revalidates with the ETag it holds, so an unchanged bundle
      // costs a 304 and no download
      return fetch(page.bundle_url, {credentials: "same-origin", cache: "no-cache",
                                     headers: {"Accept": "application/jose"}})
        .then(function (response) {
          return response.ok ? response.text() : null;
        })
        .then(function (jws) {
          if (!jws || (bundle && bundle.jws === jws)) return null;
          return useBundle(jws).then(function (used) {
            return used ? keepBundle(jws) : null;
          });
        })
        .catch(function () {
          return null;
        });
    }).then(refreshed, refreshed);
  }

  function refreshed() {
    showTrustStatus();
    // how many refreshes have finished: lets tests and integrators wait for one
    trustStatus.dataset.refreshes = String(Number(trustStatus.dataset.refreshes || 0) + 1);
  }

  /* A code read (by: the decoder that read it, or "typed"). */
  function onCode(code, started, by) {
    var at = Date.now();
    if (busy || (code === lastText && at - lastAt < SAME_CODE_MS)) {
      return;
    }
    lastText = code;
    lastAt = at;
    performance.mark("hc-code-read"); // for measuring how long a code takes to be read
    video.dataset.readBy = by || "typed";
    verify(code, started);
  }

  function ready() {
    return !busy && !document.hidden && video.readyState >= video.HAVE_CURRENT_DATA &&
      video.videoWidth > 0;
  }

  /* The current frame, scaled so its longer side is at most maxSide, as RGBA pixels. */
  function grab(maxSide) {
    var scale = Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight));
    var width = Math.round(video.videoWidth * scale);
    var height = Math.round(video.videoHeight * scale);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    context.drawImage(video, 0, 0, width, height);
    return context.getImageData(0, 0, width, height);
  }

  function next(startedAt) {
    var spent = startedAt === undefined ? 0 : performance.now() - startedAt;
    window.setTimeout(scanFrame, Math.max(20, SCAN_EVERY_MS - spent));
  }

  // zxing: formats and options chosen for a QR on a screen or paper in a guard's hand
  var zxingSide = MAX_SIDE;
  var zxingFrames = 0;
  function zxingOptions() {
    return {
      formats: ["QRCode"],
      tryHarder: true, // finder patterns searched more densely: small, skewed, blurred codes
      // QR finder patterns read at any angle; 90-degree turns only help linear barcodes
      tryRotate: false,
      // inverted codes (light on dark, as some phones' dark mode shows them) on every other
      // frame: the search for them doubles a frame's time when no code is there
      tryInvert: zxingFrames % 2 === 1,
      tryDownscale: true, // a code filling the frame is found on a smaller copy, faster
      maxNumberOfSymbols: 1,
      textMode: "Plain"
    };
  }

  function scanWithZxing() {
    var started = performance.now();
    var frame = grab(zxingSide);
    var options = zxingOptions();
    zxingFrames += 1;
    zxing.readBarcodes(frame, options).then(function (codes) {
      var took = performance.now() - started;
      zxingSide = took > FRAME_BUDGET_MS ? Math.max(MIN_SIDE, Math.round(zxingSide * 0.8))
        : (took < FRAME_BUDGET_MS / 2 ? Math.min(MAX_SIDE, Math.round(zxingSide * 1.1))
          : zxingSide);
      var found = codes.filter(function (c) { return c.isValid !== false && c.text; })[0];
      if (found) {
        onCode(found.text.trim(), started, "zxing");
      }
      next(started);
    }).catch(function () {
      zxing = null; // a decoder that fails once goes back to jsQR for good
      video.dataset.decoder = "jsqr";
      startJsqr();
      next(started);
    });
  }

  function scanFrame() {
    if (!scanning) {
      return;
    }
    if (detector && ready()) {
      // the browser's own decoder (issue 13.10): reads rotated, skewed and glared codes better
      var asked = performance.now();
      detector.detect(video).then(function (codes) {
        if (codes.length && codes[0].rawValue) {
          onCode(String(codes[0].rawValue).trim(), asked, "native");
        }
      }).catch(function () {
        detector = null; // a detector that fails once goes to zxing or jsQR for good
        if (zxing) {
          video.dataset.decoder = "zxing";
        }
        startZxing();
      }).then(function () {
        next(asked);
      });
      return;
    }
    if (!detector && zxing && ready()) {
      scanWithZxing();
      return;
    }
    if (ready() && typeof window.jsQR === "function") {
      var started = performance.now();
      var frame = grab(MAX_SIDE);
      var found = window.jsQR(frame.data, frame.width, frame.height,
                              {inversionAttempts: "dontInvert"});
      if (found && found.data) {
        onCode(found.data.trim(), started, "jsqr");
      }
    }
    next();
  }

  /* zxing-cpp built to WebAssembly (vendor/zxing-reader.js): faster than jsQR and reads
   * rotated, perspective-skewed, blurred and low-contrast codes jsQR misses. Its .wasm comes
   * from this app under its content-hashed URL (never the package's CDN default), so it works
   * on an offline LAN and from the service worker's copy. Its script and the .wasm are
   * fetched only now, when the camera is on and no BarcodeDetector reads QR codes. Resolves to
   * the library, or null where WebAssembly, the script or the file is missing: then jsQR reads. */
  var zxing = null;
  function loadZxing() {
    if (!page.zxing_wasm_url || typeof WebAssembly !== "object") {
      return Promise.resolve(null);
    }
    var lib = null;
    var loading = loadScript("zxing").then(function () {
      lib = window.ZXingWASM;
      if (!lib || typeof lib.prepareZXingModule !== "function") {
        throw new Error("no zxing");
      }
      return lib.prepareZXingModule({
        overrides: {
          locateFile: function (path, prefix) {
            return /\.wasm$/.test(path) ? page.zxing_wasm_url : prefix + path;
          }
        },
        fireImmediately: true
      });
    });
    var timeout = new Promise(function (resolve) {
      window.setTimeout(resolve, ZXING_LOAD_MS, null);
    });
    return Promise.race([loading.then(function () { return lib; }), timeout])
      .catch(function () {
        return null;
      });
  }
  var zxingLoading = null;
  function startZxing() {
    if (!zxingLoading) {
      var slow = window.setTimeout(startJsqr, ZXING_SLOW_MS);
      zxingLoading = loadZxing().then(function (lib) {
        window.clearTimeout(slow);
        zxing = lib;
        if (!lib) {
          startJsqr();
        }
        if (!detector) {
          video.dataset.decoder = lib ? "zxing" : "jsqr";
        }
      });
    }
    return zxingLoading;
  }

  /* jsQR (vendor/jsQR.min.js), the last fallback: a flat, centred code, where zxing cannot
   * load or has failed, and on a slow link until zxing has arrived. */
  var jsqrLoading = null;
  function startJsqr() {
    if (!jsqrLoading) {
      jsqrLoading = loadScript("jsqr").then(function () {
        if (!detector && !zxing) {
          video.dataset.decoder = "jsqr";
        }
      }, function () {
        jsqrLoading = null; // not there (offline, no copy): asked again on the next fallback
      });
    }
    return jsqrLoading;
  }

  /* The browser's BarcodeDetector where it reads QR codes (Chrome on Android, macOS,
   * ChromeOS); elsewhere zxing, and jsQR where zxing cannot load. */
  var detector = null;
  function findDetector() {
    var native = typeof window.BarcodeDetector === "function" &&
      typeof window.BarcodeDetector.getSupportedFormats === "function"
      ? window.BarcodeDetector.getSupportedFormats().then(function (formats) {
        if (formats.indexOf("qr_code") >= 0) {
          detector = new window.BarcodeDetector({formats: ["qr_code"]});
        }
      }).catch(function () {}) : Promise.resolve();
    return native.then(function () {
      if (detector) {
        video.dataset.decoder = "native"; // nothing else is downloaded
      } else {
        startZxing(); // no BarcodeDetector, or one without QR codes
      }
    });
  }
  var deciding = null;

  function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraStatus.textContent = text.camera_missing;
      video.hidden = true;
      return;
    }
    navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}, audio: false})
      .then(function (stream) {
        video.srcObject = stream;
        // the camera is on: the decoder is chosen (and zxing fetched, if needed) while the
        // video starts, never before
        deciding = deciding || findDetector();
        return video.play();
      })
      .then(function () {
        video.hidden = false;
        cameraStatus.textContent = text.camera_on;
        performance.mark("hc-camera-on"); // for measuring how long a code takes to be read
        startButton.hidden = true;
        if (!scanning) {
          scanning = true;
          deciding.then(scanFrame);
        }
      })
      .catch(function (error) {
        var refused = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
        cameraStatus.textContent = refused ? text.camera_refused : text.camera_missing;
        video.hidden = true; // an empty black box would look like a broken camera
        startButton.hidden = false;
      });
  }

  // -- forms -------------------------------------------------------------------------------

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
    if (navigator.onLine === false) {
      show(unchecked("lookup", "network", text.lookup_needs_service));
      return;
    }
    show({kind: "lookup", tone: "pending", headline: text.checking, detail: ""});
    post(page.lookup_url, body)
      .then(function (reply) {
        if (!reply.ok) {
          show(failure("lookup", reply.data.error || "error", reply.retryAfter));
        } else if (reply.data.found) {
          show({kind: "lookup", tone: reply.data.status, status: reply.data.status,
                reason: "found", headline: text.status[reply.data.status] || reply.data.status,
                detail: "", why: why(reply.data.reasons), name: reply.data.masked_name,
                online: text.checked_online});
        } else {
          show({kind: "lookup", tone: "none", reason: "not_found", headline: text.found_none,
                detail: text.found_none_detail});
        }
      })
      .catch(function () {
        show(unchecked("lookup", "network", text.lookup_needs_service));
      });
  });

  // Keyboard-wedge scanners type the code and press Enter (issue 13.8): Enter checks, the field
  // clears and keeps focus; Shift+Enter still adds a line (SHC chunks may be pasted by hand).
  byId("manual-code").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      byId("manual-form").requestSubmit();
    }
  });

  byId("result-close").addEventListener("click", closeResult);
  document.addEventListener("keydown", function (event) {
    if (result.hidden) {
      return;
    }
    if (event.key === "Escape") {
      closeResult();
    } else if (event.key === "Enter" && typed) {
      // a code typed while a result is shown replaces it, as a camera scan does
      event.preventDefault();
      var code = typed.trim();
      typed = "";
      lastText = null;
      if (code) {
        onCode(code, performance.now());
      }
    } else if (event.key.length === 1 && !event.ctrlKey && !event.metaKey && !event.altKey &&
               (typed || event.key !== " ")) { // a space alone still presses "Next"
      typed += event.key;
      event.preventDefault();
    }
  });
  startButton.addEventListener("click", startCamera);
  startCamera();

  // The service worker keeps this page and its scripts for a reload without a network.
  var registered = false;
  function registerWorker() {
    if (registered || !navigator.serviceWorker || !page.worker_url) {
      return;
    }
    registered = true;
    navigator.serviceWorker.register(page.worker_url, {scope: page.worker_scope})
      .catch(function () {}); // without it the page still checks offline until reloaded
  }

  /* What offline checks need comes once the page is usable: after its load event, in the
   * first idle moment, the verifier and the bundle; then the worker, whose install fetches
   * the rest (decoders included) in the background. */
  function afterLoad() {
    var idle = window.requestIdleCallback || function (then) {
      return window.setTimeout(then, 0);
    };
    idle(function () {
      refreshBundle().then(registerWorker, registerWorker);
      window.setTimeout(registerWorker, WORKER_AFTER_MS);
    }, {timeout: 1000});
    window.setInterval(refreshBundle, BUNDLE_EVERY_MS);
    window.addEventListener("online", refreshBundle);
  }
  if (document.readyState === "complete") {
    afterLoad();
  } else {
    window.addEventListener("load", afterLoad);
  }
  window.addEventListener("offline", showTrustStatus);
})();
