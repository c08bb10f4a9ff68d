//! Issue 10, what client libraries expect: scopes granted and ignored as OIDC and RFC 6749
//! say, POST at the authorization endpoint, `response_mode=form_post`, RFC 8414 metadata
//! and discovery documents that match behaviour both ways (every advertised value is
//! walked), resource servers (RFC 8707 / RFC 9068), CORS for single-page apps, and native
//! `http://localhost:{port}` redirects (RFC 8252 §7.3).

use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{authorize_url, claims, code_for, header, pkce, query_of, NATIVE_REDIRECT};
use lanyard::oauth::client::ClientKind;

both_stores!(
    appauth_default_scopes_are_granted_or_ignored,
    authorize_takes_post,
    form_post_response_mode,
    metadata_matches_behaviour_both_ways,
    resource_servers_receive_tokens_meant_for_them,
    single_page_apps_get_cors_for_their_origins_only,
    native_localhost_redirects_with_any_port,
);

async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}{path}", app.base)).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn setup(kind: StoreKind) -> (TestApp, Browser) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    register(&app, "acme", new_client("workview", ClientKind::Native, &[NATIVE_REDIRECT])).await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    (app, b)
}

/// The code for an authorize request with these parameters (PKCE added).
async fn code_with(b: &Browser, client: &str, redirect: &str, params: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let res = b.get(&format!("/t/acme/authorize?{}", q.finish())).await;
    let loc = crate::helpers::location(&res);
    let code = query_of(&loc).get("code").cloned().unwrap_or_else(|| panic!("no code: {loc}"));
    (code, verifier)
}

