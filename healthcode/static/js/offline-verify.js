/* Verifying codes in the browser, for a checkpoint that has lost the service (issue 12).
 *
 * window.HealthcodeOffline:
 *   openBundle(jws, pinnedJwks, nowMs, issuer) -> Promise<{payload, kid, issuedAt, notBefore,
 *       expiresAt,
 *       state: "current" | "expired" | "not_yet_valid"}>; rejects when the signature does not
 *       verify against a key delivered with the page (the bundle is then never used).
 *   prepare(payload, options) -> a trust object for verify(); options.issuer / options.skew
 *       override the bundle's own issuer id and clock skew.
 *   verify(text, trust, atMs) -> Promise<answer>, shaped as POST /api/v1/verify answers, plus
 *       "checked_offline": true. Codes this page cannot judge answer {"unchecked": true,
 *       "reason": "offline_unsupported"} instead of a verdict.
 *
 * The checks follow the server's adapters step for step (healthcode/tokens.py, mapping/shc.py,
 * mapping/eu_dcc/), so the same code gets the same reason on both sides; the browser tests
 * run the shared conformance vectors through both and compare. Signatures are checked with
 * WebCrypto: ECDSA P-256 / SHA-256 takes the raw r||s that JWS (RFC 7518 3.4) and COSE
 * (RFC 9053 2.1) carry as is, and RSA-PSS (PS256, salt 32) for EU DCC signers with RSA keys.
 * CBOR is decoded with the vendored cbor-x (no-eval build, as the CSP forbids eval);
 * base45 (RFC 9285) and the few DER fields of an X.509 certificate a check needs (validity,
 * SubjectPublicKeyInfo, extended key usage, SAN URIs, the signed TBS part and its ECDSA
 * signature, for SHC x5c chains) are read here, strictly, in a few lines each.
 */
