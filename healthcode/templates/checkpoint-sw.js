/* The checkpoint scanner's service worker (issue 12): keeps the scanner page, its scripts and
 * the latest trust bundle, so a checkpoint that loses its network can reload the page and keep
 * checking codes offline.
 *
 * Network first, always: online, the page and the bundle are the service's current ones; the
 * copies answer only when the network does not. Only the signed-in scanner page is kept (the
 * service marks it with X-Healthcode-Page: checkpoint), and the copy goes as soon as the
 * service answers /checkpoint with its sign-in page (X-Healthcode-Page: signin): signed out,
 * expired or ended elsewhere, the copy's CSRF token belongs to a session that is over. That is
 * how signing out drops it: the sign-out form posts to /signout, outside this worker's scope
 * (a worker sees only navigations within it), and the answer redirects to /checkpoint, which
 * this worker does see. The bundle copy is written by the page after it has verified the
 * bundle's signature, never by this worker. Verification requests (POST) are never touched.
 *
 * The worker is registered once the page has loaded and its trust bundle is in: installing, it
 * fetches every asset the scanner may need offline, the camera decoders included, which the
 * page itself loads only when the camera starts.
 */
"use strict";

var CACHE = "hc-checkpoint-v1";
var ASSETS_CACHE = "hc-checkpoint-assets-{{ version }}";
var PAGE_URL = {{ page_url|tojson }};
var BUNDLE_URL = {{ bundle_url|tojson }};
var ASSETS = {{ assets|tojson }};

/* The network's answer to the scanner page: kept when it is the signed-in scanner, the copy
 * dropped when it is the sign-in page; resolves once the cache says so. */
function followPage(response) {
  var kind = response.headers.get("X-Healthcode-Page");
  if (response.ok && kind === "checkpoint") {
    var copy = response.clone();
    return caches.open(CACHE).then(function (cache) {
      return cache.put(PAGE_URL, copy);
    });
  }
  if (kind === "signin") {
    return caches.open(CACHE).then(function (cache) {
      return cache.delete(PAGE_URL);
    });
  }
  return Promise.resolve();
}

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(ASSETS_CACHE).then(function (cache) {
    return cache.addAll(ASSETS);
  }).then(function () {
    // the page that registered this worker, so the very next reload works without a network
    return fetch(PAGE_URL, {credentials: "same-origin", cache: "no-store"})
      .then(followPage).catch(function () {});
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
  if (request.method !== "GET") {
    return;
  }
  if (request.mode === "navigate" && url.pathname === PAGE_URL) {
    event.respondWith(fetch(request).then(function (response) {
      // the copy is kept or dropped before the answer shows: a sign-in page on screen means
      // the copy is gone, not going
      return followPage(response).catch(function () {}).then(function () {
        return response;
      });
    }, function () {
      return caches.open(CACHE).then(function (cache) {
        return cache.match(PAGE_URL);
      }).then(function (cached) {
        return cached || Response.error();
      });
    }));
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