async fn redeem(app: &TestApp, client: &str, redirect: &str, code: &str, verifier: &str) -> Value {
    let (s, t) = post(
        app,
        "/t/acme/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    t
}

/// Item 8: AppAuth's default `openid profile offline_access` on a native client; unknown
/// scopes are ignored; a non-permitted `offline_access` is ignored (OIDC Core §11).
async fn appauth_default_scopes_are_granted_or_ignored(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (code, v) = code_with(&b, "workview", NATIVE_REDIRECT, &[("scope", "openid profile offline_access")]).await;
    let t = redeem(&app, "workview", NATIVE_REDIRECT, &code, &v).await;
    assert_eq!(t["scope"], "openid profile offline_access");
    assert!(t["refresh_token"].is_string() && t["id_token"].is_string());

    let (code, v) = code_with(&b, "workview", NATIVE_REDIRECT, &[("scope", "openid frobnicate email")]).await;
    let t = redeem(&app, "workview", NATIVE_REDIRECT, &code, &v).await;
    assert_eq!(t["scope"], "openid email", "unknown scopes are ignored and the answer says what was granted");

    let mut no_refresh = new_client("kiosk", ClientKind::Native, &[NATIVE_REDIRECT]);
    no_refresh.grant_types = Some(vec!["authorization_code".into()]);
    register(&app, "acme", no_refresh).await;
    let (code, v) = code_with(&b, "kiosk", NATIVE_REDIRECT, &[("scope", "openid offline_access")]).await;
    let t = redeem(&app, "kiosk", NATIVE_REDIRECT, &code, &v).await;
    assert_eq!(t["scope"], "openid");
    assert!(t.get("refresh_token").is_none());

    // Nothing grantable at all: invalid_scope, back to the client.
    let url = authorize_url("workview", NATIVE_REDIRECT, Some(&pkce().1), &[])
        .replace("scope=openid+email", "scope=frobnicate");
    let res = b.get(&url).await;
    let loc = location(&res);
    assert!(loc.contains("error=invalid_scope"), "{loc}");
}

/// Item 9: OIDC Core §3.1.2.1: the authorization endpoint takes POST as well as GET.
async fn authorize_takes_post(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let res = b
        .post_form(
            "/t/acme/authorize",
            &[
                ("response_type", "code"),
                ("client_id", "workview"),
                ("redirect_uri", NATIVE_REDIRECT),
                ("scope", "openid"),
                ("state", "s-post"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    // It continues by GET (a top-level GET carries the SameSite=Lax session cookie that a
    // cross-site POST does not), and the GET answers as for any request.
    assert_eq!(res.status(), 303);
    let again = location(&res);
    assert!(again.starts_with("/t/acme/authorize?response_type=code&client_id=workview"), "{again}");
    let res = b.get(&again).await;
    let q = query_of(&location(&res));
    assert_eq!(q["state"], "s-post");
    redeem(&app, "workview", NATIVE_REDIRECT, &q["code"], &verifier).await;

    // Not signed in: a POSTed request waits behind the sign-in form like a GET one.
    let fresh = app.browser();
    let res = fresh
        .post_form(
            "/t/acme/authorize",
            &[
                ("response_type", "code"),
                ("client_id", "workview"),
                ("redirect_uri", NATIVE_REDIRECT),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let res = fresh.get(&location(&res)).await;
    let login = location(&res);
    assert!(login.starts_with("/t/acme/login?return_to=%2Ft%2Facme%2Fauthorize%3Fresponse_type%3Dcode"), "{login}");
    let res = fresh
        .post_raw("/t/acme/authorize", "application/x-www-form-urlencoded", b"client_id=a&client_id=b".to_vec())
        .await;
    assert_eq!(res.status(), 400, "strictly parsed");
}

/// Item 10: `response_mode=form_post` answers with an auto-submitting, escaped form under
/// a CSP that allows only our own script; an unsupported mode is refused, not replaced.
async fn form_post_response_mode(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let evil_state = "\"><script>alert(1)</script>";
    let url = authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("response_mode", "form_post")]).replace(
        "state=st-123",
        &format!("state={}", url::form_urlencoded::byte_serialize(evil_state.as_bytes()).collect::<String>()),
    );
    let res = b.get(&url).await;
    assert_eq!(res.status(), 200);
    let csp = res.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    let body = res.text().await.unwrap();
    assert!(body.contains(&format!("action=\"{NATIVE_REDIRECT}\"")), "{body}");
    assert!(!body.contains("<script>alert"), "state is escaped");
    assert!(body.contains("<script src=\"/static/form_post.js\"></script>"));
    let field = |name: &str| -> String {
        let start = body.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
        body[start..start + body[start..].find('"').unwrap()].to_string()
    };
    let code = field("code");
    assert_eq!(field("iss"), format!("{}/t/acme", app.base));
    redeem(&app, "workview", NATIVE_REDIRECT, &code, &verifier).await;
    let js = b.get("/static/form_post.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains(".submit()"));

    for mode in ["fragment", "web_message"] {
        let res =
            b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("response_mode", mode)])).await;
        assert_eq!(res.status(), 303);
        let q = query_of(&location(&res));
        assert_eq!(q["error"], "invalid_request", "{mode}");
        assert!(q["error_description"].contains("response_mode"));
        assert!(!q.contains_key("code"));
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// Item 11: RFC 8414 metadata at the path-insertion address; the documents say exactly
/// what works: every advertised value is exercised, and what is not advertised is refused.
async fn metadata_matches_behaviour_both_ways(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let iss = format!("{}/t/acme", app.base);
    let oidc: Value = b.get("/t/acme/.well-known/openid-configuration").await.json().await.unwrap();
    let res = b.get("/.well-known/oauth-authorization-server/t/acme").await;
    assert_eq!(res.status(), 200);
    let oauth: Value = res.json().await.unwrap();
    assert_eq!(oauth["issuer"], iss, "RFC 8414 §3.3: the issuer is the one whose path was inserted");
    assert_eq!(oauth, oidc);
    assert_eq!(b.get("/.well-known/oauth-authorization-server/t/nope").await.status(), 404);
    let m = oidc;
    assert_eq!(m["request_uri_parameter_supported"], false);
    assert_eq!(m["request_parameter_supported"], false);
    assert_eq!(m["claims_parameter_supported"], false);

    // Endpoints exist.
    for k in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    ] {
        let u = m[k].as_str().unwrap();
        assert!(u.starts_with(&iss), "{k}");
        let http = reqwest::Client::new();
        let post_only = ["token_endpoint", "introspection_endpoint", "revocation_endpoint"].contains(&k);
        let r = if post_only { http.post(u).form(&[("x", "y")]).send() } else { http.get(u).send() }.await.unwrap();
        assert_ne!(r.status(), 404, "{k}");
    }
    assert_eq!(strings(&m["response_types_supported"]), ["code"]);
    assert_eq!(strings(&m["code_challenge_methods_supported"]), ["S256"]);
    let res = b
        .get(&authorize_url(
            "workview",
            NATIVE_REDIRECT,
            None,
            &[("code_challenge", &pkce().1), ("code_challenge_method", "plain")],
        ))
        .await;
    assert_eq!(query_of(&location(&res))["error"], "invalid_request", "plain is not advertised and is refused");
    let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&pkce().1), &[("request_uri", "urn:x")])).await;
    assert_eq!(query_of(&location(&res))["error"], "request_uri_not_supported");
    let res = b
        .get(
            &authorize_url("workview", NATIVE_REDIRECT, Some(&pkce().1), &[("response_type", "token")])
                .replace("response_type=code&", ""),
        )
        .await;
    assert_eq!(query_of(&location(&res))["error"], "unsupported_response_type");

    // Response modes (form_post checked in detail elsewhere).
    for mode in strings(&m["response_modes_supported"]) {
        let (_, challenge) = pkce();
        let res =
            b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("response_mode", &mode)])).await;
        match mode.as_str() {
            "query" => assert!(query_of(&location(&res)).contains_key("code")),
            "form_post" => assert!(res.text().await.unwrap().contains("name=\"code\"")),
            other => panic!("advertised response mode {other} is not tested"),
        }
    }
    // Scopes: each advertised scope is granted when asked for.
    for scope in strings(&m["scopes_supported"]) {
        let (code, v) = code_with(&b, "workview", NATIVE_REDIRECT, &[("scope", &format!("openid {scope}"))]).await;
        let t = redeem(&app, "workview", NATIVE_REDIRECT, &code, &v).await;
        assert!(t["scope"].as_str().unwrap().split(' ').any(|s| s == scope), "scope {scope}: {t}");
    }
    // Prompt values.
    for p in strings(&m["prompt_values_supported"]) {
        let (_, challenge) = pkce();
        let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("prompt", &p)])).await;
        let loc = location(&res);
        match p.as_str() {
            "none" => assert!(query_of(&loc).contains_key("code"), "signed in: prompt=none answers at once"),
            "login" => assert!(loc.starts_with("/t/acme/login?"), "prompt=login asks again"),
            other => panic!("advertised prompt {other} is not tested"),
        }
    }
    // Claims: every advertised claim appears in the ID token or at userinfo.
    sqlx::query("UPDATE users SET display_name = 'Alice A.' WHERE email = 'alice@acme.test'")
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let (code, v) =
        code_with(&b, "workview", NATIVE_REDIRECT, &[("scope", "openid email profile"), ("nonce", "n1")]).await;
    let t = redeem(&app, "workview", NATIVE_REDIRECT, &code, &v).await;
    let idc = claims(t["id_token"].as_str().unwrap());
    let ui: Value = reqwest::Client::new()
        .get(format!("{iss}/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for c in strings(&m["claims_supported"]) {
        assert!(!idc[&c].is_null() || !ui[&c].is_null(), "advertised claim {c} is never issued: {idc} {ui}");
    }
    for c in idc.as_object().unwrap().keys().chain(ui.as_object().unwrap().keys()) {
        assert!(strings(&m["claims_supported"]).contains(c), "claim {c} is issued but not advertised");
    }
    // ID token signing algorithms.
    for alg in strings(&m["id_token_signing_alg_values_supported"]) {
        let id = format!("alg-{}", alg.to_lowercase());
        let mut c = new_client(&id, ClientKind::Native, &[NATIVE_REDIRECT]);
        c.id_token_alg = lanyard::keys::jws::Alg::parse(&alg);
        register(&app, "acme", c).await;
        let (code, v) = code_with(&b, &id, NATIVE_REDIRECT, &[("scope", "openid")]).await;
        let t = redeem(&app, &id, NATIVE_REDIRECT, &code, &v).await;
        assert_eq!(header(t["id_token"].as_str().unwrap())["alg"], alg.as_str());
    }
    // Grant types and client authentication methods, at the token, introspection and
    // revocation endpoints.
    assert_eq!(strings(&m["grant_types_supported"]), ["authorization_code", "refresh_token", "client_credentials"]);
    let mut web = new_client("portal", ClientKind::Web, &["https://portal.acme.test/cb"]);
    web.grant_types = Some(vec!["authorization_code".into(), "refresh_token".into(), "client_credentials".into()]);
    let secret = register(&app, "acme", web).await.unwrap();
    let http = reqwest::Client::new();
    for method in strings(&m["token_endpoint_auth_methods_supported"]) {
        let (client, redirect) =
            if method == "none" { ("workview", NATIVE_REDIRECT) } else { ("portal", "https://portal.acme.test/cb") };
        let (code, v) = code_with(&b, client, redirect, &[("scope", "openid")]).await;
        let send = |form: Vec<(&'static str, String)>, ep: &str| {
            let mut form = form;
            let mut req = http.post(format!("{iss}/{ep}"));
            match method.as_str() {
                "client_secret_basic" => req = req.basic_auth(client, Some(&secret)),
                "client_secret_post" => {
                    form.push(("client_id", client.into()));
                    form.push(("client_secret", secret.clone()));
                }
                "none" => form.push(("client_id", client.into())),
                other => panic!("advertised auth method {other} is not tested"),
            }
            req.form(&form).send()
        };
        let r = send(
            vec![
                ("grant_type", "authorization_code".into()),
                ("code", code),
                ("redirect_uri", redirect.into()),
                ("code_verifier", v),
            ],
            "token",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        let t: Value = r.json().await.unwrap();
        let rt = t["refresh_token"].as_str().unwrap().to_string();
        let r = send(vec![("grant_type", "refresh_token".into()), ("refresh_token", rt)], "token").await.unwrap();
        assert_eq!(r.status(), 200, "refresh_token with {method}");
        let t: Value = r.json().await.unwrap();
        let at = t["access_token"].as_str().unwrap().to_string();
        if strings(&m["introspection_endpoint_auth_methods_supported"]).contains(&method) {
            let r = send(vec![("token", at.clone())], "introspect").await.unwrap();
            assert_eq!(r.json::<Value>().await.unwrap()["active"], true, "introspect with {method}");
        }
        if strings(&m["revocation_endpoint_auth_methods_supported"]).contains(&method) {
            let rt = t["refresh_token"].as_str().unwrap().to_string();
            let r = send(vec![("token", rt)], "revoke").await.unwrap();
            assert_eq!(r.status(), 200, "revoke with {method}");
        }
        if method != "none" {
            let r = send(vec![("grant_type", "client_credentials".into())], "token").await.unwrap();
            assert_eq!(r.status(), 200, "client_credentials with {method}");
        }
    }
    let (s, v) = post(&app, "/t/acme/token", &[("grant_type", "password"), ("client_id", "workview")]).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("unsupported_grant_type")), "not advertised, not accepted");
}

