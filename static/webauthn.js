// Lanyard's WebAuthn pages: one script for the three ceremonies (register a key, the
// second factor of a waiting sign-in, passwordless sign-in). The server sends the
// options as JSON with binary fields in base64url; this converts them for the browser's
// API and the answer back. No framework; served from Lanyard's own origin (CSP 'self').
(function () {
  "use strict";
  var box = document.getElementById("webauthn");
  if (!box) { return; }
  var button = document.getElementById("webauthn-start");
  var status = document.getElementById("webauthn-status");

  function say(text) { if (status) { status.textContent = text; } }

  function fromB64url(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.message || ("refused (" + r.status + ")")); }
        return j;
      });
    });
  }

  function creationOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    pk.user.id = fromB64url(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = o.publicKey;
    pk.challenge = fromB64url(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64url(c.id); });
    return { publicKey: pk };
  }

  function registration(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        clientDataJSON: toB64url(cred.response.clientDataJSON),
        attestationObject: toB64url(cred.response.attestationObject),
        transports: cred.response.getTransports ? cred.response.getTransports() : undefined
      }
    };
  }

  function assertion(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: {
        clientDataJSON: toB64url(r.clientDataJSON),
        authenticatorData: toB64url(r.authenticatorData),
        signature: toB64url(r.signature),
        userHandle: r.userHandle ? toB64url(r.userHandle) : null
      }
    };
  }

  function run() {
    var mode = box.getAttribute("data-mode");
    var begin = box.getAttribute("data-begin");
    var finish = box.getAttribute("data-finish");
    if (!window.PublicKeyCredential) { say("This browser cannot use passkeys or security keys."); return; }
    button.disabled = true;
    say("Waiting for your passkey or security key…");
    post(begin).then(function (o) {
      var ceremony = o.ceremony;
      if (mode === "register") {
        return navigator.credentials.create(creationOptions(o)).then(function (cred) {
          var name = (document.getElementById("key-name") || {}).value || "Passkey";
          return post(finish, { ceremony: ceremony, name: name, credential: registration(cred) });
        }).then(function () {
          say("Added.");
          window.location.assign(box.getAttribute("data-done"));
        });
      }
      return navigator.credentials.get(requestOptions(o)).then(function (cred) {
        return post(finish, {
          ceremony: ceremony,
          credential: assertion(cred),
          return_to: box.getAttribute("data-return-to") || undefined
        });
      }).then(function (j) {
        say("Signed in.");
        window.location.assign(j.redirect);
      });
    }).catch(function (e) {
      say("That did not work: " + (e && e.message ? e.message : e) + ". You can try again.");
      button.disabled = false;
    });
  }

  button.addEventListener("click", run);
})();