(function (root) {
  "use strict";

  var subtle = root.crypto && root.crypto.subtle;
  var utf8 = new TextEncoder();
  var strictUtf8 = new TextDecoder("utf-8", {fatal: true});

  var STATUSES = {green: true, yellow: true, red: true};
  var MAX_CODE_LENGTH = 32 * 1024; // mapping/base.py MAX_CODE_LENGTH
  var SHC_MAX_INFLATED = 256 * 1024; // mapping/shc.py
  var SHC_NBF_SKEW_MS = 60 * 1000;
  var DCC_MAX_INFLATED = 64 * 1024; // mapping/eu_dcc/cose.py
  var LAST_INSTANT = 253402300799; // 9999-12-31T23:59:59Z
  var HEALTH_CARD = "https://smarthealth.cards#health-card";
  var ALG_ES256 = -7;
  var ALG_PS256 = -37;
  var KEY_USAGE = { // mapping/eu_dcc/claims.py KEY_USAGE_OIDS (the .0.1847 typo shipped widely)
    test: ["1.3.6.1.4.1.1847.2021.1.1", "1.3.6.1.4.1.0.1847.2021.1.1"],
    vaccination: ["1.3.6.1.4.1.1847.2021.1.2", "1.3.6.1.4.1.0.1847.2021.1.2"],
    recovery: ["1.3.6.1.4.1.1847.2021.1.3", "1.3.6.1.4.1.0.1847.2021.1.3"]
  };
  var DCC_OIDS = {};
  Object.keys(KEY_USAGE).forEach(function (type) {
    KEY_USAGE[type].forEach(function (oid) { DCC_OIDS[oid] = true; });
  });
  var TYPE_KEYS = {v: "vaccination", t: "test", r: "recovery"};
  var BUNDLE_TYP = "hc-trust-bundle+jwt"; // healthcode/trust/bundle.py TYP

  function CodeError(reason, message, step) {
    this.reason = reason;
    this.message = message || reason;
    this.step = step;
  }

  function fail(reason, message, step) {
    throw new CodeError(reason, message, step);
  }

  // -- bytes and text ------------------------------------------------------------------------

  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  var B64_INDEX = {};
  (function () {
    for (var i = 0; i < 64; i++) {
      B64_INDEX[B64[i]] = i;
    }
    B64_INDEX["-"] = 62;
    B64_INDEX._ = 63;
  })();

  /* base64 or base64url to bytes, as Python's lenient b64decode reads it: characters outside
   * the alphabet are skipped, a length that cannot be base64 is an error. With `canonical`,
   * the text must be exactly what the bytes encode to (no padding, no stray bits). */
  function base64Bytes(text, canonical) {
    var values = [];
    for (var i = 0; i < text.length; i++) {
      var v = B64_INDEX[text[i]];
      if (v !== undefined) {
        values.push(v);
      } else if (canonical) {
        return null;
      }
    }
    if (values.length % 4 === 1) {
      return null;
    }
    var out = new Uint8Array(Math.floor(values.length * 3 / 4));
    var o = 0;
    for (var j = 0; j < values.length; j += 4) {
      var n = (values[j] << 18) | (values[j + 1] << 12) |
        ((values[j + 2] || 0) << 6) | (values[j + 3] || 0);
      out[o++] = (n >> 16) & 255;
      if (j + 2 < values.length) out[o++] = (n >> 8) & 255;
      if (j + 3 < values.length) out[o++] = n & 255;
    }
    if (canonical) {
      var rest = values.length % 4;
      var last = values[values.length - 1];
      if ((rest === 2 && (last & 15)) || (rest === 3 && (last & 3))) {
        return null; // unused low bits set: another spelling of the same bytes
      }
    }
    return out;
  }

  function b64url(text, canonical, what) {
    var bytes = base64Bytes(text, canonical);
    if (bytes === null) {
      fail("malformed", (what || "a JWS part") + " is not base64url");
    }
    return bytes;
  }

  function toBase64(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i += 3) {
      var n = (bytes[i] << 16) | ((bytes[i + 1] || 0) << 8) | (bytes[i + 2] || 0);
      s += B64[(n >> 18) & 63] + B64[(n >> 12) & 63] +
        (i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=") +
        (i + 2 < bytes.length ? B64[n & 63] : "=");
    }
    return s;
  }

  function toBase64url(bytes) {
    return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function jsonOf(bytes, what) {
    try {
      return JSON.parse(strictUtf8.decode(bytes));
    } catch (e) {
      fail("malformed", what + " is not JSON");
    }
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function isInt(value) {
    return typeof value === "number" && Number.isInteger(value);
  }

  function sha256(bytes) {
    return subtle.digest("SHA-256", bytes).then(function (d) {
      return new Uint8Array(d);
    });
  }

  /* The EU DCC revocation design's SIGNATURE hash: SHA-256, first 16 bytes, in base64, over
   * r (the first half) of an ECDSA signature and over the whole of an RSA one: ECDSA is
   * malleable, (r, n - s) verifies too (healthcode/revocation.py, trust/bundle.py). */
  function signatureHash(signature, ecdsa) {
    var part = ecdsa === false ? signature : signature.subarray(0, signature.length >> 1);
    return sha256(part).then(function (d) {
      return toBase64(d.subarray(0, 16));
    });
  }

  /* Inflate with the browser's own DecompressionStream ("deflate" is zlib, RFC 1950;
   * "deflate-raw" is RFC 1951), refusing output past `limit` (a bomb) and data after the end
   * of the stream (which Chromium reports as an error). */
  function inflate(bytes, format, limit) {
    if (typeof root.DecompressionStream !== "function") {
      return Promise.reject(new CodeError("offline_unsupported",
        "this browser cannot decompress codes"));
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new root.DecompressionStream(format));
    var reader = stream.getReader();
    var chunks = [];
    var total = 0;
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) {
          var out = new Uint8Array(total);
          var at = 0;
          chunks.forEach(function (c) {
            out.set(c, at);
            at += c.length;
          });
          return out;
        }
        total += step.value.length;
        if (total > limit) {
          reader.cancel();
          throw new CodeError("too_large", "the code inflates to more than " + limit + " bytes");
        }
        chunks.push(step.value);
        return pump();
      });
    }
    return pump().catch(function (error) {
      if (error instanceof CodeError) throw error;
      throw new CodeError("malformed", "broken " + format + " data", "zlib");
    });
  }

  // -- names ---------------------------------------------------------------------------------

  /* healthcode/record.py mask_name: first and last character of each word, stars between;
   * hyphens and apostrophes separate words as spaces do, and ICAO "<" fillers read as spaces
   * ("Musterfrau-Gößinger" -> "M********u-G******r"). Characters are code points, as in
   * Python. */
  var BREAKS = {"": true, " ": true, "-": true, "'": true, "\u2019": true};

  function maskName(name) {
    if (!name) return null;
    var words = spaced(name);
    var masked = words.split(/([ \-'\u2019])/).map(function (part) {
      if (BREAKS[part]) return part;
      var chars = Array.from(part);
      if (chars.length <= 1) return part;
      if (chars.length === 2) return chars[0] + "*";
      return chars[0] + "*".repeat(chars.length - 2) + chars[chars.length - 1];
    }).join("");
    return masked || null;
  }

  function clean(value) {
    if (typeof value !== "string") return null;
    var t = value.trim();
    return t ? t : null;
  }

  /* healthcode/record.py _spaced: ICAO "<" fillers and runs of spaces as single spaces. */
  function spaced(part) {
    return part.replace(/</g, " ").split(/\s+/).filter(Boolean).join(" ");
  }

  /* healthcode/record.py is_cjk: Chinese, Japanese and Korean script (spaces aside). */
  var CJK = new RegExp("^[\\s\u1100-\u11FF\u2E80-\u2FDF\u3040-\u30FF\u3100-\u318F" +
                       "\u31A0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uA960-\uA97F\uAC00-\uD7AF" +
                       "\uF900-\uFAFF\u{20000}-\u{3134F}]+$", "u");

  function isCjk(text) {
    return Boolean(text) && !/^[\x00-\x7f]*$/.test(text) && CJK.test(text) && !/^\s+$/.test(text);
  }

  /* healthcode/record.py full_name: one display name from its parts, in the order the
   * name's script writes it (CJK family name first with no space, others given name first). */
  function joinedName(given, family, text) {
    given = clean(given);
    family = clean(family);
    if (given) given = spaced(given);
    if (family) family = spaced(family);
    if (given && family) {
      return isCjk(family) && isCjk(given) ? family + given : given + " " + family;
    }
    if (given || family) {
      return family || given;
    }
    return clean(text);
  }

  function isoTime(seconds) {
    if (seconds === null || seconds === undefined) return null;
    var text = new Date(seconds * 1000).toISOString();
    return text.replace(/\.000Z$/, "Z");
  }

  // -- keys ----------------------------------------------------------------------------------

  function importJwk(jwk) {
    if (!jwk || jwk.kty !== "EC" || jwk.crv !== "P-256" || !jwk.x || !jwk.y) {
      return Promise.resolve(null);
    }
    return subtle.importKey("jwk", {kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true},
      {name: "ECDSA", namedCurve: "P-256"}, false, ["verify"]).catch(function () {
      return null;
    });
  }

  function verifyEs256(key, signature, data) {
    if (signature.length !== 64) return Promise.resolve(false);
    return subtle.verify({name: "ECDSA", hash: "SHA-256"}, key, signature, data)
      .catch(function () {
        return false;
      });
  }

  /* RFC 7638 thumbprint of an EC public JWK (the kid SMART Health Cards require). */
  function thumbprint(jwk) {
    var canonical = JSON.stringify({crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y});
    return sha256(utf8.encode(canonical)).then(toBase64url);
  }

  /* A cache of imported keys: a scan imports each key once, not once per scan. */
  function KeyCache() {
    this.keys = new Map();
  }
  KeyCache.prototype.get = function (id, load) {
    var found = this.keys.get(id);
    if (!found) {
      found = load();
      this.keys.set(id, found);
    }
    return found;
  };

  // -- the trust bundle ----------------------------------------------------------------------

  function jwsParts(jws) {
    var parts = String(jws).trim().split(".");
    if (parts.length !== 3) fail("malformed", "a compact JWS has three parts");
    return parts;
  }

  function openBundle(jws, pinnedJwks, nowMs, expectedIssuer) {
    return Promise.resolve().then(function () {
      var parts = jwsParts(jws);
      var header = jsonOf(b64url(parts[0]), "the bundle header");
      if (!isObject(header) || header.alg !== "ES256" || typeof header.kid !== "string") {
        fail("bad_signature", "the bundle is not signed with ES256 and a kid");
      }
      // our key signs codes too: the type keeps any other JWS of ours from passing as a bundle
      if (header.typ !== BUNDLE_TYP) fail("malformed", "not a trust bundle");
      var pinned = ((pinnedJwks && pinnedJwks.keys) || []).filter(function (k) {
        return k.kid === header.kid;
      })[0];
      if (!pinned) fail("unknown_key", "the bundle is signed with a key this page does not pin");
      var signature = b64url(parts[2], true);
      return importJwk(pinned).then(function (key) {
        if (!key) fail("unknown_key", "the pinned key cannot be used");
        return verifyEs256(key, signature, utf8.encode(parts[0] + "." + parts[1]));
      }).then(function (ok) {
        if (!ok) fail("bad_signature", "the bundle's signature does not verify");
        var payload = jsonOf(b64url(parts[1]), "the bundle payload");
        if (!isObject(payload) || !isInt(payload.exp) || !isInt(payload.iat)) {
          fail("malformed", "the bundle has no iat and exp");
        }
        if (expectedIssuer && payload.iss !== expectedIssuer) {
          fail("untrusted_issuer", "the bundle is another service's");
        }
        var now = (nowMs === undefined ? Date.now() : nowMs) / 1000;
        var nbf = isInt(payload.nbf) ? payload.nbf : payload.iat;
        return {
          payload: payload, kid: header.kid, issuedAt: payload.iat, notBefore: nbf,
          expiresAt: payload.exp,
          state: now >= payload.exp ? "expired" : (now < nbf ? "not_yet_valid" : "current")
        };
      });
    });
  }

  function listOf(value) {
    return Array.isArray(value) ? value : [];
  }

  function keysOf(jwks) {
    if (Array.isArray(jwks)) return jwks;
    return jwks && Array.isArray(jwks.keys) ? jwks.keys : [];
  }

  function addShcRevocations(trust, issuer, crls) {
    // SMART Health Card revocation lists ({"kid", "rids": ["rid" | "rid.<time>"]})
    listOf(crls).forEach(function (crl) {
      if (!crl || typeof crl.kid !== "string") return;
      var iss = crl.iss || issuer;
      var rids = new Map();
      listOf(crl.rids).forEach(function (item) {
        var text = String(item);
        var dot = text.indexOf(".");
        rids.set(dot < 0 ? text : text.slice(0, dot), dot < 0 ? null : +text.slice(dot + 1));
      });
      trust.shcRevoked.set(iss + " " + crl.kid, rids);
    });
  }

  /* A bundle payload (or any object of the same shape, as the tests build from conformance
   * data) made ready for verify(): keys indexed by kid, certificates parsed, hashes in a set.
   *
   * Payload fields read (format version 1, healthcode/trust/bundle.py; README "Trust
   * bundle"): "iss" (our issuer id), "keys" ({"keys": [our public JWKs]}), "issuers"
   * ([{"iss", "scheme", "keys": [JWK]}]: SMART Health Card and partner issuers; a null scheme
   * trusts the keys for any), "shc_revocations" ([{"iss", "kid", "rids"}]), "certificates"
   * ([{"kid", "country", "der"}]: EU DCC signers) and "revocations" ({"hash_type":
   * "SIGNATURE", "hashes": [base64]}). */
  function prepare(payload, options) {
    options = options || {};
    var trust = {
      issuer: options.issuer || payload.iss || payload.issuer || null,
      skew: options.skew !== undefined ? options.skew
        : (isInt(payload.clock_skew) ? payload.clock_skew : 60),
      own: new Map(),
      shc: new Map(), // issuer -> Map(kid -> jwk)
      shcByKid: new Map(), // kid -> [{issuer, jwk}]: a scan looks up its kid, not every issuer
      partnerKids: new Set(),
      partnerKeys: new Map(), // "issuer kid" -> jwk
      partnerIssuers: new Map(), // issuer -> scheme it is trusted for (null: any)
      partners: listOf(options.partners), // the mapping files' layouts, with the page
      shcRevoked: new Map(), // "issuer kid" -> Map(rid -> cut-off time or null)
      dsc: new Map(), // base64 kid -> [certificate]
      revoked: new Set(),
      keyCache: new KeyCache(),
      issuedAt: payload.iat
    };
    keysOf(payload.keys || payload.jwks).forEach(function (jwk) {
      if (jwk && typeof jwk.kid === "string") trust.own.set(jwk.kid, jwk);
    });
    listOf(payload.issuers).forEach(function (entry) {
      var issuer = entry && (entry.iss || entry.issuer);
      if (typeof issuer !== "string") return;
      var keys = keysOf(entry.keys || entry.jwks);
      var scheme = entry.scheme === undefined ? null : entry.scheme;
      if (scheme === "shc" || scheme === null) {
        var byKid = trust.shc.get(issuer) || new Map();
        keys.forEach(function (jwk) {
          if (!jwk || typeof jwk.kid !== "string") return;
          byKid.set(jwk.kid, jwk);
          var same = trust.shcByKid.get(jwk.kid) || [];
          same.push({issuer: issuer, jwk: jwk});
          trust.shcByKid.set(jwk.kid, same);
        });
        trust.shc.set(issuer, byKid);
        addShcRevocations(trust, issuer, entry.crls);
      }
      if (scheme !== "shc") {
        keys.forEach(function (jwk) {
          if (!jwk || typeof jwk.kid !== "string") return;
          trust.partnerKids.add(jwk.kid);
          trust.partnerKeys.set(issuer + " " + jwk.kid, jwk);
        });
        trust.partnerIssuers.set(issuer, scheme);
      }
    });
    addShcRevocations(trust, null, payload.shc_revocations);
    var certificates = listOf(payload.certificates);
    if (isObject(payload.certificates)) {
      certificates = listOf(payload.certificates["eu-dcc"]);
    }
    var pending = certificates.map(function (entry) {
      var der = base64Bytes(String(entry.der || entry.rawData || ""), false);
      var cert = der && readCertificate(der);
      if (!cert) return null;
      return (entry.kid ? Promise.resolve(entry.kid) : sha256(der).then(function (d) {
        return toBase64(d.subarray(0, 8)); // the DCC kid: first 8 bytes of SHA-256 of the DER
      })).then(function (kid) {
        var list = trust.dsc.get(kid) || [];
        list.push(cert);
        trust.dsc.set(kid, list);
      });
    });
    var revocations = payload.revocations;
    var hashes = Array.isArray(revocations) ? revocations
      : listOf(revocations && (revocations.hashes || revocations.signature));
    hashes.forEach(function (h) {
      if (typeof h === "string") trust.revoked.add(h);
    });
    return Promise.all(pending).then(function () {
      return trust;
    });
  }

  // -- X.509: the few DER fields a DCC signer check needs ------------------------------------

  function derItem(bytes, pos, end) {
    if (pos + 2 > end) throw new Error("truncated DER");
    var tag = bytes[pos];
    var len = bytes[pos + 1];
    var head = 2;
    if (len & 0x80) {
      var n = len & 0x7f;
      if (n < 1 || n > 4 || pos + 2 + n > end) throw new Error("bad DER length");
      len = 0;
      for (var i = 0; i < n; i++) len = len * 256 + bytes[pos + 2 + i];
      head += n;
    }
    var start = pos + head;
    if (start + len > end) throw new Error("DER item overruns");
    return {tag: tag, pos: pos, start: start, end: start + len};
  }

  function derChildren(bytes, item) {
    var out = [];
    var pos = item.start;
    while (pos < item.end) {
      var child = derItem(bytes, pos, item.end);
      out.push(child);
      pos = child.end;
    }
    return out;
  }

  function oidText(bytes, item) {
    var parts = [];
    var value = 0;
    for (var i = item.start; i < item.end; i++) {
      value = value * 128 + (bytes[i] & 0x7f);
      if (!(bytes[i] & 0x80)) {
        if (parts.length === 0) {
          var first = value < 80 ? Math.floor(value / 40) : 2;
          parts.push(first, value - first * 40);
        } else {
          parts.push(value);
        }
        value = 0;
      }
    }
    return parts.join(".");
  }

  function derTime(bytes, item) {
    var text = String.fromCharCode.apply(null, bytes.subarray(item.start, item.end));
    var m = item.tag === 0x17 ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?Z$/.exec(text)
      : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?(?:\.\d+)?Z$/.exec(text);
    if (!m) throw new Error("bad certificate time");
    var year = +m[1];
    if (item.tag === 0x17) year += year < 50 ? 2000 : 1900; // RFC 5280 4.1.2.5.1
    return Date.UTC(year, +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) / 1000;
  }

  /* Validity, SubjectPublicKeyInfo and extended key usage of a certificate, or null. */
  function readCertificate(der) {
    try {
      var cert = derItem(der, 0, der.length);
      var tbs = derChildren(der, derChildren(der, cert)[0]);
      var i = tbs[0].tag === 0xa0 ? 1 : 0; // [0] version
      var validity = derChildren(der, tbs[i + 3]);
      var spkiItem = tbs[i + 5];
      var spki = der.slice(spkiItem.pos, spkiItem.end);
      var algorithm = derChildren(der, derChildren(der, spkiItem)[0]);
      var keyOid = oidText(der, algorithm[0]);
      var curve = algorithm[1] && algorithm[1].tag === 0x06 ? oidText(der, algorithm[1]) : null;
      var usage = null;
      var uris = [];
      tbs.slice(i + 6).forEach(function (field) {
        if (field.tag !== 0xa3) return; // [3] extensions
        derChildren(der, derChildren(der, field)[0]).forEach(function (ext) {
          var parts = derChildren(der, ext);
          var extOid = oidText(der, parts[0]);
          var value = parts[parts.length - 1];
          var inner = derItem(der, value.start, value.end);
          if (extOid === "2.5.29.37") { // extended key usage
            usage = derChildren(der, inner).map(function (oid) {
              return oidText(der, oid);
            });
          } else if (extOid === "2.5.29.17") { // subject alternative names: [6] URIs
            derChildren(der, inner).forEach(function (name) {
              if (name.tag === 0x86) {
                uris.push(String.fromCharCode.apply(null, der.subarray(name.start, name.end)));
              }
            });
          }
        });
      });
      var outer = derChildren(der, cert);
      var tbsItem = outer[0];
      var sigAlg = oidText(der, derChildren(der, outer[1])[0]);
      var sigBits = der.subarray(outer[2].start + 1, outer[2].end); // BIT STRING, 0 unused
      var keyType = keyOid === "1.2.840.10045.2.1" && curve === "1.2.840.10045.3.1.7" ? "p256"
        : (keyOid === "1.2.840.113549.1.1.1" ? "rsa" : null);
      return {der: der, spki: spki, keyType: keyType, usage: usage, uris: uris,
              curve: CURVES[curve] || null, tbs: der.slice(tbsItem.pos, tbsItem.end),
              signatureAlgorithm: sigAlg, signature: sigBits.slice(),
              notBefore: derTime(der, validity[0]), notAfter: derTime(der, validity[1])};
    } catch (e) {
      return null;
    }
  }

  var CURVES = {"1.2.840.10045.3.1.7": "P-256", "1.3.132.0.34": "P-384",
                "1.3.132.0.35": "P-521"};
  var ECDSA_HASHES = {"1.2.840.10045.4.3.2": "SHA-256", "1.2.840.10045.4.3.3": "SHA-384",
                      "1.2.840.10045.4.3.4": "SHA-512"};
  var CURVE_BYTES = {"P-256": 32, "P-384": 48, "P-521": 66};

  /* An X.509 ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) as WebCrypto's raw r || s. */
  function rawEcdsaSignature(der, size) {
    var seq = derItem(der, 0, der.length);
    var out = new Uint8Array(size * 2);
    derChildren(der, seq).forEach(function (int, k) {
      var value = der.subarray(int.start, int.end);
      while (value.length > size && value[0] === 0) value = value.subarray(1);
      if (value.length > size) throw new Error("bad ECDSA signature");
      out.set(value, (k + 1) * size - value.length);
    });
    return out;
  }

  /* Whether `child` is signed by `parent`'s key (ECDSA certificates, as SHC issuers use). */
  function signedBy(child, parent) {
    var hash = ECDSA_HASHES[child.signatureAlgorithm];
    if (!hash || !parent.curve) return Promise.resolve(false);
    var signature;
    try {
      signature = rawEcdsaSignature(child.signature, CURVE_BYTES[parent.curve]);
    } catch (e) {
      return Promise.resolve(false);
    }
    return subtle.importKey("spki", parent.spki, {name: "ECDSA", namedCurve: parent.curve},
      false, ["verify"]).then(function (key) {
      return subtle.verify({name: "ECDSA", hash: hash}, key, signature, child.tbs);
    }).catch(function () {
      return false;
    });
  }

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) {
      if (a[i] !== b[i]) return false;
    }
    return true;
  }

  /* A trusted SHC key that carries x5c: the leaf is for this key and this issuer, and each
   * certificate is signed by the next (mapping/shc.py _check_chain; dates are reported there,
   * not enforced, so not checked here either). Resolves to null or a [reason, message]. */
  function checkX5c(jwk, key, iss) {
    var certs;
    try {
      certs = jwk.x5c.map(function (c) {
        var der = typeof c === "string" ? base64Bytes(c, false) : null;
        var cert = der && readCertificate(der);
        if (!cert) throw new Error("unreadable");
        return cert;
      });
    } catch (e) {
      return Promise.resolve(["untrusted_issuer", "the key's x5c chain is unreadable"]);
    }
    if (!certs.length || jwk.crv !== "P-256") {
      return Promise.resolve(["untrusted_issuer", "the key's x5c chain is empty or not P-256"]);
    }
    return subtle.exportKey("spki", key).catch(function () {
      return null;
    }).then(function (spki) {
      // the JWK was imported non-extractable: compare through a fresh import instead
      return spki || subtle.importKey("jwk", {kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y,
                                               ext: true},
        {name: "ECDSA", namedCurve: "P-256"}, true, ["verify"]).then(function (k) {
        return subtle.exportKey("spki", k);
      });
    }).then(function (spki) {
      if (!sameBytes(new Uint8Array(spki), certs[0].spki)) {
        return ["unknown_key", "the x5c leaf certificate is for another key"];
      }
      if (certs[0].uris.indexOf(iss) < 0) {
        return ["untrusted_issuer", "the x5c leaf certificate is not issued to " + iss];
      }
      return Promise.all(certs.slice(1).map(function (parent, k) {
        return signedBy(certs[k], parent);
      })).then(function (links) {
        return links.every(Boolean) ? null
          : ["untrusted_issuer", "a certificate of the x5c chain is not signed by the next"];
      });
    });
  }

  function certificateKey(trust, cert) {
    return trust.keyCache.get(cert.spki, function () {
      if (cert.keyType === "p256") {
        return subtle.importKey("spki", cert.spki, {name: "ECDSA", namedCurve: "P-256"}, false,
          ["verify"]).catch(function () {
          return null;
        });
      }
      if (cert.keyType === "rsa") {
        return subtle.importKey("spki", cert.spki, {name: "RSA-PSS", hash: "SHA-256"}, false,
          ["verify"]).catch(function () {
          return null;
        });
      }
      return Promise.resolve(null);
    });
  }

  // -- answers -------------------------------------------------------------------------------

  function failure(error, scheme) {
    return {valid: false, reason: error.reason, message: error.message, scheme: scheme,
            status: null, subject: null, expires_at: null, checked_online: false,
            checked_offline: true};
  }

  function unchecked(scheme, message) {
    return {unchecked: true, valid: null, reason: "offline_unsupported", scheme: scheme,
            message: message, checked_online: false, checked_offline: false};
  }

  // -- native codes (healthcode/tokens.py) ---------------------------------------------------

  function looksNative(text) {
    return text.split(".").length === 3 && text.slice(0, 2) === "ey";
  }

  function verifyNative(text, trust, at) {
    var parts = text.split(".");
    var header;
    try {
      header = JSON.parse(strictUtf8.decode(b64url(parts[0])));
    } catch (e) {
      fail("malformed", "not a signed code");
    }
    if (!isObject(header)) fail("malformed", "not a signed code");
    if (header.alg !== "ES256") fail("bad_signature", "the algorithm is not accepted");
    if (typeof header.kid !== "string" || !header.kid) {
      fail("unknown_key", "the code names no key");
    }
    var jwk = trust.own.get(header.kid);
    if (!jwk) {
      if (trust.partnerKids.has(header.kid) && !trust.partners.length) {
        // a partner's key, but this page was given no partner layouts to read its codes with
        return unchecked("partner", "partner codes are checked by the service");
      }
      fail("unknown_key", "the code is signed with a key we do not know");
    }
    var payload = b64url(parts[1], false, "the claims");
    var signature = b64url(parts[2], false, "the signature");
    var signed = utf8.encode(parts[0] + "." + parts[1]);
    return trust.keyCache.get("own:" + header.kid, function () {
      return importJwk(jwk);
    }).then(function (key) {
      if (!key) fail("unknown_key", "the key cannot be used");
      return verifyEs256(key, signature, signed);
    }).then(function (ok) {
      if (!ok) fail("bad_signature", "the signature does not match");
      var claims = jsonOf(payload, "the claims");
      checkNativeClaims(claims, trust, at);
      var answer = {
        valid: true, reason: null, scheme: "native", status: claims.st,
        status_version: claims.sv, subject: {masked_name: claims.nm || null},
        issued_at: isoTime(claims.iat), expires_at: isoTime(claims.exp),
        checked_online: false, checked_offline: true,
        // a dynamic code's colour is the one it was issued with; only the service knows now
        status_as_of: claims.sv === 0 ? null : isoTime(claims.iat)
      };
      if (claims.sv !== 0) return answer; // one-shot codes (status version 0) may be revoked
      return signatureHash(signature, true).then(function (hash) {
        if (trust.revoked.has(hash)) {
          return {valid: false, reason: "revoked", message: "the issuing authority revoked " +
                  "this code", scheme: "native", status: null, subject: null,
                  expires_at: null, checked_online: false, checked_offline: true};
        }
        return answer;
      });
    });
  }

  function checkNativeClaims(claims, trust, at) {
    if (!isObject(claims)) fail("malformed", "the claims are not an object");
    ["iss", "sub", "st", "sv", "iat", "exp"].forEach(function (name) {
      if (!(name in claims)) fail("malformed", "claim " + name + " is missing");
    });
    var nm = claims.nm;
    if (!(typeof claims.sub === "string" && STATUSES[claims.st] === true && isInt(claims.sv) &&
          isInt(claims.iat) && isInt(claims.exp) &&
          (nm === undefined || nm === null || typeof nm === "string"))) {
      fail("malformed", "a claim has the wrong type");
    }
    if (claims.iss !== trust.issuer) {
      fail("untrusted_issuer", "the code was issued by someone else");
    }
    var now = at / 1000;
    if (claims.iat > now + trust.skew) fail("not_yet_valid", "the code is not valid yet");
    if (claims.exp <= now - trust.skew) fail("expired", "the code has expired");
  }

  // -- SMART Health Cards (mapping/shc.py) ---------------------------------------------------

  function shcDigits(digits) {
    if (digits.length % 2) fail("malformed", "the numeric part must be an even number of digits");
    var out = "";
    for (var i = 0; i < digits.length; i += 2) {
      var a = digits.charCodeAt(i) - 48;
      var b = digits.charCodeAt(i + 1) - 48;
      if (a < 0 || a > 9 || b < 0 || b > 9 || a * 10 + b > 77) {
        fail("malformed", "the numeric part holds something other than digit pairs from 00 " +
             "to 77");
      }
      out += String.fromCharCode(a * 10 + b + 45);
    }
    return out;
  }

  function shcJws(text) {
    var codes = text.split(/\s+/).filter(Boolean);
    if (!codes.length || !codes.every(function (c) {
      return c.indexOf("shc:/") === 0;
    })) {
      fail("malformed", "an SMART Health Card starts with shc:/");
    }
    var heads = codes.map(function (c) {
      return /^([0-9]{1,2})\/([0-9]{1,2})\//.exec(c.slice(5));
    });
    if (codes.length === 1 && !heads[0]) return shcDigits(codes[0].slice(5));
    if (!heads.every(Boolean)) fail("malformed", "several codes that are not all shc:/i/n/ chunks");
    var total = +heads[0][2];
    var chunks = codes.map(function (c, k) {
      if (+heads[k][2] !== total) fail("malformed", "the chunks disagree on how many there are");
      return {i: +heads[k][1], digits: c.slice(5 + heads[k][0].length)};
    }).sort(function (x, y) {
      return x.i - y.i;
    });
    chunks.forEach(function (chunk, k) {
      if (chunk.i !== k + 1 || chunks.length !== total) {
        fail("malformed", "expected chunks 1.." + total + " once each");
      }
    });
    return chunks.map(function (chunk) {
      return shcDigits(chunk.digits);
    }).join("");
  }

  function shcClaims(compressed) {
    return inflate(compressed, "deflate-raw", SHC_MAX_INFLATED).catch(function (error) {
      if (error.reason === "malformed") {
        throw new CodeError("malformed", "the payload is not raw DEFLATE");
      }
      throw error;
    }).then(function (raw) {
      var claims = jsonOf(raw, "the JWS payload");
      if (!isObject(claims)) fail("malformed", "the JWS payload is not a JSON object");
      if (typeof claims.iss !== "string") fail("malformed", "the payload has no iss");
      return claims;
    });
  }

  function shcCandidate(trust, kid) {
    var found = (trust.shcByKid.get(kid) || []).filter(function (c) {
      return c.jwk.kty === "EC" && c.jwk.crv === "P-256";
    });
    // SHC defines the kid as the key's thumbprint: a key filed under another kid is not it
    return Promise.all(found.map(function (c) {
      return trust.keyCache.get("thumb:" + c.jwk.x + c.jwk.y, function () {
        return thumbprint(c.jwk);
      }).then(function (t) {
        return t === kid ? c : null;
      });
    })).then(function (list) {
      return list.filter(Boolean)[0] || null;
    });
  }

  function numericDate(claims, name, required) {
    var value = claims[name];
    if ((value === undefined || value === null) && !required) return null;
    if (typeof value !== "number" || !(value >= 0 && value <= LAST_INSTANT)) {
      fail("malformed", name + " must be a NumericDate");
    }
    return value;
  }

  function verifySHC(text, trust, at) {
    var jws = shcJws(text);
    var parts = jws.split(".");
    if (parts.length !== 3) fail("malformed", "a compact JWS has three parts");
    var header = jsonOf(b64url(parts[0]), "the JWS header");
    if (!isObject(header)) fail("malformed", "the JWS header is not an object");
    if (header.alg !== "ES256") fail("bad_signature", "the algorithm is not ES256");
    if (header.zip !== "DEF") fail("malformed", "the JWS header must say zip DEF");
    if ("crit" in header || "b64" in header) {
      fail("malformed", "critical JWS extensions are not part of SHC");
    }
    if (typeof header.kid !== "string" || !header.kid) {
      fail("malformed", "the JWS header has no kid");
    }
    var payload = b64url(parts[1]);
    var signature = b64url(parts[2], true);
    if (signature === null) fail("malformed", "the JWS signature is not canonical base64url");
    var kid = header.kid;
    return shcCandidate(trust, kid).then(function (candidate) {
      if (!candidate) {
        return shcClaims(payload).then(function (claims) {
          if (!trust.shc.has(claims.iss)) {
            fail("untrusted_issuer", "issuer " + claims.iss + " is not trusted for SHC");
          }
          fail("unknown_key", "issuer " + claims.iss + " has no trusted key " + kid);
        });
      }
      return trust.keyCache.get("shc:" + kid, function () {
        return importJwk(candidate.jwk);
      }).then(function (key) {
        if (signature.length !== 64) fail("bad_signature", "an ES256 signature is 64 bytes");
        return verifyEs256(key, signature, utf8.encode(parts[0] + "." + parts[1]));
      }).then(function (ok) {
        if (!ok) fail("bad_signature", "the signature does not verify");
        return shcClaims(payload);
      }).then(function (claims) {
        var iss = claims.iss;
        if (!trust.shc.has(iss)) {
          fail("untrusted_issuer", "issuer " + iss + " is not trusted for SHC");
        }
        if (!trust.shc.get(iss).has(kid)) {
          fail("unknown_key", "issuer " + iss + " has no trusted key " + kid);
        }
        var nbf = numericDate(claims, "nbf", true);
        var exp = numericDate(claims, "exp", false);
        var trusted = trust.shc.get(iss).get(kid);
        if (!trusted.x5c) return {claims: claims, iss: iss, nbf: nbf, exp: exp};
        if (!Array.isArray(trusted.x5c)) {
          fail("untrusted_issuer", "the trusted key's x5c is not a certificate list");
        }
        return trust.keyCache.get("x5c:" + iss + " " + kid, function () {
          return trust.keyCache.get("shc:" + kid, function () {
            return importJwk(trusted);
          }).then(function (key) {
            return checkX5c(trusted, key, iss);
          });
        }).then(function (problem) {
          if (problem) fail(problem[0], problem[1]);
          return {claims: claims, iss: iss, nbf: nbf, exp: exp};
        });
      }).then(function (checked) {
        var claims = checked.claims;
        var iss = checked.iss;
        var nbf = checked.nbf;
        var exp = checked.exp;
        if (nbf * 1000 > at + SHC_NBF_SKEW_MS) fail("not_yet_valid", "the card is not valid yet");
        if (exp !== null && at >= exp * 1000) fail("expired", "the card has expired");
        var vc = claims.vc;
        if (!isObject(vc)) fail("malformed", "the payload has no vc claim");
        if (!Array.isArray(vc.type) || !vc.type.every(function (t) {
          return typeof t === "string";
        }) || vc.type.indexOf(HEALTH_CARD) < 0) {
          fail("malformed", "vc.type must list " + HEALTH_CARD);
        }
        var subject = vc.credentialSubject;
        var bundle = isObject(subject) ? subject.fhirBundle : null;
        if (!isObject(bundle) || bundle.resourceType !== "Bundle" || !Array.isArray(bundle.entry)) {
          fail("malformed", "vc.credentialSubject.fhirBundle is not a FHIR Bundle");
        }
        if (vc.rid !== undefined && vc.rid !== null && typeof vc.rid !== "string") {
          fail("malformed", "vc.rid must be a string");
        }
        var rids = trust.shcRevoked.get(iss + " " + kid);
        if (rids && typeof vc.rid === "string" && rids.has(vc.rid)) {
          var cutoff = rids.get(vc.rid); // revoked if issued before it (SHC spec, revocation)
          if (cutoff === null || isNaN(cutoff) || nbf < cutoff) {
            fail("revoked", "the issuer revoked card " + vc.rid);
          }
        }
        return {
          valid: true, reason: null, scheme: "shc", status: null, issuer: iss,
          subject: {masked_name: maskName(shcPatientName(bundle))},
          issued_at: isoTime(nbf), expires_at: exp === null ? null : isoTime(exp),
          checked_online: false, checked_offline: true
        };
      });
    });
  }

  function shcPatientName(bundle) {
    var patients = bundle.entry.filter(function (e) {
      return isObject(e) && isObject(e.resource) && e.resource.resourceType === "Patient";
    });
    if (patients.length > 1) fail("malformed", "the bundle names more than one Patient");
    if (!patients.length) return null;
    var names = patients[0].resource.name || [{}];
    if (!Array.isArray(names) || !isObject(names[0])) {
      fail("malformed", "Patient.name must be a list of HumanName");
    }
    var given = names[0].given || [];
    if (!Array.isArray(given) || !given.every(function (g) {
      return typeof g === "string";
    })) {
      fail("malformed", "Patient.name.given must be a list of strings");
    }
    return joinedName(given.join(" "), names[0].family, names[0].text);
  }

  // -- EU DCC (mapping/eu_dcc/) ------------------------------------------------------------

  var B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

  /* RFC 9285, strictly: a dangling single character and a triple above 65535 are errors
   * (section 4.2); no npm base45 package refuses them, and each returns a Node Buffer. */
  function base45(text) {
    if (text.length % 3 === 1) fail("malformed", "not valid base45", "base45");
    var out = new Uint8Array(Math.floor(text.length / 3) * 2 + (text.length % 3 ? 1 : 0));
    var o = 0;
    for (var i = 0; i < text.length; i += 3) {
      var c = B45.indexOf(text[i]);
      var d = B45.indexOf(text[i + 1]);
      var e = i + 2 < text.length ? B45.indexOf(text[i + 2]) : 0;
      if (c < 0 || d < 0 || e < 0) fail("malformed", "not valid base45", "base45");
      var n = c + d * 45 + e * 2025;
      if (i + 2 < text.length) {
        if (n > 65535) fail("malformed", "not valid base45", "base45");
        out[o++] = n >> 8;
        out[o++] = n & 255;
      } else {
        if (n > 255) fail("malformed", "not valid base45", "base45");
        out[o++] = n;
      }
    }
    return out;
  }

  var cborDecoder = null;

  /* One CBOR item; bytes after it are ignored, as cbor2 does on the server. */
  function cbor(bytes, step, what) {
    if (!root.CBOR) throw new CodeError("offline_unsupported", "the CBOR library is missing");
    if (!cborDecoder) {
      cborDecoder = new root.CBOR.Decoder({mapsAsObjects: false, useRecords: false,
                                          int64AsNumber: true});
    }
    var first;
    var got = false;
    try {
      cborDecoder.decodeMultiple(bytes, function (item) {
        first = item;
        got = true;
        return false;
      });
    } catch (e) {
      if (!got) fail("malformed", "the " + what + " is not valid CBOR", step);
    }
    if (!got) fail("malformed", "the " + what + " is not valid CBOR", step);
    return first;
  }

  function isMap(value) {
    return value instanceof Map;
  }

  function isBytes(value) {
    return value instanceof Uint8Array;
  }

  function parseCose(data) {
    var message = cbor(data, "cose", "COSE message");
    var tags = [];
    while (message && root.CBOR && message instanceof root.CBOR.Tag && tags.length < 2) {
      tags.push(message.tag);
      message = message.value;
    }
    var chain = tags.join(",");
    if (!(chain === "" || chain === "18" || chain === "61,18")) {
      fail("malformed", "not a COSE_Sign1 message (unexpected CBOR tag)", "cose");
    }
    if (!Array.isArray(message) || message.length !== 4) {
      fail("malformed", "not a COSE_Sign1 message", "cose");
    }
    if (!(isBytes(message[0]) && isBytes(message[2]) && isBytes(message[3]))) {
      fail("malformed", "not a COSE_Sign1 message (byte strings expected)", "cose");
    }
    var protectedMap = message[0].length ? cbor(message[0], "cose", "protected header") : new Map();
    if (!isMap(protectedMap)) fail("malformed", "the protected header is not a map", "cose");
    if (!isMap(message[1])) fail("malformed", "the unprotected header is not a map", "cose");
    function header(label) {
      return protectedMap.has(label) ? protectedMap.get(label) : message[1].get(label);
    }
    var alg = header(1);
    var kid = header(4); // the protected kid wins: the signature covers it
    if (!isInt(alg)) fail("malformed", "the COSE message names no algorithm", "cose");
    if (!isBytes(kid) || !kid.length) fail("malformed", "the COSE message names no key id", "cose");
    return {protectedBytes: message[0], payload: message[2], signature: message[3], alg: alg,
            kid: kid};
  }

  /* Sig_structure (RFC 9052 4.4): ["Signature1", protected, external_aad = h'', payload]. */
  function sigStructure(cose) {
    function head(major, length) {
      if (length < 24) return [major << 5 | length];
      if (length < 256) return [major << 5 | 24, length];
      if (length < 65536) return [major << 5 | 25, length >> 8, length & 255];
      return [major << 5 | 26, (length >>> 24) & 255, (length >> 16) & 255, (length >> 8) & 255,
              length & 255];
    }
    var label = utf8.encode("Signature1");
    var parts = [head(4, 4), head(3, label.length), label, head(2, cose.protectedBytes.length),
                 cose.protectedBytes, head(2, 0), head(2, cose.payload.length), cose.payload];
    var size = parts.reduce(function (n, p) {
      return n + p.length;
    }, 0);
    var out = new Uint8Array(size);
    var at = 0;
    parts.forEach(function (p) {
      out.set(p, at);
      at += p.length;
    });
    return out;
  }

  function verifyCose(trust, cert, cose, signed) {
    var wants = cert.keyType === "p256" ? ALG_ES256 : (cert.keyType === "rsa" ? ALG_PS256 : null);
    if (wants === null || wants !== cose.alg) return Promise.resolve(false);
    return certificateKey(trust, cert).then(function (key) {
      if (!key) return false;
      if (cose.alg === ALG_ES256) return verifyEs256(key, cose.signature, signed);
      return subtle.verify({name: "RSA-PSS", saltLength: 32}, key, cose.signature, signed)
        .catch(function () {
          return false;
        });
    });
  }

  function findSigner(trust, cose) {
    var candidates = trust.dsc.get(toBase64(cose.kid)) || [];
    if (!candidates.length) {
      fail("unknown_key", "no trusted signer certificate has this kid", "key");
    }
    var signed = sigStructure(cose);
    return Promise.all(candidates.map(function (cert) {
      return verifyCose(trust, cert, cose, signed);
    })).then(function (results) {
      var index = results.indexOf(true);
      if (index < 0) {
        if (cose.alg !== ALG_ES256 && cose.alg !== ALG_PS256) {
          fail("bad_signature", "unsupported COSE algorithm " + cose.alg, "signature");
        }
        fail("bad_signature", "the signature does not verify", "signature");
      }
      return candidates[index];
    });
  }

  function dccInstant(claims, key, name) {
    var value = claims.get(key);
    if (typeof value !== "number" || value !== value) {
      fail("malformed", "the CWT has no numeric " + name + " claim", "claims");
    }
    if (!(value >= 0 && value <= LAST_INSTANT)) {
      fail("malformed", "the " + name + " claim is out of range", "claims");
    }
    return value;
  }

  function readDccClaims(payload) {
    var claims = cbor(payload, "claims", "CWT payload");
    if (!isMap(claims)) fail("malformed", "the CWT payload is not a map", "claims");
    var hcert = claims.get(-260);
    var dcc = isMap(hcert) ? hcert.get(1) : null;
    if (!isMap(dcc)) fail("malformed", "the CWT holds no health certificate (-260/1)", "claims");
    var iss = claims.has(1) ? claims.get(1) : null;
    if (iss !== null && iss !== undefined && typeof iss !== "string") {
      fail("malformed", "the iss claim is not text", "claims");
    }
    var iat = dccInstant(claims, 6, "iat");
    var exp = dccInstant(claims, 4, "exp");
    if (exp < iat) fail("malformed", "the code expires before it was issued", "claims");
    var present = ["v", "t", "r"].filter(function (k) {
      return dcc.has(k) && dcc.get(k) !== null && dcc.get(k) !== undefined;
    });
    if (present.length !== 1) {
      fail("malformed", present.length ? "a DCC must hold exactly one of v, t and r"
        : "the DCC holds no vaccination, test or recovery", "claims");
    }
    var entries = dcc.get(present[0]);
    if (!Array.isArray(entries) || !entries.length) {
      fail("malformed", "the DCC's " + present[0] + " group is not a list", "claims");
    }
    return {issuer: iss || null, iat: iat, exp: exp, dcc: dcc, type: TYPE_KEYS[present[0]]};
  }

  function verifyDCC(text, trust, at) {
    var body = text.trim();
    if (body.indexOf("HC1:") !== 0) {
      fail("malformed", "the code does not start with HC1:", "prefix");
    }
    var compressed = base45(body.slice(4));
    if (compressed.length < 2 || (compressed[0] & 0x0f) !== 8 ||
        ((compressed[0] << 8) | compressed[1]) % 31) {
      fail("malformed", "the code is not zlib-compressed", "zlib");
    }
    return inflate(compressed, "deflate", DCC_MAX_INFLATED).then(function (raw) {
      var cose = parseCose(raw);
      return findSigner(trust, cose).then(function (cert) {
        var claims = readDccClaims(cose.payload);
        var now = at / 1000;
        // mapping/eu_dcc/claims.py check_validity: the checking time lies inside both the code's
        // window and its signer's; an iat before the DSC or an exp past it is the issuer's
        // slip (a warning there), and the code is valid until the DSC's end
        if (claims.iat !== null && claims.iat !== undefined && now < claims.iat) {
          fail("not_yet_valid", "the code was issued after the checking time", "validity");
        }
        if (now > claims.exp) fail("expired", "the code has expired", "validity");
        if (now < cert.notBefore) {
          fail("not_yet_valid", "the signer certificate is not valid yet at the checking time",
               "validity");
        }
        if (now > cert.notAfter) fail("expired", "the signer certificate has expired", "validity");
        if (claims.iat !== null && claims.iat !== undefined && claims.iat > cert.notAfter) {
          fail("expired", "the code was issued after its signer certificate expired", "validity");
        }
        // mapping/eu_dcc/claims.py check_key_usage: only the DCC OIDs restrict what a DSC signs (the
        // hcert specification's DSC limitation, as the Corona-Warn-App applies it)
        var dccUsage = (cert.usage || []).filter(function (oid) { return DCC_OIDS[oid]; });
        if (dccUsage.length && !KEY_USAGE[claims.type].some(function (oid) {
          return dccUsage.indexOf(oid) >= 0;
        })) {
          fail("wrong_key_usage",
               "the signer certificate may not sign " + claims.type + " certificates",
               "key_usage");
        }
        var name = claims.dcc.get("nam");
        if (!isMap(name)) fail("malformed", "the DCC has no name", "mapping");
        var answer = {
          valid: true, reason: null, scheme: "eu-dcc", status: null, issuer: claims.issuer,
          certificate_type: claims.type,
          subject: {masked_name: maskName(joinedName(name.get("gn"), name.get("fn")) ||
                                        joinedName(name.get("gnt"), name.get("fnt")))},
          issued_at: isoTime(claims.iat),
          expires_at: isoTime(Math.min(claims.exp, cert.notAfter)),
          checked_online: false, checked_offline: true
        };
        return signatureHash(cose.signature, cose.alg === ALG_ES256).then(function (hash) {
          if (trust.revoked.has(hash)) {
            return failure(new CodeError("revoked", "the certificate is on the revocation list"),
              "eu-dcc");
          }
          return answer;
        });
      });
    });
  }

  // -- partner JWTs (mapping/partner_jwt.py) --------------------------------------------------

  var JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
  var KEY_TYPES = {ES256: "EC", ES384: "EC", PS256: "RSA"}; // what WebCrypto checks here
  var EC_ALGS = {ES256: {crv: "P-256", hash: "SHA-256", size: 64},
                 ES384: {crv: "P-384", hash: "SHA-384", size: 96}};

  /* The partner whose file claims this text: by prefix, else by the issuer a bare JWT names
   * (mapping/partner_jwt.py detect). */
  function partnerOf(trust, text) {
    var byPrefix = trust.partners.filter(function (p) {
      return p.prefix && text.indexOf(p.prefix) === 0;
    });
    if (byPrefix.length) return byPrefix[0];
    if (!JWS_SHAPE.test(text)) return null;
    var claims;
    try {
      claims = JSON.parse(strictUtf8.decode(base64Bytes(text.split(".")[1], false)));
    } catch (e) {
      return null;
    }
    if (!isObject(claims)) return null;
    return trust.partners.filter(function (p) {
      return !p.prefix && p.issuers.indexOf(claims.iss) >= 0;
    })[0] || null;
  }

  function claimAt(claims, path) {
    var node = claims;
    var parts = path.split(".");
    for (var i = 0; i < parts.length; i++) {
      if (!isObject(node)) fail("malformed", "claim " + path + " is not inside an object");
      node = node[parts[i]];
      if (node === null || node === undefined) return null;
    }
    return node;
  }

  function partnerTime(partner, claims, fact, required) {
    var path = partner.claims[fact];
    var value = path ? claimAt(claims, path) : null;
    if (value === null) {
      if (required) fail("malformed", "claim " + path + " is missing");
      return null;
    }
    if (partner.formats[fact] === "iso") {
      // an offset is required: a local time without one would be read hours off
      if (typeof value !== "string" ||
          !/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(value)) {
        fail("malformed", "claim " + path + " is not an ISO 8601 time with an offset");
      }
      var ms = Date.parse(value);
      if (isNaN(ms)) fail("malformed", "claim " + path + " is not an ISO 8601 time");
      return ms / 1000;
    }
    if (typeof value !== "number") fail("malformed", "claim " + path + " is not a time in seconds");
    return value;
  }

  /* A document or a test is all of its claims or none (mapping/partner_jwt.py _all_or_none). */
  function allOrNone(partner, claims, what, facts) {
    var values = facts.map(function (fact) {
      var path = partner.claims[fact];
      return path ? claimAt(claims, path) : null;
    });
    var present = values.filter(function (v) {
      return v !== null;
    }).length;
    if (!present) return null;
    if (present < values.length) fail("malformed", "the " + what + " claims are incomplete");
    return values;
  }

  function importPartnerKey(jwk, alg) {
    var ec = EC_ALGS[alg];
    if (ec) {
      if (jwk.crv !== ec.crv) return Promise.resolve(null);
      return subtle.importKey("jwk", {kty: "EC", crv: ec.crv, x: jwk.x, y: jwk.y, ext: true},
        {name: "ECDSA", namedCurve: ec.crv}, false, ["verify"]).catch(function () {
        return null;
      });
    }
    return subtle.importKey("jwk", {kty: "RSA", n: jwk.n, e: jwk.e, ext: true},
      {name: "RSA-PSS", hash: "SHA-256"}, false, ["verify"]).catch(function () {
      return null;
    });
  }

  function verifyPartner(partner, text, trust, at) {
    var token = text;
    if (partner.prefix) {
      if (text.indexOf(partner.prefix) !== 0) {
        fail("malformed", "a " + partner.name + " code starts with " + partner.prefix);
      }
      token = text.slice(partner.prefix.length);
    }
    if (!JWS_SHAPE.test(token)) fail("malformed", "not a signed code");
    var parts = token.split(".");
    var header = jsonOf(b64url(parts[0]), "the header");
    var unverified = jsonOf(b64url(parts[1]), "the claims");
    if (!isObject(header) || !isObject(unverified)) fail("malformed", "not a JSON object");
    var alg = header.alg;
    if (partner.algorithms.indexOf(alg) < 0) {
      fail("bad_signature", "algorithm " + alg + " is not accepted from " + partner.name);
    }
    if (typeof header.kid !== "string" || !header.kid) fail("unknown_key", "the code names no key");
    var iss = unverified.iss;
    var trustedFor = trust.partnerIssuers.has(iss) ? trust.partnerIssuers.get(iss) : undefined;
    if (!(typeof iss === "string" && partner.issuers.indexOf(iss) >= 0 &&
          (trustedFor === null || trustedFor === partner.scheme))) {
      fail("untrusted_issuer", "the code's issuer is not trusted for " + partner.name);
    }
    var jwk = trust.partnerKeys.get(iss + " " + header.kid);
    if (!jwk) fail("unknown_key", "the code is signed with a key we do not know");
    if (jwk.use !== undefined && jwk.use !== null && jwk.use !== "sig") {
      fail("wrong_key_usage", "the key is not for signatures");
    }
    if (jwk.alg && jwk.alg !== alg) fail("bad_signature", "the key is for " + jwk.alg);
    if (!KEY_TYPES[alg]) {
      throw new CodeError("offline_unsupported", alg + " is checked by the service");
    }
    if (jwk.kty !== KEY_TYPES[alg]) fail("bad_signature", "the key cannot check " + alg);
    var signature = b64url(parts[2]);
    var signed = utf8.encode(parts[0] + "." + parts[1]);
    return trust.keyCache.get("partner:" + alg + ":" + iss + " " + header.kid, function () {
      return importPartnerKey(jwk, alg);
    }).then(function (key) {
      if (!key) fail("bad_signature", "the key cannot check " + alg);
      var ec = EC_ALGS[alg];
      if (ec) {
        if (signature.length !== ec.size) return false;
        return subtle.verify({name: "ECDSA", hash: ec.hash}, key, signature, signed)
          .catch(function () {
            return false;
          });
      }
      return subtle.verify({name: "RSA-PSS", saltLength: 32}, key, signature, signed)
        .catch(function () {
          return false;
        });
    }).then(function (ok) {
      if (!ok) fail("bad_signature", "the signature does not match");
      var claims = unverified; // now verified: the same bytes
      var skew = (partner.skew || 60) * 1000;
      var issued = partnerTime(partner, claims, "issued_at", true);
      var until = partnerTime(partner, claims, "valid_until", true);
      var notBefore = partnerTime(partner, claims, "not_before", false);
      [notBefore, issued].forEach(function (start) {
        if (start !== null && start * 1000 > at + skew) {
          fail("not_yet_valid", "the code is not valid yet");
        }
      });
      if (until * 1000 <= at - skew) fail("expired", "the code has expired");
      var subject = claimAt(claims, partner.claims.subject);
      if (subject === null) fail("malformed", "claim " + partner.claims.subject + " is missing");
      if (typeof subject !== "string" && !isInt(subject)) {
        fail("malformed", "the subject is not an id");
      }
      var name = claimAt(claims, partner.claims.name);
      if (typeof name !== "string") {
        fail("malformed", "claim " + partner.claims.name + " is not text");
      }
      var status = claimAt(claims, partner.claims.status);
      if (status === null) fail("malformed", "claim " + partner.claims.status + " is missing");
      if (typeof status !== "string" && typeof status !== "number") {
        fail("malformed", "the status is neither text nor a number");
      }
      var document = allOrNone(partner, claims, "document",
                               ["document_type", "document_number", "document_region"]);
      var test = allOrNone(partner, claims, "test", ["test_type", "test_result",
                                                     "test_sampled_at"]);
      if (test) partnerTime(partner, claims, "test_sampled_at", true);
      if (document && !Object.prototype.hasOwnProperty.call(partner.documents || {},
                                                            String(document[0]))) {
        fail("policy_refused", "document type " + document[0] + " is not recognised");
      }
      if (test && ((partner.test_types || []).indexOf(test[0]) < 0 ||
                   (partner.test_results || []).indexOf(test[1]) < 0)) {
        fail("policy_refused", "the test is not recognised");
      }
      var colour = partner.status[String(status)];
      if (!colour || colour === "refuse") {
        fail("policy_refused", "status " + status + " is not recognised under this agreement");
      }
      return {
        valid: true, reason: null, scheme: partner.scheme, status: colour, issuer: iss,
        subject: {masked_name: maskName(clean(name))},
        issued_at: isoTime(issued), expires_at: isoTime(until),
        checked_online: false, checked_offline: true, status_as_of: isoTime(issued)
      };
    });
  }

  // -- any code ------------------------------------------------------------------------------

  function looksIcao(text) {
    if (text[0] !== "{") return false;
    try {
      var doc = JSON.parse(text);
      return isObject(doc) && "data" in doc && "sig" in doc;
    } catch (e) {
      return false;
    }
  }

  /* The scheme a text is in, as the server's detect() would say, or null. */
  function schemeOf(text) {
    if (looksNative(text)) return "native";
    if (text.indexOf("shc:/") === 0) return "shc";
    if (text.indexOf("HC1:") === 0) return "eu-dcc";
    if (looksIcao(text)) return "icao-vds";
    return null;
  }

  var VERIFIERS = {"native": verifyNative, "shc": verifySHC, "eu-dcc": verifyDCC};

  /* Any code: the scheme is detected, as the service does. `as` forces one scheme's verifier,
   * as calling one of the server's adapters directly does (the agreement tests use it). */
  function verify(text, trust, atMs, as) {
    var at = atMs === undefined ? Date.now() : atMs;
    var scheme = as || null;
    return Promise.resolve().then(function () {
      if (typeof text !== "string") fail("malformed", "the code is not text");
      if (text.length > MAX_CODE_LENGTH) fail("too_large", "the code is too long");
      text = text.trim();
      var partner = as ? trust.partners.filter(function (p) {
        return p.scheme === as;
      })[0] : partnerOf(trust, text);
      if (partner && (as || partner.prefix)) {
        scheme = partner.scheme;
        return verifyPartner(partner, text, trust, at);
      }
      scheme = as || schemeOf(text);
      if (scheme === "native" && partner) {
        // a JWT our keys do not check may be a partner's (healthcode/verification.py)
        return Promise.resolve().then(function () {
          return verifyNative(text, trust, at);
        }).catch(function (error) {
          if (!(error instanceof CodeError) ||
              (error.reason !== "untrusted_issuer" && error.reason !== "unknown_key")) {
            throw error;
          }
          scheme = partner.scheme;
          return verifyPartner(partner, text, trust, at);
        }).then(function (answer) {
          if (answer.reason === "untrusted_issuer" || answer.reason === "unknown_key" ||
              answer.unchecked) {
            scheme = partner.scheme;
            return verifyPartner(partner, text, trust, at);
          }
          return answer;
        });
      }
      if (VERIFIERS[scheme]) return VERIFIERS[scheme](text, trust, at);
      if (scheme === "icao-vds") {
        return unchecked("icao-vds", "ICAO visible digital seals are checked by the service");
      }
      // a partner's code (its own prefix, its own layout), or not a health code at all: only
      // the service, which holds the partner mapping files, can tell
      return unchecked(null, "this kind of code is checked by the service");
    }).catch(function (error) {
      if (error instanceof CodeError) {
        if (error.reason === "offline_unsupported") return unchecked(scheme, error.message);
        return failure(error, scheme);
      }
      // scanned input is hostile: anything else is malformed, as on the server
      return failure(new CodeError("malformed", "the code could not be decoded"), scheme);
    });
  }

  root.HealthcodeOffline = {
    openBundle: openBundle, prepare: prepare, verify: verify, schemeOf: schemeOf,
    maskName: maskName, signatureHash: signatureHash, readCertificate: readCertificate
  };
})(window);
