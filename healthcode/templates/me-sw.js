/* The resident page's service worker: reloading /me with no network shows an offline page that
 * says the last code is out of date, never the browser's own error page and never a code that
 * looks valid.
 *
 * Network first: online, /me is always the service's current page. The copy kept here is not
 * the page (it carries a live QR) but /me/offline, which shows only the last status, masked name
 * and expiry the page wrote down, struck through as out of date, and no QR at all.
 */
"use strict";

var CACHE = "hc-me-{{ version }}";
var PAGE_URL = {{ page_url|tojson }};
var OFFLINE_URL = {{ offline_url|tojson }};
var ASSETS = {{ assets|tojson }};

function keepOffline() {
  // fetched with the resident's cookies, so the offline page is in the page's language
  return caches.open(CACHE).then(function (cache) {
    return cache.addAll([OFFLINE_URL].concat(ASSETS));
  });
}

self.addEventListener("install", function (event) {
  event.waitUntil(keepOffline().then(function () {
    return self.skipWaiting();
  }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (name) {
      return name.indexOf("hc-me-") === 0 && name !== CACHE && name !== "hc-me-last";
    }).map(function (name) {
      return caches.delete(name);
    }));
  }).then(function () {
    return self.clients.claim();
  }));
});

self.addEventListener("message", function (event) {
  if (event.data === "language-changed") {
    event.waitUntil(keepOffline());
  }
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || request.method !== "GET") {
    return;
  }
  if (request.mode === "navigate" && url.pathname === PAGE_URL) {
    event.respondWith(fetch(request).catch(function () {
      return caches.match(OFFLINE_URL, {cacheName: CACHE});
    }));
  } else if (ASSETS.indexOf(url.pathname) >= 0) {
    event.respondWith(fetch(request).catch(function () {
      return caches.match(url.pathname, {cacheName: CACHE});
    }));
  }
});
