#!/usr/bin/env python3
"""A real SAML 2.0 Identity Provider (PyPI pysaml2 + Debian's xmlsec1) for Lanyard's SP tests.

    saml_idp.py --port 0 --dir DIR [--sp-metadata FILE] [--verbose]

Listens on 127.0.0.1 only. Generates (once per DIR, reused afterwards) two RSA-2048 signing keys
with self-signed certificates: DIR/signing.{key,crt} (published in /metadata) and
DIR/signing2.{key,crt} (used by the `wrong_key` / `use_second_key` knobs; published next to the
first one by /metadata?rollover=1). Then prints exactly one line `READY http://127.0.0.1:PORT` on
stdout and nothing more there (errors go to stderr only with --verbose, so a parent that never
reads stdout/stderr cannot block it).

Endpoints (IdP entityID = http://127.0.0.1:PORT/metadata):
  GET  /metadata[?rollover=1]  IdP metadata; SSO for HTTP-Redirect (/sso/redirect) and HTTP-POST
                               (/sso/post); signing cert (both certs with rollover=1)
  POST /_sp                    body = SP metadata XML: loads the SP, replacing an earlier SP with the
                               same entityID (the pysaml2 Server is rebuilt from scratch)
  POST /_control               JSON knobs for all following responses; each POST replaces the whole
                               set (unnamed knobs go back to their defaults; `{}` = all defaults)
  GET  /_control               the knobs in force
  GET  /sso/redirect, POST /sso/post
                               AuthnRequest in; 200 + auto-submitting HTML form (SAMLResponse,
                               RelayState) to the ACS; 400 text/plain with the reason when the
                               request is refused (bad/missing signature, unknown SP, ACS not in
                               the SP metadata, non-POST ProtocolBinding, unparsable request)
  GET  /_last                  JSON facts of the last AuthnRequest seen (also refused ones)
  GET  /idp-init?sp=ENTITYID[&relay_state=X]
                               unsolicited response form (no InResponseTo) to the SP's default ACS

Knobs (POST /_control, JSON; unknown names are refused with 400; defaults in DEFAULT_KNOBS):
  sign_response, sign_assertion (true), encrypt_assertion (false)
  enc_alg          aes128-cbc (default) | aes256-cbc | aes128-gcm | aes256-gcm | tripledes-cbc
  key_alg          rsa-oaep-mgf1p (default) | rsa-1_5        (session-key transport)
  enc_self_contained  false: the Assertion inside EncryptedAssertion uses the Response's namespace
                   declarations (the usual form); true: pysaml2's self-contained form (re-declared
                   `encas*` prefixes), which pysaml2's own SP needs
  sig_alg          rsa-sha256 (default) | rsa-sha1 | rsa-sha384 | rsa-sha512
  digest_alg       null = follows sig_alg | sha1 | sha256 | sha384 | sha512
  user             NameID text (default alice@acme.test); name_id_format (default emailAddress)
  attributes       {name: [values]} (default mail=[user], displayName, groups=[staff]); Name is the
                   key verbatim, NameFormat uri when it contains ':' else basic, xs:string values
  not_before_offset, not_on_or_after_offset   Conditions times = now + seconds (null: pysaml2's,
                   NotBefore = now, NotOnOrAfter = now + 1 h)
  subject_not_on_or_after_offset   SubjectConfirmationData NotOnOrAfter = now + s (300; null: omit)
  issue_instant_offset   Response and Assertion IssueInstant = now + s
  audience, destination, recipient   overrides (default SP entityID, ACS, ACS)
  in_response_to   string overrides Response + SubjectConfirmationData InResponseTo; null omits it
  status           success | authn_failed (Responder/AuthnFailed) | requester | responder |
                   request_denied (Responder/RequestDenied) | any status URN; no assertion then
  wrong_key, use_second_key   sign with DIR/signing2.key (cert 2 in KeyInfo)
  tamper           change the mail AttributeValue after signing (for an encrypted assertion:
                   after the assertion signature, before encryption and the Response signature)
"""