/// Item 12: access tokens name the API they are for in `aud`; ID tokens keep the client.
async fn resource_servers_receive_tokens_meant_for_them(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    app.admin().create_resource("acme", "https://api.acme.test", &["orders:read".into()]).await.unwrap();
    app.admin().create_resource("acme", "https://hr.acme.test", &["people:read".into()]).await.unwrap();
    let mut c = new_client("shop", ClientKind::Native, &[NATIVE_REDIRECT]);
    c.scopes = Some(vec!["openid".into(), "orders:read".into(), "people:read".into()]);
    register(&app, "acme", c).await;

    let (code, v) = code_with(
        &b,
        "shop",
        NATIVE_REDIRECT,
        &[("scope", "openid orders:read people:read"), ("resource", "https://api.acme.test")],
    )
    .await;
    let t = redeem(&app, "shop", NATIVE_REDIRECT, &code, &v).await;
    let at = claims(t["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], "https://api.acme.test");
    assert_eq!(at["scope"], "openid orders:read", "another API's scope is not granted for this one");
    assert_eq!(claims(t["id_token"].as_str().unwrap())["aud"], "shop");
    // Refresh keeps the audience; naming another resource is refused.
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, v2) = post(
        &app,
        "/t/acme/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "shop"),
            ("refresh_token", rt),
            ("resource", "https://hr.acme.test"),
        ],
    )
    .await;
    assert_eq!((s, v2["error"].as_str()), (400, Some("invalid_target")));
    let (s, t2) =
        post(&app, "/t/acme/token", &[("grant_type", "refresh_token"), ("client_id", "shop"), ("refresh_token", rt)])
            .await;
    assert_eq!(s, 200, "{t2}");
    assert_eq!(claims(t2["access_token"].as_str().unwrap())["aud"], "https://api.acme.test");

    // An unknown resource: invalid_target, back to the client.
    let (_, challenge) = pkce();
    let res = b
        .get(&authorize_url("shop", NATIVE_REDIRECT, Some(&challenge), &[("resource", "https://unknown.acme.test")]))
        .await;
    assert_eq!(query_of(&location(&res))["error"], "invalid_target");

    // Without `resource`, scopes of exactly one API name it.
    let (code, v) = code_with(&b, "shop", NATIVE_REDIRECT, &[("scope", "openid people:read")]).await;
    let t = redeem(&app, "shop", NATIVE_REDIRECT, &code, &v).await;
    assert_eq!(claims(t["access_token"].as_str().unwrap())["aud"], "https://hr.acme.test");
    // Only OpenID scopes: the token is for the client itself (userinfo).
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&pkce().1)).await;
    assert!(!code.is_empty());

    // client_credentials with a resource.
    let mut svc = new_client("batch", ClientKind::Service, &[]);
    svc.scopes = Some(vec!["orders:read".into()]);
    let secret = register(&app, "acme", svc).await.unwrap();
    let (s, t) = post(
        &app,
        "/t/acme/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "batch"),
            ("client_secret", &secret),
            ("resource", "https://api.acme.test"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(claims(t["access_token"].as_str().unwrap())["aud"], "https://api.acme.test");
    let (s, t) = post(
        &app,
        "/t/acme/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "batch"),
            ("client_secret", &secret),
            ("resource", "https://nope.test"),
        ],
    )
    .await;
    assert_eq!((s, t["error"].as_str()), (400, Some("invalid_target")));
    // The admin API lists them.
    assert_eq!(app.admin().list_resources("acme").await.unwrap().len(), 2);
}

