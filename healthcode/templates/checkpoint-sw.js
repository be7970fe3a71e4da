/* The checkpoint scanner's service worker (issue 12): keeps the scanner page, its scripts and
 * the latest trust bundle, so a checkpoint that loses its network can reload the page and keep
 * checking codes offline.
 *
 * Network first, always: online, the page and the bundle are the service's current ones; the
 * copies answer only when the network does not. Only the signed-in scanner page is kept (the
 * service marks it with X-Healthcode-Page), and signing out deletes the copy. The bundle copy
 * is written by the page after it has verified the bundle's signature, never by this worker.
 * Verification requests (POST) are never touched.
 */
"use strict";

var CACHE = "hc-checkpoint-v1";
var ASSETS_CACHE = "hc-checkpoint-assets-{{ version }}";
var PAGE_URL = {{ page_url|tojson }};
var BUNDLE_URL = {{ bundle_url|tojson }};
var SIGNOUT_URL = {{ signout_url|tojson }};
var ASSETS = {{ assets|tojson }};

function keepPage(response) {
  return response.ok && response.headers.get("X-Healthcode-Page") === "checkpoint";
}

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(ASSETS_CACHE).then(function (cache) {
    return cache.addAll(ASSETS);
  }).then(function () {
    // the page that registered this worker, so the very next reload works without a network
    return fetch(PAGE_URL, {credentials: "same-origin", cache: "no-store"}).then(function (page) {
      return keepPage(page) ? caches.open(CACHE).then(function (cache) {
        return cache.put(PAGE_URL, page);
      }) : null;
    }).catch(function () {});
  }).then(function () {
    return self.skipWaiting();
  }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (name) {
      return name.indexOf("hc-checkpoint-assets-") === 0 && name !== ASSETS_CACHE;
    }).map(function (name) {
      return caches.delete(name);
    }));
  }).then(function () {
    return self.clients.claim();
  }));
});

function networkFirst(request, cacheName, key, keep) {
  return fetch(request).then(function (response) {
    if (keep(response)) {
      var copy = response.clone();
      caches.open(cacheName).then(function (cache) {
        return cache.put(key, copy);
      });
    }
    return response;
  }).catch(function () {
    return caches.open(cacheName).then(function (cache) {
      return cache.match(key);
    }).then(function (cached) {
      return cached || Response.error();
    });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if (request.method === "POST" && url.pathname === SIGNOUT_URL) {
    // the copy of the page holds this session's CSRF token: it goes with the session
    event.waitUntil(caches.open(CACHE).then(function (cache) {
      return cache.delete(PAGE_URL);
    }));
    return;
  }
  if (request.method !== "GET") {
    return;
  }
  if (request.mode === "navigate" && url.pathname === PAGE_URL) {
    event.respondWith(networkFirst(request, CACHE, PAGE_URL, keepPage));
  } else if (url.pathname === BUNDLE_URL) {
    event.respondWith(networkFirst(request, CACHE, BUNDLE_URL, function () {
      return false; // the page keeps the bundle once it has checked its signature
    }));
  } else if (ASSETS.indexOf(url.pathname) >= 0) {
    event.respondWith(networkFirst(request, ASSETS_CACHE, url.pathname, function (response) {
      return response.ok;
    }));
  }
});