import argparse
import base64
import datetime
import fcntl
import html
import json
import logging
import os
import re
import shutil
import sys
import threading
import traceback
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# pysaml2 7.5.5 touches cryptography's CFB mode at import: a deprecation warning on stderr.
warnings.filterwarnings("ignore", message=r".*has been moved to cryptography\.hazmat\.decrepit.*")

from cryptography import x509  # noqa: E402
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, md, saml, samlp, xmldsig
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.server import Server
from saml2.sigver import (
    get_pem_wrapped_unwrapped,
    make_temp,
    pre_encrypt_assertion,
    pre_encryption_part,
    pre_signature_part,
)

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
CLS_RESPONSE = f"{NS_SAMLP}:Response"
CLS_ASSERTION = f"{NS_SAML}:Assertion"

SIG_ALGS = {
    "rsa-sha1": (xmldsig.SIG_RSA_SHA1, "sha1"),
    "rsa-sha256": (xmldsig.SIG_RSA_SHA256, "sha256"),
    "rsa-sha384": (xmldsig.SIG_RSA_SHA384, "sha384"),
    "rsa-sha512": (xmldsig.SIG_RSA_SHA512, "sha512"),
}
DIGEST_ALGS = {
    "sha1": xmldsig.DIGEST_SHA1,
    "sha256": xmldsig.DIGEST_SHA256,
    "sha384": xmldsig.DIGEST_SHA384,
    "sha512": xmldsig.DIGEST_SHA512,
}
# enc_alg -> (EncryptionMethod URI in the template, xmlsec1 --session-key). pysaml2 hard-codes
# `--session-key des-192` (3DES), which only matches a tripledes-cbc template: we always pass the
# key type that matches the template ourselves.
ENC_ALGS = {
    "aes128-cbc": ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "aes-128"),
    "aes256-cbc": ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "aes-256"),
    "aes128-gcm": ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "aes-128"),
    "aes256-gcm": ("http://www.w3.org/2009/xmlenc11#aes256-gcm", "aes-256"),
    "tripledes-cbc": ("http://www.w3.org/2001/04/xmlenc#tripledes-cbc", "des-192"),
}
KEY_ALGS = {
    "rsa-oaep-mgf1p": "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "rsa-1_5": "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
}
STATUSES = {
    "success": (samlp.STATUS_SUCCESS, None),
    "authn_failed": (samlp.STATUS_RESPONDER, samlp.STATUS_AUTHN_FAILED),
    "requester": (samlp.STATUS_REQUESTER, None),
    "responder": (samlp.STATUS_RESPONDER, None),
    "request_denied": (samlp.STATUS_RESPONDER, samlp.STATUS_REQUEST_DENIED),
}
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"

_UNSET = object()  # "knob not given" for the knobs where null means "omit"
DEFAULT_KNOBS = {
    "sign_response": True,
    "sign_assertion": True,
    "encrypt_assertion": False,
    "enc_alg": "aes128-cbc",
    "key_alg": "rsa-oaep-mgf1p",  # key transport for the session key
    "enc_self_contained": False,
    "sig_alg": "rsa-sha256",
    "digest_alg": None,  # None: follows sig_alg
    "user": "alice@acme.test",  # the NameID text
    "name_id_format": NAMEID_EMAIL,
    "attributes": None,  # None: {"mail": [user], "displayName": ["Alice Example"], "groups": ["staff"]}
    "not_before_offset": None,  # None: pysaml2's (Conditions NotBefore = now)
    "not_on_or_after_offset": None,  # None: pysaml2's (Conditions NotOnOrAfter = now + 1 h)
    "subject_not_on_or_after_offset": 300,  # SubjectConfirmationData NotOnOrAfter; null = omit
    "issue_instant_offset": 0,
    "audience": None,
    "destination": None,
    "recipient": None,
    "in_response_to": _UNSET,  # string = override, null = omit, unset = the request's ID
    "status": "success",
    "wrong_key": False,
    "use_second_key": False,
    "tamper": False,
}

log = logging.getLogger("saml_idp")


# --------------------------------------------------------------------------------------------
# keys