/// Item 14: spa clients; CORS on discovery, JWKS, token, userinfo and revoke for the
/// registered origins only.
async fn single_page_apps_get_cors_for_their_origins_only(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let origin = "https://app.acme.test";
    let mut spa = new_client("dashboard", ClientKind::Spa, &["https://app.acme.test/cb"]);
    spa.web_origins = vec![origin.into()];
    let created = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", spa).await.unwrap();
    assert!(created.1.is_none(), "a spa is public: no secret");
    assert_eq!(created.0.refresh_idle_seconds, lanyard::oauth::client::DEFAULT_SPA_REFRESH_IDLE_SECONDS);
    let http = reqwest::Client::new();
    for path in
        ["/t/acme/.well-known/openid-configuration", "/t/acme/jwks", "/.well-known/oauth-authorization-server/t/acme"]
    {
        let r = http.get(format!("{}{path}", app.base)).header("origin", origin).send().await.unwrap();
        assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), origin, "{path}");
        let r = http.get(format!("{}{path}", app.base)).header("origin", "https://evil.test").send().await.unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
    for path in ["/t/acme/token", "/t/acme/userinfo", "/t/acme/revoke"] {
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), origin, "preflight {path}");
        assert!(r.headers().get("access-control-allow-methods").unwrap().to_str().unwrap().contains("POST"));
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
            .header("origin", "https://evil.test")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("access-control-allow-origin").is_none(), "preflight {path} from elsewhere");
    }
    // The code flow from the browser app, PKCE mandatory.
    let (code, v) = code_with(&b, "dashboard", "https://app.acme.test/cb", &[("scope", "openid")]).await;
    let r = http
        .post(format!("{}/t/acme/token", app.base))
        .header("origin", origin)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "dashboard"),
            ("code", &code),
            ("redirect_uri", "https://app.acme.test/cb"),
            ("code_verifier", &v),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), origin);
    let t: Value = r.json().await.unwrap();
    let r = http
        .get(format!("{}/t/acme/userinfo", app.base))
        .header("origin", origin)
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), origin);
    // The same client called from another origin is refused.
    let r = http
        .post(format!("{}/t/acme/token", app.base))
        .header("origin", "https://evil.test")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "dashboard"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A spa without PKCE is refused at authorize.
    let res = b.get(&authorize_url("dashboard", "https://app.acme.test/cb", None, &[])).await;
    assert_eq!(query_of(&location(&res))["error"], "invalid_request");
}

/// Item 15: RFC 8252 §7.3 allows `http://localhost:{port}/path` for native apps.
async fn native_localhost_redirects_with_any_port(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    register(&app, "acme", new_client("desktop", ClientKind::Native, &["http://localhost/callback"])).await;
    let (code, v) = code_with(&b, "desktop", "http://localhost:51234/callback", &[("scope", "openid")]).await;
    redeem(&app, "desktop", "http://localhost:51234/callback", &code, &v).await;
    let res = b.get(&authorize_url("desktop", "http://localhost:51234/other", Some(&pkce().1), &[])).await;
    assert_eq!(res.status(), 400, "another path is not registered");
}
