"""A third-party OAuth 2.0 / OpenID Connect client from the Python ecosystem driving Lanyard.

The peer is PyPI Authlib (with joserfc, the JOSE library Authlib's own OpenID client uses)
over requests. It is run by the Rust test `tests/api/conformance.rs` against the real server
on both stores; it is not a mock of anything and it is not a test of Authlib.

  python authlib_rp.py      runs three clients in turn and prints `RESULT {json}` at the end;
                            any failed check exits non-zero with the reason on stderr.

  web      a confidential web app as Authlib's Flask/Django/Starlette integrations run it
           (their framework-neutral core, `OAuth2Mixin` + `OpenIDMixin`): discovery from
           `{issuer}/.well-known/openid-configuration`, authorization code + PKCE S256,
           `client_secret_basic` (Authlib's default: raw, not form-encoded, credentials),
           ID-token validation (signature against the JWKS, iss, aud, nonce, at_hash, exp),
           userinfo, refresh with rotation, introspection (RFC 7662), revocation (RFC 7009).
  mobile   a native public app sending exactly what AppAuth (iOS/Android) sends:
           `scope=openid profile offline_access`, state, nonce, PKCE S256 with a 43-character
           verifier, a private-use-scheme redirect URI; the token request carries
           `client_id` in the body and no secret; the refresh request sends only
           grant_type, refresh_token and client_id. The rotated refresh token works once:
           the old one is refused afterwards, and that reuse ends the family.
  service  a client_credentials service that, as an OAuth-only library does, discovers from
           the RFC 8414 document (`/.well-known/oauth-authorization-server/t/{tenant}`), then
           checks its access token offline against the JWKS and online by introspection.

The browser part (Lanyard's sign-in form with its CSRF field, redirects followed until the
code comes back) is plain HTTP with a cookie jar: `requests.Session`.

Environment: ISSUER, EMAIL, PASSWORD, WEB_ID, WEB_SECRET, WEB_REDIRECT, NATIVE_ID,
NATIVE_REDIRECT, SERVICE_ID, SERVICE_SECRET, SERVICE_SCOPE.
"""

import base64
import json
import os
import re
import secrets
import sys
import traceback
from urllib.parse import parse_qs, urljoin, urlsplit

# The test server speaks plain HTTP on loopback; Authlib refuses http:// token endpoints
# unless told otherwise (as openid-client needs `allowInsecureRequests`).
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.common.errors import AuthlibBaseError  # noqa: E402
from authlib.integrations.base_client import (  # noqa: E402
    BaseApp,
    FrameworkIntegration,
    OAuth2Mixin,
    OpenIDMixin,
)
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.errors import BadSignatureError, InvalidClaimError  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402


def env(key):
    value = os.environ.get(key)
    if not value:
        raise SystemExit(f"missing environment variable {key}")
    return value


def log(*parts):
    print("[authlib]", *parts, flush=True)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


ISSUER = env("ISSUER")

# --- what went over the wire -------------------------------------------------------------
# Every request any requests.Session sends (Authlib's included) is recorded, so the script
# can assert the exact parameters a request carried, not only that Lanyard accepted it.
WIRE = []
_send = requests.Session.send


def _recording_send(self, request, **kwargs):
    WIRE.append(request)
    return _send(self, request, **kwargs)


requests.Session.send = _recording_send


def last_request_to(url):
    for r in reversed(WIRE):
        if r.url.split("?")[0] == url:
            return r
    raise AssertionError(f"no request was sent to {url}")


