#!/usr/bin/env python3
"""Self-test of saml_idp.py: pysaml2's own Saml2Client stands in for the SP.

    conformance/.venv/bin/python conformance/saml_sp_check.py [--keep DIR]

Starts saml_idp.py on a free loopback port, loads an SP (signing AND encryption KeyDescriptors,
AuthnRequestsSigned="true", want_assertions_signed) and runs one scenario per line:
    PASS|FAIL  name: what happened
Exits 0 when every scenario behaved as expected. Needs xmlsec1 on PATH.
"""

import argparse
import base64
import datetime
import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

warnings.filterwarnings("ignore", message=r".*has been moved to cryptography\.hazmat\.decrepit.*")
logging.disable(logging.CRITICAL)  # pysaml2 logs every refused signature at ERROR level

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # noqa: E402
from saml2.client import Saml2Client  # noqa: E402
from saml2.config import SPConfig  # noqa: E402
from saml2.metadata import entity_descriptor  # noqa: E402
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def keypair(directory, stem):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"saml_sp_check {stem}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    kp, cp = os.path.join(directory, stem + ".key"), os.path.join(directory, stem + ".crt")
    with open(kp, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def http(method, url, data=None, ctype=None):
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


class Check:
    def __init__(self, tmp):
        self.tmp = tmp
        self.failures = 0
        self.count = 0
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "saml_idp.py"), "--port", "0", "--dir", os.path.join(tmp, "idp")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise SystemExit(f"saml_idp.py did not start: {line!r}")
        self.startup = time.monotonic() - t0
        self.base = line.split(" ", 1)[1]
        self.idp_id = self.base + "/metadata"
        self.idp_md = http("GET", self.base + "/metadata")[1]
        self.idp_md_rollover = http("GET", self.base + "/metadata?rollover=1")[1]
        self.sign_key = keypair(tmp, "sp-signing")
        self.enc_key = keypair(tmp, "sp-encryption")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    # -- SP side ---------------------------------------------------------------------------

    def client(self, entity_id="http://sp.check.test/metadata", sign_key=None, idp_md=None):
        kf, cf = sign_key or self.sign_key
        ekf, ecf = self.enc_key
        conf = SPConfig()
        conf.load(
            {
                "entityid": entity_id,
                "service": {
                    "sp": {
                        "endpoints": {
                            "assertion_consumer_service": [("http://sp.check.test/acs", BINDING_HTTP_POST)],
                        },
                        "authn_requests_signed": True,
                        "want_assertions_signed": True,
                        "want_response_signed": False,
                        "allow_unsolicited": True,
                        "name_id_format": [EMAIL],
                    }
                },
                "key_file": kf,
                "cert_file": cf,
                "encryption_keypairs": [{"key_file": ekf, "cert_file": ecf}],
                "xmlsec_binary": shutil.which("xmlsec1"),
                "metadata": {"inline": [idp_md or self.idp_md]},
                "accepted_time_diff": 30,
                "allow_unknown_attributes": True,  # keep "mail", "groups"... (basic NameFormat) in ava
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
            }
        )
        return Saml2Client(conf)

    def load_sp(self, client):
        md = str(entity_descriptor(client.config))
        assert 'use="encryption"' in md and 'use="signing"' in md and 'AuthnRequestsSigned="true"' in md, md
        st, body = http("POST", self.base + "/_sp", md.encode(), "application/samlmetadata+xml")
        assert st == 200, body

    def control(self, **knobs):
        st, body = http("POST", self.base + "/_control", json.dumps(knobs).encode(), "application/json")
        assert st == 200, body

    @staticmethod
    def form(page):
        fields = dict(re.findall(r'name="(SAMLResponse|RelayState|SAMLRequest)" value="([^"]*)"', page))
        action = re.search(r'action="([^"]*)"', page)
        return html.unescape(action.group(1)) if action else None, {k: html.unescape(v) for k, v in fields.items()}

    def login(self, client, binding=BINDING_HTTP_REDIRECT, relay_state="rs-42"):
        """SP-initiated: AuthnRequest to the IdP, returns (status, idp page, request id)."""
        reqid, info = client.prepare_for_authenticate(
            entityid=self.idp_id, relay_state=relay_state, binding=binding, sigalg=SIG_RSA_SHA256
        )
        if binding == BINDING_HTTP_REDIRECT:
            loc = dict(info["headers"])["Location"]
            st, page = http("GET", loc)
        else:
            action, fields = self.form(info["data"])
            st, page = http(
                "POST", action, urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
            )
        return st, page, reqid

    def consume(self, client, page, reqid):
        """Returns (accepted, detail, xml)."""
        action, fields = self.form(page)
        xml = base64.b64decode(fields["SAMLResponse"]).decode("utf-8")
        outstanding = {reqid: "/"} if reqid else {}
        try:
            resp = client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, outstanding)
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"[:160], xml, fields
        if resp is None:
            return False, "parse_authn_request_response returned None", xml, fields
        if resp.name_id is None:
            return False, f"no NameID in the parsed response ({type(resp).__name__})", xml, fields
        return True, f"NameID {resp.name_id.text}, ava {dict(sorted(resp.ava.items()))}", xml, fields

    def report(self, name, ok, detail):
        self.count += 1
        if not ok:
            self.failures += 1
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    def scenario(self, name, client, knobs, expect_accept, xml_must=(), xml_must_not=(), binding=BINDING_HTTP_REDIRECT):
        self.control(**knobs)
        st, page, reqid = self.login(client, binding)
        if st != 200:
            self.report(name, False, f"IdP answered {st}: {page.strip()[:160]}")
            return None
        accepted, detail, xml, fields = self.consume(client, page, reqid)
        problems = [f"XML lacks {m!r}" for m in xml_must if m not in xml]
        problems += [f"XML has {m!r}" for m in xml_must_not if m in xml]
        if fields.get("RelayState") != "rs-42":
            problems.append(f"RelayState {fields.get('RelayState')!r}")
        ok = accepted == expect_accept and not problems
        verdict = "ACCEPTED" if accepted else "REJECTED"
        self.report(name, ok, f"{verdict} ({detail})" + (f" PROBLEMS: {problems}" if problems else ""))
        return xml