def ensure_keypairs(directory):
    """Both signing key pairs, generated once per directory (under a lock, so that IdPs started
    at the same time on the same directory agree on the keys)."""
    with open(os.path.join(directory, ".keygen.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return (
            ensure_keypair(directory, "signing", "Lanyard test IdP signing key 1"),
            ensure_keypair(directory, "signing2", "Lanyard test IdP signing key 2"),
        )


def ensure_keypair(directory, stem, cn):
    key_path = os.path.join(directory, stem + ".key")
    crt_path = os.path.join(directory, stem + ".crt")
    if os.path.exists(key_path) and os.path.exists(crt_path):
        return key_path, crt_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    for path, data in ((key_path, key_pem), (crt_path, cert.public_bytes(serialization.Encoding.PEM))):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return key_path, crt_path


def cert_b64(crt_path):
    with open(crt_path) as f:
        pem = f.read()
    return "".join(line for line in pem.splitlines() if "-----" not in line)


# --------------------------------------------------------------------------------------------
# helpers


def utc_iso(offset_seconds=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Refused(Exception):
    """The request is refused: HTTP 400 (or the given status) with this text."""

    def __init__(self, msg, code=400):
        super().__init__(msg)
        self.code = code


def sp_entity_id_of(xml_text):
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise Refused(f"SP metadata is not XML: {e}")
    if root.tag == f"{{{NS_MD}}}EntityDescriptor":
        ents = [root]
    elif root.tag == f"{{{NS_MD}}}EntitiesDescriptor":
        ents = root.findall(f".//{{{NS_MD}}}EntityDescriptor")
    else:
        raise Refused(f"SP metadata root is {root.tag}, not md:EntityDescriptor")
    ids = [e.get("entityID") for e in ents if e.find(f"{{{NS_MD}}}SPSSODescriptor") is not None]
    if len(ids) != 1 or not ids[0]:
        raise Refused("SP metadata must hold exactly one EntityDescriptor with an SPSSODescriptor")
    return ids[0]


def authn_requests_signed(xml_text):
    root = ET.fromstring(xml_text)
    sp = root.find(f".//{{{NS_MD}}}SPSSODescriptor")
    return sp is not None and sp.get("AuthnRequestsSigned") in ("true", "1")


def tamper_mail(xml):
    """Change the value of the `mail` attribute (else the first AttributeValue) in place, leaving
    every other byte (and so every signature) alone."""
    attr = re.search(r'<(\w+:)?Attribute\b[^>]*\bName="mail"[^>]*>', xml)
    start = attr.end() if attr else 0
    val = re.compile(r"(<(\w+:)?AttributeValue\b[^>]*>)([^<]*)(<)").search(xml, start)
    if not val:
        raise Refused("tamper: the response has no AttributeValue to change", 500)
    return xml[: val.start(3)] + "mallory@evil.test" + xml[val.end(3) :]


# --------------------------------------------------------------------------------------------
# the IdP


class IdP:
    def __init__(self, base, directory, verbose=False):
        self.base = base
        self.entity_id = base + "/metadata"
        self.dir = directory
        self.lock = threading.RLock()
        (self.key1, self.crt1), (self.key2, self.crt2) = ensure_keypairs(directory)
        self.xmlsec = shutil.which("xmlsec1")
        if not self.xmlsec:
            raise SystemExit("xmlsec1 not found: apt-get install xmlsec1 (scripts/install-deps.sh --test)")
        self.sp_xml = {}  # entityID -> SP metadata XML
        self.knobs = dict(DEFAULT_KNOBS)
        self.last = {}
        self.server = self._build_server()

    # -- configuration ---------------------------------------------------------------------

    def _config(self):
        conf = {
            "entityid": self.entity_id,
            "description": "Lanyard conformance IdP (pysaml2)",
            "service": {
                "idp": {
                    "name": "Lanyard test IdP",
                    "endpoints": {
                        "single_sign_on_service": [
                            (self.base + "/sso/redirect", BINDING_HTTP_REDIRECT),
                            (self.base + "/sso/post", BINDING_HTTP_POST),
                        ],
                    },
                    # Redirect-binding signatures are verified here on the raw query (pysaml2
                    # re-encodes the parameters, which breaks on other encoders); POST-binding
                    # signatures are verified by pysaml2 whenever present.
                    "want_authn_requests_signed": False,
                    "name_id_format": [
                        NAMEID_EMAIL,
                        saml.NAMEID_FORMAT_PERSISTENT,
                        saml.NAMEID_FORMAT_TRANSIENT,
                        saml.NAMEID_FORMAT_UNSPECIFIED,
                    ],
                    "policy": {"default": {"lifetime": {"hours": 1}, "attribute_restrictions": None}},
                },
            },
            "key_file": self.key1,
            "cert_file": self.crt1,
            "xmlsec_binary": self.xmlsec,
            "signing_algorithm": xmldsig.SIG_RSA_SHA256,
            "digest_algorithm": xmldsig.DIGEST_SHA256,
            "accepted_time_diff": 60,
            "metadata": {"inline": list(self.sp_xml.values())} if self.sp_xml else {},
        }
        c = IdPConfig()
        c.load(conf)
        return c

    def _build_server(self):
        return Server(config=self._config())

    def load_sp(self, xml_text):
        eid = sp_entity_id_of(xml_text)
        with self.lock:
            old = dict(self.sp_xml)
            self.sp_xml[eid] = xml_text
            try:
                self.server = self._build_server()  # a fresh MetadataStore: replaces, never merges
            except Exception as e:
                self.sp_xml = old
                raise Refused(f"pysaml2 refused the SP metadata: {e!r}")
        return eid

    def set_knobs(self, body):
        unknown = sorted(set(body) - set(DEFAULT_KNOBS))
        if unknown:
            raise Refused(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(DEFAULT_KNOBS)}")
        k = dict(DEFAULT_KNOBS)
        k.update(body)
        if k["sig_alg"] not in SIG_ALGS:
            raise Refused(f"sig_alg must be one of {list(SIG_ALGS)}")
        if k["digest_alg"] is not None and k["digest_alg"] not in DIGEST_ALGS:
            raise Refused(f"digest_alg must be one of {list(DIGEST_ALGS)}")
        if k["enc_alg"] not in ENC_ALGS:
            raise Refused(f"enc_alg must be one of {list(ENC_ALGS)}")
        if k["key_alg"] not in KEY_ALGS:
            raise Refused(f"key_alg must be one of {list(KEY_ALGS)}")
        if k["status"] not in STATUSES and not str(k["status"]).startswith("urn:"):
            raise Refused(f"status must be one of {list(STATUSES)} or a status URN")
        if k["attributes"] is not None and not (
            isinstance(k["attributes"], dict) and all(isinstance(v, list) for v in k["attributes"].values())
        ):
            raise Refused("attributes must be an object name -> list of strings")
        with self.lock:
            self.knobs = k
        return self.knobs_json()

    def knobs_json(self):
        return {n: v for n, v in self.knobs.items() if v is not _UNSET}

    # -- metadata --------------------------------------------------------------------------

    def metadata(self, rollover=False):
        with self.lock:
            ed = entity_descriptor(self.server.config)
        if rollover:
            kd = md.KeyDescriptor(
                use="signing",
                key_info=xmldsig.KeyInfo(
                    x509_data=[xmldsig.X509Data(x509_certificate=xmldsig.X509Certificate(text=cert_b64(self.crt2)))]
                ),
            )
            ed.idpsso_descriptor.key_descriptor.append(kd)
        return ed.to_string({"md": NS_MD, "ds": NS_DS, "alg": "urn:oasis:names:tc:SAML:metadata:algsupport"}).decode()

    # -- AuthnRequest ----------------------------------------------------------------------

    def _verify_redirect_signature(self, raw_query, sp_id):
        """SAML bindings 3.4.4.1: the signed octets are the parameters *as received* (URL-encoded),
        in the order SAMLRequest, RelayState, SigAlg. Returns (ok, reason)."""
        raw = {}
        for part in raw_query.split("&"):
            if "=" in part:
                k, v = part.split("=", 1)
                raw.setdefault(k, v)
        sigalg = urllib.parse.unquote_plus(raw.get("SigAlg", ""))
        hashes_by_uri = {uri: h for uri, h in ((v[0], v[1]) for v in SIG_ALGS.values())}
        if sigalg not in hashes_by_uri:
            return False, f"unsupported SigAlg {sigalg!r}"
        signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw)
        try:
            sig = base64.b64decode(urllib.parse.unquote_plus(raw["Signature"]), validate=True)
        except Exception:
            return False, "Signature is not base64"
        h = getattr(hashes, hashes_by_uri[sigalg].upper())()
        certs = self.server.metadata.certs(sp_id, "any", "signing")
        if not certs:
            return False, "the SP metadata has no signing certificate"
        for _name, c in certs:
            pub = x509.load_der_x509_certificate(base64.b64decode(c)).public_key()
            try:
                pub.verify(sig, signed.encode("ascii"), padding.PKCS1v15(), h)
                return True, ""
            except InvalidSignature:
                continue
            except Exception as e:  # e.g. not an RSA key
                return False, f"cannot verify with the SP's key: {e!r}"
        return False, "signature does not verify with any signing certificate of the SP metadata"

    def handle_authn_request(self, binding, saml_request, relay_state, raw_query=None, has_sig_param=False, sigalg=None):
        facts = {
            "request_id": None,
            "relay_state": relay_state,
            "request_signed_valid": None,
            "acs": None,
            "binding": "HTTP-Redirect" if binding == BINDING_HTTP_REDIRECT else "HTTP-POST",
            "sig_alg": sigalg,
            "issuer": None,
            "error": None,
        }
        with self.lock:
            self.last = facts
            try:
                return self._handle_authn_request(facts, binding, saml_request, relay_state, raw_query, has_sig_param)
            except Refused as e:
                facts["error"] = str(e)
                raise

    def _handle_authn_request(self, facts, binding, saml_request, relay_state, raw_query, has_sig_param):
        if not saml_request:
            raise Refused("no SAMLRequest")
        # Decode it ourselves first to know the issuer and whether an XML signature is embedded.
        try:
            raw = base64.b64decode(saml_request)
            xml_text = (zlib.decompress(raw, -15) if binding == BINDING_HTTP_REDIRECT else raw).decode("utf-8")
            root = ET.fromstring(xml_text)
        except Exception as e:
            raise Refused(f"SAMLRequest is not a (deflated) base64 XML document: {e}")
        if root.tag != f"{{{NS_SAMLP}}}AuthnRequest":
            raise Refused(f"SAMLRequest is {root.tag}, not samlp:AuthnRequest")
        facts["request_id"] = root.get("ID")
        iss = root.find(f"{{{NS_SAML}}}Issuer")
        sp_id = iss.text.strip() if iss is not None and iss.text else None
        facts["issuer"] = sp_id
        if not sp_id:
            raise Refused("AuthnRequest has no Issuer")
        if sp_id not in self.sp_xml:
            raise Refused(f"unknown SP {sp_id!r}: POST its metadata to /_sp first")
        embedded_sig = root.find(f"{{{NS_DS}}}Signature") is not None
        must_sign = authn_requests_signed(self.sp_xml[sp_id])

        try:
            req = self.server.parse_authn_request(saml_request, binding)
        except Exception as e:
            if embedded_sig:
                facts["request_signed_valid"] = False
                raise Refused(f"AuthnRequest signature invalid: {e!r} {getattr(e, '__cause__', '')!r}")
            raise Refused(f"pysaml2 refused the AuthnRequest: {e!r}")
        if req is None:
            raise Refused("pysaml2 could not parse the AuthnRequest")
        msg = req.message

        if binding == BINDING_HTTP_REDIRECT and has_sig_param:
            ok, why = self._verify_redirect_signature(raw_query, sp_id)
            facts["request_signed_valid"] = ok
            if not ok:
                raise Refused(f"AuthnRequest signature invalid: {why}")
        elif embedded_sig:
            facts["request_signed_valid"] = True  # pysaml2 verified it (else it raised above)
        elif must_sign:
            facts["request_signed_valid"] = False
            raise Refused("AuthnRequest is not signed, but the SP metadata says AuthnRequestsSigned=\"true\"")

        if msg.protocol_binding and msg.protocol_binding != BINDING_HTTP_POST:
            raise Refused(f"ProtocolBinding {msg.protocol_binding} not supported (only HTTP-POST)")
        acs = self._pick_acs(sp_id, msg.assertion_consumer_service_url, msg.assertion_consumer_service_index)
        facts["acs"] = acs
        facts["force_authn"] = msg.force_authn
        facts["is_passive"] = msg.is_passive
        facts["name_id_policy_format"] = msg.name_id_policy.format if msg.name_id_policy else None
        facts["request_destination"] = msg.destination
        return self.response_form(sp_id, acs, msg.id, relay_state)

    def _acs_list(self, sp_id):
        try:
            return self.server.metadata.assertion_consumer_service(sp_id, BINDING_HTTP_POST) or []
        except Exception:
            return []

    def _pick_acs(self, sp_id, url=None, index=None):
        acss = self._acs_list(sp_id)
        if not acss:
            raise Refused(f"the SP metadata of {sp_id!r} has no HTTP-POST AssertionConsumerService")
        if url:
            if url not in [a["location"] for a in acss]:
                raise Refused(f"AssertionConsumerServiceURL {url!r} is not an HTTP-POST ACS of the SP metadata")
            return url
        if index is not None:
            for a in acss:
                if str(a.get("index")) == str(index):
                    return a["location"]
            raise Refused(f"AssertionConsumerServiceIndex {index} is not in the SP metadata")
        for a in acss:
            if str(a.get("is_default", "")).lower() == "true":
                return a["location"]
        return acss[0]["location"]

    # -- Response --------------------------------------------------------------------------

    def response_form(self, sp_id, acs, request_id, relay_state):
        xml = self.build_response(sp_id, acs, request_id)
        value = base64.b64encode(xml.encode("utf-8")).decode("ascii")
        rs = ""
        if relay_state is not None:
            rs = f'<input type="hidden" name="RelayState" value="{html.escape(relay_state, quote=True)}"/>'
        return (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SAML POST</title></head>"
            '<body onload="document.forms[0].submit()">'
            f'<form method="post" action="{html.escape(acs, quote=True)}">'
            f'<input type="hidden" name="SAMLResponse" value="{value}"/>{rs}'
            '<noscript><button type="submit">Continue</button></noscript>'
            "</form></body></html>\n"
        )

    def build_response(self, sp_id, acs, request_id):
        k = self.knobs
        srv = self.server
        user = k["user"]
        sig_uri, default_digest = SIG_ALGS[k["sig_alg"]]
        digest_uri = DIGEST_ALGS[k["digest_alg"] or default_digest]
        second = k["wrong_key"] or k["use_second_key"]
        key_file = self.key2 if second else self.key1
        cert = cert_b64(self.crt2 if second else self.crt1)

        in_resp = request_id if k["in_response_to"] is _UNSET else k["in_response_to"]
        name_id = saml.NameID(format=k["name_id_format"], text=user)
        response = srv.create_authn_response(
            identity={},
            in_response_to=in_resp,
            destination=acs,
            sp_entity_id=sp_id,
            name_id=name_id,
            authn={"class_ref": saml.AUTHN_PASSWORD_PROTECTED, "authn_auth": self.entity_id},
            sign_response=False,
            sign_assertion=False,
            encrypt_assertion=False,
        )
        if not isinstance(response, samlp.Response):
            raise Refused(f"pysaml2 did not build a Response: {response!r}", 500)
        assertion = response.assertion

        # Everything the knobs change, before any signature.
        response.destination = k["destination"] if k["destination"] is not None else acs
        response.in_response_to = in_resp
        ii = utc_iso(k["issue_instant_offset"])
        response.issue_instant = ii
        assertion.issue_instant = ii
        scd = assertion.subject.subject_confirmation[0].subject_confirmation_data
        scd.in_response_to = in_resp
        scd.recipient = k["recipient"] if k["recipient"] is not None else acs
        snoa = k["subject_not_on_or_after_offset"]
        scd.not_on_or_after = utc_iso(snoa) if snoa is not None else None
        cond = assertion.conditions
        if k["not_before_offset"] is not None:
            cond.not_before = utc_iso(k["not_before_offset"])
        if k["not_on_or_after_offset"] is not None:
            cond.not_on_or_after = utc_iso(k["not_on_or_after_offset"])
        if k["audience"] is not None:
            cond.audience_restriction = [saml.AudienceRestriction(audience=[saml.Audience(text=k["audience"])])]
        attrs = k["attributes"]
        if attrs is None:
            attrs = {"mail": [user], "displayName": ["Alice Example"], "groups": ["staff"]}
        statement = saml.AttributeStatement(attribute=[])
        for name, values in attrs.items():
            fmt = saml.NAME_FORMAT_URI if ":" in name else saml.NAME_FORMAT_BASIC
            a = saml.Attribute(name=name, name_format=fmt, attribute_value=[])
            for v in values:
                av = saml.AttributeValue()
                av.set_text(str(v))
                a.attribute_value.append(av)
            statement.attribute.append(a)
        assertion.attribute_statement = [statement] if attrs else []

        code, sub = STATUSES.get(k["status"], (k["status"], None))
        if code != samlp.STATUS_SUCCESS:
            sc = samlp.StatusCode(value=code)
            if sub:
                sc.status_code = samlp.StatusCode(value=sub)
            response.status = samlp.Status(status_code=sc, status_message=samlp.StatusMessage(text=k["status"]))
            response.assertion = None
            assertion = None

        sign_assertion = k["sign_assertion"] and assertion is not None
        encrypt = k["encrypt_assertion"] and assertion is not None
        if sign_assertion:
            assertion.signature = pre_signature_part(assertion.id, cert, 2, sign_alg=sig_uri, digest_alg=digest_uri)
        if k["sign_response"]:
            response.signature = pre_signature_part(response.id, cert, 1, sign_alg=sig_uri, digest_alg=digest_uri)
        sec = srv.sec

        def sign(xml, cls, node_id):
            return sec.sign_statement(xml, cls, key_file=key_file, node_id=node_id)

        if encrypt:
            enc_certs = srv.metadata.certs(sp_id, "any", "encryption")
            if not enc_certs:
                # pysaml2 would silently skip encryption AND the assertion signature here.
                raise Refused(
                    f"encrypt_assertion is on but the SP metadata of {sp_id!r} has no encryption certificate",
                    500,
                )
            if k["enc_self_contained"]:
                tag = assertion._to_element_tree().tag
                response = pre_encrypt_assertion(response)
                xml = response.get_xml_string_with_self_contained_assertion_within_encrypted_assertion(tag)
            else:
                response = pre_encrypt_assertion(response)
                xml = str(response)
            if sign_assertion:
                xml = sign(xml, CLS_ASSERTION, assertion.id)
            if k["tamper"]:
                xml = tamper_mail(xml)
            key_name, enc_cert = enc_certs[0]
            wrapped, unwrapped = get_pem_wrapped_unwrapped(enc_cert)
            cert_file = make_temp(wrapped.encode("ascii"), decode=False)
            template = pre_encryption_part(
                msg_enc=ENC_ALGS[k["enc_alg"]][0],
                key_enc=KEY_ALGS[k["key_alg"]],
                key_name=key_name,
                encrypt_cert=unwrapped,
            )
            xml = sec.crypto.encrypt_assertion(xml, cert_file.name, template, key_type=ENC_ALGS[k["enc_alg"]][1])
            if k["sign_response"]:
                xml = sign(xml, CLS_RESPONSE, response.id)
        else:
            xml = str(response)
            if sign_assertion:
                xml = sign(xml, CLS_ASSERTION, assertion.id)
            if k["sign_response"]:
                xml = sign(xml, CLS_RESPONSE, response.id)
            if k["tamper"]:
                xml = tamper_mail(xml)
        return xml

    def idp_init(self, sp_id, relay_state):
        with self.lock:
            if sp_id not in self.sp_xml:
                raise Refused(f"unknown SP {sp_id!r}: POST its metadata to /_sp first")
            acs = self._pick_acs(sp_id)
            saved = self.knobs
            if saved["in_response_to"] is _UNSET:
                self.knobs = dict(saved, in_response_to=None)
            try:
                return self.response_form(sp_id, acs, None, relay_state)
            finally:
                self.knobs = saved


# --------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    idp: IdP = None
    verbose = False
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("saml_idp: " + (fmt % args) + "\n")

    def _send(self, code, body, ctype="text/plain; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj, indent=1) + "\n", "application/json")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _guard(self, fn):
        try:
            fn()
        except Refused as e:
            if self.verbose:
                sys.stderr.write(f"saml_idp: refused: {e}\n")
            self._send(e.code, str(e) + "\n")
        except Exception as e:
            if self.verbose:
                traceback.print_exc()
            self._send(500, f"internal error: {e!r}\n")

    def do_GET(self):
        self._guard(self._get)

    def do_POST(self):
        self._guard(self._post)

    def _get(self):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/metadata":
            rollover = q.get("rollover") in ("1", "true")
            self._send(200, self.idp.metadata(rollover), "application/samlmetadata+xml")
        elif url.path == "/sso/redirect":
            form = self.idp.handle_authn_request(
                BINDING_HTTP_REDIRECT,
                q.get("SAMLRequest"),
                q.get("RelayState"),
                raw_query=url.query,
                has_sig_param="Signature" in q,
                sigalg=q.get("SigAlg"),
            )
            self._send(200, form, "text/html; charset=utf-8")
        elif url.path == "/idp-init":
            if not q.get("sp"):
                raise Refused("missing ?sp=ENTITYID")
            self._send(200, self.idp.idp_init(q["sp"], q.get("relay_state")), "text/html; charset=utf-8")
        elif url.path == "/_last":
            with self.idp.lock:
                self._json(200, self.idp.last)
        elif url.path == "/_control":
            with self.idp.lock:
                self._json(200, self.idp.knobs_json())
        else:
            self._send(404, "not found\n")

    def _post(self):
        url = urllib.parse.urlsplit(self.path)
        body = self._body()
        if url.path == "/sso/post":
            q = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
            form = self.idp.handle_authn_request(
                BINDING_HTTP_POST, q.get("SAMLRequest"), q.get("RelayState"), sigalg=None
            )
            self._send(200, form, "text/html; charset=utf-8")
        elif url.path == "/_sp":
            eid = self.idp.load_sp(body.decode("utf-8"))
            self._json(200, {"loaded": eid, "sps": sorted(self.idp.sp_xml)})
        elif url.path == "/_control":
            try:
                obj = json.loads(body or b"{}")
            except ValueError as e:
                raise Refused(f"body is not JSON: {e}")
            if not isinstance(obj, dict):
                raise Refused("body must be a JSON object")
            self._json(200, self.idp.set_knobs(obj))
        else:
            self._send(404, "not found\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True, help="keys live here (created once, then reused)")
    ap.add_argument("--sp-metadata", help="SP metadata XML file to load at start")
    ap.add_argument("--verbose", action="store_true", help="log requests and errors to stderr")
    args = ap.parse_args()

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    os.makedirs(args.dir, exist_ok=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    idp = IdP(base, args.dir, args.verbose)
    if args.sp_metadata:
        try:
            with open(args.sp_metadata, encoding="utf-8") as f:
                idp.load_sp(f.read())
        except (OSError, Refused) as e:
            sys.exit(f"saml_idp.py: --sp-metadata {args.sp_metadata}: {e}")
    Handler.idp = idp
    Handler.verbose = args.verbose
    sys.stdout.write(f"READY {base}\n")
    sys.stdout.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