def form_of(request):
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def query_of(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


# --- Authlib's client app ----------------------------------------------------------------
class NoFramework(FrameworkIntegration):
    """The web framework slot of Authlib's integrations; this script keeps its own state."""

    def update_token(self, token, refresh_token=None, access_token=None):
        pass


class RelyingParty(OAuth2Mixin, OpenIDMixin, BaseApp):
    """Authlib's framework-neutral OAuth 2.0 / OpenID client — the core its Flask, Django
    and Starlette integrations are made of — over requests."""

    client_cls = OAuth2Session

    def session(self, **overrides):
        """An Authlib OAuth2Session configured from the discovered metadata."""
        return self._get_oauth_client(**{**self.load_server_metadata(), **overrides})


def oauth_error(call):
    """The OAuth error code a call was refused with (it must be refused)."""
    try:
        call()
    except AuthlibBaseError as e:
        return e.error
    raise AssertionError("expected an OAuth error, got success")


# --- a browser ---------------------------------------------------------------------------
class Browser:
    """A cookie jar that follows redirects by hand and fills in Lanyard's sign-in form."""

    def __init__(self):
        self.http = requests.Session()

    def until(self, start, stop_prefix):
        url = start
        for _ in range(12):
            if url.startswith(stop_prefix):
                return url
            res = self.http.get(url, allow_redirects=False)
            if res.status_code in (301, 302, 303, 307):
                url = urljoin(url, res.headers["location"])
                continue
            html = res.text
            if res.status_code == 200 and 'name="password"' in html:
                csrf = re.search(r'name="csrf" value="([^"]+)"', html)
                action = re.search(r'<form method="post" action="([^"]+)"', html)
                check(csrf and action, f"sign-in form without csrf field or action at {url}")
                return_to = query_of(url).get("return_to", "")
                target = urljoin(url, action.group(1))
                posted = self.http.post(
                    target,
                    data={"csrf": csrf.group(1), "email": env("EMAIL"), "password": env("PASSWORD"),
                          "return_to": return_to},
                    allow_redirects=False,
                )
                check(posted.status_code == 303, f"sign-in form refused: {posted.status_code} {posted.text[:300]}")
                url = urljoin(target, posted.headers["location"])
                continue
            raise AssertionError(f"unexpected {res.status_code} at {url}: {html[:300]}")
        raise AssertionError("too many redirects")


def callback_params(callback, state):
    """Checks the authorization response as an RP must (state; RFC 9207 `iss`)."""
    params = query_of(callback)
    check("error" not in params, f"authorization refused: {params}")
    check(params.get("state") == state, "state came back unchanged")
    check(params.get("iss") == ISSUER, f"RFC 9207 iss parameter is the issuer: {params.get('iss')}")
    return params


def discovery_url():
    return ISSUER + "/.well-known/openid-configuration"


def validate_metadata(model, document, what):
    """Authlib's own metadata model checks every field; only the rule that the issuer be
    https is left out (the test server is plain http on loopback)."""
    meta = model(document)
    for key in meta.REGISTRY_KEYS:
        if key != "issuer":
            getattr(meta, "validate_" + key)()
    check(meta["issuer"] == ISSUER, f"{what}: issuer is {meta['issuer']}, the document was fetched for {ISSUER}")


# --- 1. web app --------------------------------------------------------------------------
def web():
    log("=== web app: confidential, client_secret_basic, code + PKCE S256")
    rp = RelyingParty(
        NoFramework("web"),
        client_id=env("WEB_ID"),
        client_secret=env("WEB_SECRET"),
        server_metadata_url=discovery_url(),
        client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
    )
    meta = rp.load_server_metadata()
    validate_metadata(OpenIDProviderMetadata, {k: v for k, v in meta.items() if k != "_loaded_at"}, "discovery")
    log("discovered", meta["issuer"], "token_endpoint", meta["token_endpoint"])

    # What Authlib's integrations' authorize_redirect() does, then the browser.
    auth = rp.create_authorization_url(redirect_uri=env("WEB_REDIRECT"))
    q = query_of(auth["url"])
    check(q.get("code_challenge_method") == "S256" and q.get("nonce") == auth["nonce"], "PKCE S256 and nonce sent")
    callback = Browser().until(auth["url"], env("WEB_REDIRECT"))
    params = callback_params(callback, auth["state"])

    # What authorize_access_token() does: the code exchange, then parse_id_token().
    token = rp.fetch_access_token(
        redirect_uri=env("WEB_REDIRECT"), code=params["code"], state=params["state"],
        code_verifier=auth["code_verifier"],
    )
    sent = last_request_to(meta["token_endpoint"])
    check(sent.headers.get("Authorization", "").startswith("Basic "), "client_secret_basic: credentials in Basic")
    check("client_secret" not in form_of(sent), "client_secret_basic: no secret in the body")
    claims = rp.parse_id_token(token, nonce=auth["nonce"])
    check(claims["email"] == env("EMAIL"), "ID token names the user")
    header = jwt.decode(token["id_token"], KeySet.import_key_set(rp.fetch_jwk_set())).header
    log("web id_token validated by Authlib (joserfc): alg", header["alg"], "iss", claims["iss"], "aud", claims["aud"])

    # Validation is real: a forged signature and a foreign nonce are refused.
    head, body, sig = token["id_token"].split(".")
    forged = dict(token, id_token=f"{head}.{body}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}")
    try:
        rp.parse_id_token(forged, nonce=auth["nonce"])
        raise AssertionError("an ID token with a forged signature was accepted")
    except BadSignatureError:
        pass
    try:
        rp.parse_id_token(token, nonce="not-the-nonce")
        raise AssertionError("an ID token with another nonce was accepted")
    except InvalidClaimError as e:
        check(e.claim == "nonce", f"refused for its nonce: {e}")
    log("web forged id_token signature rejected; foreign nonce rejected")

    info = rp.userinfo(token=token)
    check(info["sub"] == claims["sub"] and info["email"] == env("EMAIL"), f"userinfo: {dict(info)}")
    log("web userinfo", dict(info))

    s = rp.session()
    refreshed = s.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    check(refreshed["refresh_token"] != token["refresh_token"], "refresh token rotated")
    check(refreshed["access_token"] != token["access_token"], "new access token")
    log("web refreshed: refresh token rotated")

    intro = s.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
    check(intro.get("active") is True and intro.get("client_id") == env("WEB_ID"), f"introspection: {intro}")
    log("web introspect access token: active", intro["active"])

    res = s.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"],
                         token_type_hint="refresh_token")
    check(res.status_code == 200, f"revocation answered {res.status_code}")
    gone = s.introspect_token(meta["introspection_endpoint"], token=refreshed["refresh_token"]).json()
    check(gone == {"active": False}, f"revoked refresh token inactive: {gone}")
    log("web revoked: refresh token active", gone["active"])

    err = oauth_error(lambda: rp.session().refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"]))
    check(err == "invalid_grant", f"reused refresh token: {err}")
    log("web reused refresh token rejected:", err)
    return {"web_sub": claims["sub"]}


# --- 2. mobile app, as AppAuth -----------------------------------------------------------
APPAUTH_SCOPE = "openid profile offline_access"


def appauth_random():
    """AppAuth's state, nonce and code verifier: 32 random bytes, base64url, no padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def mobile():
    log("=== mobile app: public, PKCE S256, scope", repr(APPAUTH_SCOPE), "as AppAuth sends it")
    rp = RelyingParty(
        NoFramework("mobile"),
        client_id=env("NATIVE_ID"),
        client_secret=None,
        server_metadata_url=discovery_url(),
        client_kwargs={"code_challenge_method": "S256", "token_endpoint_auth_method": "none"},
    )
    meta = rp.load_server_metadata()
    check("S256" in meta.get("code_challenge_methods_supported", []), "S256 advertised")
    redirect = env("NATIVE_REDIRECT")
    verifier, state, nonce = appauth_random(), appauth_random(), appauth_random()
    check(len(verifier) == 43, "AppAuth's verifier is 43 characters")
    auth = rp.create_authorization_url(
        redirect_uri=redirect, scope=APPAUTH_SCOPE, state=state, nonce=nonce, code_verifier=verifier
    )
    q = query_of(auth["url"])
    check(
        set(q) == {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
                   "code_challenge_method"},
        f"the authorization request carries AppAuth's parameters: {sorted(q)}",
    )
    check(q["scope"] == APPAUTH_SCOPE and q["code_challenge_method"] == "S256", "scope and PKCE as AppAuth")
    callback = Browser().until(auth["url"], redirect)
    params = callback_params(callback, state)
    log("mobile callback", re.sub(r"code=[^&]+", "code=…", callback))

    token = rp.fetch_access_token(redirect_uri=redirect, code=params["code"], state=state, code_verifier=verifier)
    sent = last_request_to(meta["token_endpoint"])
    check("Authorization" not in sent.headers, "a public client sends no Authorization header")
    body = form_of(sent)
    check(set(body) == {"grant_type", "code", "redirect_uri", "code_verifier", "client_id"},
          f"the token request carries AppAuth's parameters: {sorted(body)}")
    check(body["client_id"] == env("NATIVE_ID"), "client_id in the body")
    granted = token.get("scope", "").split()
    check(set(granted) == set(APPAUTH_SCOPE.split()), f"granted scope says what was granted: {token.get('scope')}")
    check(token.get("refresh_token"), "offline_access: a refresh token is issued")
    check(token.get("token_type", "").lower() == "bearer", f"token_type: {token.get('token_type')}")
    claims = rp.parse_id_token(token, nonce=nonce)
    log("mobile tokens: scope", repr(token["scope"]), "id_token validated, sub", claims["sub"])

    info = rp.userinfo(token=token)
    check(info["sub"] == claims["sub"], f"userinfo sub: {dict(info)}")

    # AppAuth's refresh: grant_type, refresh_token, client_id — no scope, no secret.
    plain = rp.session(scope=None)
    first = token["refresh_token"]
    refreshed = plain.refresh_token(meta["token_endpoint"], refresh_token=first)
    sent = last_request_to(meta["token_endpoint"])
    check("Authorization" not in sent.headers, "refresh: no Authorization header")
    check(set(form_of(sent)) == {"grant_type", "refresh_token", "client_id"},
          f"the refresh request carries AppAuth's parameters: {sorted(form_of(sent))}")
    second = refreshed["refresh_token"]
    check(second and second != first, "the refresh token rotated")
    check(refreshed["access_token"] != token["access_token"], "a new access token")
    log("mobile refreshed with the rotating refresh token: rotated", second != first)

    err = oauth_error(lambda: rp.session(scope=None).refresh_token(meta["token_endpoint"], refresh_token=first))
    check(err == "invalid_grant", f"old refresh token: {err}")
    log("mobile old refresh token refused after rotation:", err)
    err = oauth_error(lambda: rp.session(scope=None).refresh_token(meta["token_endpoint"], refresh_token=second))
    check(err == "invalid_grant", f"rotated refresh token after a reuse: {err}")
    log("mobile reuse ended the family: the rotated token is refused too:", err)
    return {"native_scope": token["scope"], "native_sub": claims["sub"]}


# --- 3. service --------------------------------------------------------------------------
def rfc8414_url():
    """RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path."""
    u = urlsplit(ISSUER)
    return f"{u.scheme}://{u.netloc}/.well-known/oauth-authorization-server{u.path}"


def service():
    log("=== service: client_credentials, RFC 8414 discovery")
    res = requests.get(rfc8414_url(), timeout=30)
    check(res.status_code == 200, f"RFC 8414 metadata at {rfc8414_url()}: {res.status_code}")
    meta = res.json()
    validate_metadata(AuthorizationServerMetadata, meta, "RFC 8414 metadata")
    check("client_credentials" in meta.get("grant_types_supported", []), "client_credentials advertised")
    log("discovered (RFC 8414)", meta["issuer"], "token_endpoint", meta["token_endpoint"])

    s = OAuth2Session(env("SERVICE_ID"), env("SERVICE_SECRET"), scope=env("SERVICE_SCOPE"), **meta)
    token = s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    sent = last_request_to(meta["token_endpoint"])
    check(sent.headers.get("Authorization", "").startswith("Basic "), "client_secret_basic")
    check("refresh_token" not in token and "id_token" not in token, f"only an access token: {sorted(token)}")
    check(token.get("scope", env("SERVICE_SCOPE")).split() == env("SERVICE_SCOPE").split(), f"scope {token.get('scope')}")

    # A resource server's offline check: signature against the JWKS, RFC 9068 typ, issuer.
    jwks = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=30).json())
    at = jwt.decode(token["access_token"], jwks)
    check(at.header.get("typ") == "at+jwt", f"RFC 9068 typ: {at.header}")
    check(at.claims["iss"] == ISSUER, f"iss {at.claims['iss']}")
    check(at.claims.get("client_id") == env("SERVICE_ID"), f"client_id claim: {at.claims}")
    log("service access token verified offline from the JWKS: alg", at.header["alg"])

    intro = s.introspect_token(meta["introspection_endpoint"], token=token["access_token"]).json()
    check(intro.get("active") is True and intro.get("client_id") == env("SERVICE_ID"), f"introspection: {intro}")
    log("service introspect: active", intro["active"])
    return {"service_client_id": at.claims.get("client_id")}


def main():
    result = {}
    for flow in (web, mobile, service):
        result.update(flow())
    print("RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # noqa: B902 — any failure is the test's failure, with its trace
        traceback.print_exc()
        sys.exit(1)