def xmlsec_decrypt_verify(xml, enc_key, idp_crt, tmp):
    """Decrypt with xmlsec1 and verify the assertion signature in-document (the non-self-contained
    form that pysaml2's own SP cannot read)."""
    src = os.path.join(tmp, "enc.xml")
    dec = os.path.join(tmp, "dec.xml")
    with open(src, "w") as f:
        f.write(xml)
    r = subprocess.run(
        ["xmlsec1", "--decrypt", "--privkey-pem", enc_key, "--output", dec, src], capture_output=True, text=True
    )
    if r.returncode != 0:
        return False, "decrypt failed: " + r.stderr.strip()[-200:]
    r = subprocess.run(
        [
            "xmlsec1", "--verify", "--pubkey-cert-pem", idp_crt,
            "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--node-xpath", "//*[local-name()='Assertion']/*[local-name()='Signature']", dec,
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return False, "assertion signature does not verify: " + r.stderr.strip()[-200:]
    return True, "xmlsec1 decrypted it and verified the assertion signature"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="use this directory instead of a temporary one and keep it")
    args = ap.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix="saml_sp_check.")
    os.makedirs(tmp, exist_ok=True)
    c = Check(tmp)
    try:
        print(f"saml_idp.py READY after {c.startup:.2f}s at {c.base}", flush=True)
        sp = c.client()
        c.load_sp(sp)

        # 1. Defaults: signed Response and signed Assertion, rsa-sha256.
        c.scenario(
            "default", sp, {}, True,
            xml_must=["xmldsig-more#rsa-sha256", "xmlenc#sha256", "alice@acme.test"],
            xml_must_not=["xmldsig#rsa-sha1"],
        )
        st, last = http("GET", c.base + "/_last")
        last = json.loads(last)
        ok = last.get("request_signed_valid") is True and last.get("binding") == "HTTP-Redirect" and last.get(
            "relay_state"
        ) == "rs-42" and last.get("acs") == "http://sp.check.test/acs" and last.get("request_id")
        c.report("_last after redirect", bool(ok), json.dumps(last, sort_keys=True)[:200])

        # 2. Unsigned assertion: one signature only (the Response's); this SP wants signed assertions.
        xml = c.scenario("sign_assertion=false", sp, {"sign_assertion": False}, False)
        if xml is not None:
            n = xml.count("SignatureValue>") // 2
            c.report("sign_assertion=false XML", n == 1, f"{n} signature(s) in the response")

        # 3. Encrypted assertion, AES-128-CBC (pysaml2's SP needs the self-contained form).
        c.scenario(
            "encrypt aes128-cbc (self-contained)", sp,
            {"encrypt_assertion": True, "enc_self_contained": True}, True,
            xml_must=["EncryptedAssertion", "xmlenc#aes128-cbc", "rsa-oaep-mgf1p"],
            xml_must_not=["tripledes", "alice@acme.test"],
        )
        for alg, uri in (
            ("aes256-cbc", "xmlenc#aes256-cbc"),
            ("aes128-gcm", "xmlenc11#aes128-gcm"),
            ("tripledes-cbc", "xmlenc#tripledes-cbc"),
        ):
            c.scenario(
                f"encrypt {alg} (self-contained)", sp,
                {"encrypt_assertion": True, "enc_self_contained": True, "enc_alg": alg, "sign_response": False}, True,
                xml_must=[uri],
            )
        # Default (non-self-contained) form: checked with xmlsec1 itself.
        c.control(encrypt_assertion=True)
        st, page, reqid = c.login(sp)
        if st == 200:
            _, fields = c.form(page)
            xml = base64.b64decode(fields["SAMLResponse"]).decode()
            ok, detail = xmlsec_decrypt_verify(xml, c.enc_key[0], os.path.join(tmp, "idp", "signing.crt"), tmp)
            c.report("encrypt aes128-cbc (default form) via xmlsec1", ok and "xmlenc#aes128-cbc" in xml, detail)
        else:
            c.report("encrypt aes128-cbc (default form) via xmlsec1", False, f"IdP answered {st}: {page[:160]}")

        # 4. SHA-1 on request.
        c.scenario(
            "sig_alg=rsa-sha1", sp, {"sig_alg": "rsa-sha1"}, True,
            xml_must=["xmldsig#rsa-sha1", "xmldsig#sha1"], xml_must_not=["rsa-sha256"],
        )
        # 5. Signed by a key that is not in the IdP metadata.
        c.scenario("wrong_key", sp, {"wrong_key": True}, False)
        # 6. Not yet valid.
        c.scenario("not_before_offset=600", sp, {"not_before_offset": 600}, False)
        c.scenario("not_on_or_after_offset=-120", sp, {"not_on_or_after_offset": -120}, False)
        c.scenario("tamper", sp, {"tamper": True}, False)
        c.scenario(
            "tamper inside the encrypted assertion", sp,
            {"tamper": True, "encrypt_assertion": True, "enc_self_contained": True}, False,
        )
        c.scenario("audience=urn:someone-else", sp, {"audience": "urn:someone-else"}, False)
        c.scenario("status=authn_failed", sp, {"status": "authn_failed"}, False, xml_must=["AuthnFailed"])
        c.scenario(
            "user/attributes", sp,
            {"user": "bob@acme.test", "attributes": {"mail": ["bob@acme.test"], "groups": ["a", "b"]}}, True,
            xml_must=["bob@acme.test"], xml_must_not=["alice"],
        )

        # 7. IdP-initiated (unsolicited) response.
        c.control()
        st, page = http("GET", c.base + "/idp-init?" + urllib.parse.urlencode({"sp": sp.config.entityid, "relay_state": "x"}))
        if st == 200:
            accepted, detail, xml, fields = c.consume(sp, page, None)
            ok = accepted and "InResponseTo" not in xml and fields.get("RelayState") == "x"
            c.report("idp-init", ok, ("ACCEPTED " if accepted else "REJECTED ") + detail)
        else:
            c.report("idp-init", False, f"IdP answered {st}: {page[:160]}")

        # 8. HTTP-POST binding for the AuthnRequest (XML-signed).
        c.scenario("POST binding", sp, {}, True, binding=BINDING_HTTP_POST)
        last = json.loads(http("GET", c.base + "/_last")[1])
        c.report(
            "_last after POST",
            last.get("binding") == "HTTP-POST" and last.get("request_signed_valid") is True,
            json.dumps({k: last.get(k) for k in ("binding", "request_signed_valid", "relay_state")}),
        )

        # Request signatures: a broken one and a missing one are refused with 400.
        c.control()
        reqid, info = sp.prepare_for_authenticate(entityid=c.idp_id, relay_state="rs", sigalg=SIG_RSA_SHA256)
        loc = dict(info["headers"])["Location"]
        bad = re.sub(r"(Signature=)([A-Za-z0-9%])", lambda m: m.group(1) + ("B" if m.group(2) != "B" else "C"), loc)
        st, body = http("GET", bad)
        last = json.loads(http("GET", c.base + "/_last")[1])
        c.report("bad redirect signature", st == 400 and last.get("request_signed_valid") is False, f"{st} {body.strip()[:120]}")
        unsigned = re.sub(r"&(SigAlg|Signature)=[^&]*", "", loc)
        st, body = http("GET", unsigned)
        c.report("unsigned request (AuthnRequestsSigned)", st == 400, f"{st} {body.strip()[:120]}")

        # Key rollover: the SP trusts both IdP certs, the IdP signs with the second one.
        sp_roll = c.client(entity_id="http://sp-rollover.check.test/metadata", idp_md=c.idp_md_rollover)
        c.load_sp(sp_roll)
        c.scenario("use_second_key with rollover metadata", sp_roll, {"use_second_key": True}, True)
        c.scenario("use_second_key without rollover metadata", sp, {"use_second_key": True}, False)

        # Re-loading the SP metadata really replaces it: new signing key under the same entityID.
        new_key = keypair(tmp, "sp-signing-2")
        sp_new = c.client(sign_key=new_key)
        c.load_sp(sp_new)
        c.control()
        st, _page, _ = c.login(sp_new)
        st_old, _page_old, _ = c.login(sp)
        c.report("SP metadata replaced", st == 200 and st_old == 400, f"new key -> {st}, old key -> {st_old}")
    finally:
        c.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{c.count - c.failures} passed, {c.failures} failed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
