//! Employee cards against a real slapd: a device (service client allowed the card grant)
//! signs people in at the token endpoint. Unknown cards on-boarded (or refused with
//! on-boarding off), known cards checked again at each use (owner deleted or disabled →
//! refused), one badge in every reader form, PINs with lockout, the 24-hour offline
//! fallback at its edges, the kiosk page, and no card number in plain text anywhere in
//! the store. Both stores.

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;
use crate::slapd::{self, Slapd, ALICE, BASE_DN, BOB, SVC_DN, SVC_PASSWORD};
use lanyard::ldap::cards::{CardFormat, PolicyChange};
use lanyard::ldap::server::NewServer;
use lanyard::oauth::client::{ClientKind, CARD_GRANT};

both_stores!(
    unknown_cards_are_onboarded_and_known_cards_sign_in_in_every_form,
    owner_deleted_or_disabled_is_refused_at_the_next_use,
    pin_is_required_and_locks,
    offline_fallback_holds_for_24_hours_then_stops,
    no_card_number_is_stored_in_plain_text,
);

struct Device {
    app: TestApp,
    dir: Slapd,
    secret: String,
}

async fn setup(kind: StoreKind, policy: PolicyChange) -> Device {
    let dir = Slapd::start();
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let map = [("mail", "email"), ("cn", "display_name"), ("departmentNumber", "department")]
        .into_iter()
        .map(|(a, f)| (a.to_string(), f.to_string()))
        .collect();
    let n = NewServer {
        url: dir.ldap_url(),
        base_dn: BASE_DN.into(),
        bind_dn: Some(SVC_DN.into()),
        bind_password: Some(SecretString::from(SVC_PASSWORD.to_string())),
        user_filter: Some("(uid={username})".into()),
        card_attribute: Some("badgeNumber,employeeNumber".into()),
        attribute_map: Some(map),
        connect_timeout_ms: Some(1000),
        operation_timeout_ms: Some(1000),
        ..Default::default()
    };
    app.admin().add_ldap_server(&app.state.directory, "acme", n).await.unwrap();
    app.admin().set_card_policy("acme", policy).await.unwrap();
    let mut c = crate::admin_api::new_client("printer-1", ClientKind::Service, &["openid", "email"]);
    c.grant_types = Some(vec![CARD_GRANT.into()]);
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", c).await.unwrap();
    Device { app, dir, secret: secret.unwrap() }
}

fn hex_policy(onboarding: bool) -> PolicyChange {
    PolicyChange {
        onboarding: Some(onboarding),
        reader_format: Some(CardFormat::Hex),
        directory_format: Some(CardFormat::Hex),
        ..Default::default()
    }
}

impl Device {
    async fn swipe(&self, card: &str, pin: Option<&str>) -> (StatusCode, Value) {
        let mut form = vec![("grant_type", CARD_GRANT), ("card", card), ("scope", "openid email")];
        if let Some(p) = pin {
            form.push(("pin", p));
        }
        let r = reqwest::Client::new()
            .post(format!("{}/t/acme/token", self.app.base))
            .basic_auth("printer-1", Some(&self.secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
    async fn last_signin(&self) -> (String, Option<String>) {
        let t = self.app.tenant_by_slug("acme").await;
        let e = self.app.audit(&t).await.into_iter().find(|e| e.event == "signin").unwrap();
        (e.outcome, e.reason)
    }
    async fn sub_of(&self, token: &Value) -> String {
        let id = token["id_token"].as_str().expect("an ID token");
        let payload = id.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(claims["amr"].as_array().unwrap().iter().any(|a| a == "card"), "{claims}");
        claims["sub"].as_str().unwrap().to_string()
    }
}

async fn unknown_cards_are_onboarded_and_known_cards_sign_in_in_every_form(kind: StoreKind) {
    let d = setup(kind, hex_policy(false)).await;
    // On-boarding off: the directory knows the card, Lanyard does not take it.
    let (status, body) = d.swipe("04a2b3c4d5e6f7", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert_eq!(d.last_signin().await.1.as_deref(), Some("unknown_card"));
    // A card nobody holds.
    d.app.admin().set_card_policy("acme", hex_policy(true)).await.unwrap();
    let (status, _) = d.swipe("DEADBEEF01", None).await;
    assert_eq!(status, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("unknown_card"));
    // On-boarding on: the owner is imported and signed in, with an ID token.
    let (status, body) = d.swipe("04a2b3c4d5e6f7", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "a device gets no refresh token");
    let alice = d.app.user_by_email(ALICE.mail).await;
    assert_eq!(d.sub_of(&body).await, alice.id);
    assert_eq!(alice.display_name.as_deref(), Some(ALICE.cn));
    assert_eq!(d.last_signin().await, ("success".into(), None));
    // The success is recorded with the grant; a scope the device may not have gets no
    // grant, and the card's success is recorded all the same.
    let t = d.app.tenant_by_slug("acme").await;
    let successes = || async {
        d.app.audit(&t).await.into_iter().filter(|e| e.event == "signin" && e.outcome == "success").count()
    };
    let before = successes().await;
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/token", d.app.base))
        .basic_auth("printer-1", Some(&d.secret))
        .form(&[("grant_type", CARD_GRANT), ("card", "04a2b3c4d5e6f7"), ("scope", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    assert_eq!(successes().await, before + 1);
    // Known now; every reader form of the same badge is the same card.
    for form in ["04A2B3C4D5E6F7", "0x04A2B3C4D5E6F7", "4a2b3c4d5e6f7", "04:A2:B3:C4:D5:E6:F7"] {
        let (status, body) = d.swipe(form, None).await;
        assert_eq!(status, 200, "{form}: {body}");
        assert_eq!(d.sub_of(&body).await, alice.id, "{form}");
    }
    // A second card attribute: bob's employee number (1002) is a card too.
    let (status, body) = d.swipe("1002", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.swipe("beef", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.sub_of(&body).await, d.app.user_by_email(BOB.mail).await.id);
    // The access token works at userinfo.
    let info: Value = reqwest::Client::new()
        .get(format!("{}/t/acme/userinfo", d.app.base))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], BOB.mail);
    // Malformed and foreign clients.
    let (status, body) = d.swipe("not-hex!", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let other = crate::admin_api::new_client("kiosk-2", ClientKind::Service, &["openid"]);
    let (_, secret) =
        d.app.admin().create_client(&d.app.state.keys, &d.app.state.client_secrets, "acme", other).await.unwrap();
    let r: Value = reqwest::Client::new()
        .post(format!("{}/t/acme/token", d.app.base))
        .basic_auth("kiosk-2", secret.as_deref())
        .form(&[("grant_type", CARD_GRANT), ("card", "04a2b3c4d5e6f7")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "unauthorized_client", "{r}");
    // The kiosk page is off by default, and on only with PINs.
    let b = d.app.browser();
    assert_eq!(b.get("/t/acme/card/login").await.status(), 404);
    let kiosk = PolicyChange { kiosk_page: Some(true), ..Default::default() };
    assert!(d.app.admin().set_card_policy("acme", kiosk.clone()).await.is_err(), "no kiosk page without PINs");
    let kiosk = PolicyChange { kiosk_page: Some(true), pin_required: Some(true), ..Default::default() };
    d.app.admin().set_card_policy("acme", kiosk).await.unwrap();
    d.app.admin().set_card_pin(ALICE.mail, "acme", &SecretString::from("8642".to_string())).await.unwrap();
    let csrf = b.csrf("/t/acme/card/login").await;
    let r = b.post_form("/t/acme/card/login", &[("csrf", &csrf), ("card", "04A2B3C4D5E6F7"), ("pin", "0000")]).await;
    assert_eq!(r.status(), 401);
    let csrf = b.csrf("/t/acme/card/login").await;
    let r = b.post_form("/t/acme/card/login", &[("csrf", &csrf), ("card", "04A2B3C4D5E6F7"), ("pin", "8642")]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/t/acme/account");
    let csrf = b.csrf("/t/acme/card/login").await;
    let r = b.post_form("/t/acme/card/login", &[("csrf", &csrf), ("card", "FFFF0000"), ("pin", "8642")]).await;
    assert_eq!(r.status(), 401);
    // The ID token says a PIN was checked only when one was.
    let (status, body) = d.swipe("04A2B3C4D5E6F7", Some("8642")).await;
    assert_eq!(status, 200, "{body}");
    let id = crate::oauth::claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], serde_json::json!(["card", "pin"]));
}

async fn owner_deleted_or_disabled_is_refused_at_the_next_use(kind: StoreKind) {
    let d = setup(kind, hex_policy(true)).await;
    assert_eq!(d.swipe(ALICE.badge_number, None).await.0, 200);
    assert_eq!(d.swipe(BOB.badge_number, None).await.0, 200);
    // Bob is disabled in the directory (AD bit 2): his card stops at its next use.
    d.dir
        .modify(&format!("dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n", BOB.dn));
    let (status, body) = d.swipe(BOB.badge_number, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(d.last_signin().await.1.as_deref(), Some("directory_disabled"));
    // Alice is deleted: her card is refused and forgotten.
    d.dir.delete(ALICE.dn);
    let (status, _) = d.swipe(ALICE.badge_number, None).await;
    assert_eq!(status, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("card_owner_gone"));
    let alice = d.app.user_by_email(ALICE.mail).await;
    assert!(d.app.admin().user_cards(&d.app.state.directory, ALICE.mail, "acme").await.unwrap().is_empty());
    // A disabled Lanyard user is refused by the gate even with a valid card.
    d.dir
        .modify(&format!("dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n", BOB.dn));
    assert_eq!(d.swipe(BOB.badge_number, None).await.0, 200);
    d.app.admin().set_user_disabled(BOB.mail, Some("acme"), true).await.unwrap();
    assert_eq!(d.swipe(BOB.badge_number, None).await.0, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("disabled"), "the gate says why");
    // The daily sync drops cards whose holder left.
    let _ = alice;
    let synced = d.app.admin().sync_cards(&d.app.state.directory, "acme").await.unwrap();
    assert_eq!(synced, serde_json::json!({"kept": 1, "dropped": 0}), "bob's card is still his in the directory");
    d.dir.delete(BOB.dn);
    let synced = d.app.admin().sync_cards(&d.app.state.directory, "acme").await.unwrap();
    assert_eq!(synced, serde_json::json!({"kept": 0, "dropped": 1}));
}

async fn pin_is_required_and_locks(kind: StoreKind) {
    let mut p = hex_policy(true);
    p.pin_required = Some(true);
    let d = setup(kind, p).await;
    let (status, body) = d.swipe(ALICE.badge_number, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    assert_eq!(d.last_signin().await.1.as_deref(), Some("pin_missing"));
    // A card whose holder was never imported has no PIN: refused, and nobody is imported.
    assert_eq!(d.swipe(ALICE.badge_number, Some("4711")).await.0, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("pin_not_set"));
    let email = lanyard::user::Email::parse(ALICE.mail).unwrap();
    assert!(lanyard::user::find_by_email(&d.app.state.store, &email).await.unwrap().is_none());
    // The admin imports her (here: her first directory sign-in) and sets the PIN.
    let n = PolicyChange { pin_required: Some(false), ..Default::default() };
    d.app.admin().set_card_policy("acme", n).await.unwrap();
    assert_eq!(d.swipe(ALICE.badge_number, None).await.0, 200);
    d.app
        .admin()
        .set_card_policy("acme", PolicyChange { pin_required: Some(true), ..Default::default() })
        .await
        .unwrap();
    d.app.admin().set_card_pin(ALICE.mail, "acme", &SecretString::from("4711".to_string())).await.unwrap();
    assert!(d.app.admin().set_card_pin(ALICE.mail, "acme", &SecretString::from("1".to_string())).await.is_err());
    assert_eq!(d.swipe(ALICE.badge_number, Some("4711")).await.0, 200);
    for i in 1..=4 {
        assert_eq!(d.swipe(ALICE.badge_number, Some("0000")).await.0, 400);
        assert_eq!(d.last_signin().await.1.as_deref(), Some("bad_pin"), "attempt {i}");
    }
    assert_eq!(d.swipe(ALICE.badge_number, Some("0000")).await.0, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("bad_pin_now_locked"));
    assert_eq!(d.swipe(ALICE.badge_number, Some("4711")).await.0, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("pin_locked"));
    d.app.clock.advance(15 * 60);
    assert_eq!(d.swipe(ALICE.badge_number, Some("4711")).await.0, 200);
    // A card nobody holds, with a PIN: refused after the same hashing work as a wrong PIN,
    // so the time an answer takes does not tell which numbers are employees' cards.
    let hashed = d.app.state.hasher.completed();
    assert_eq!(d.swipe("DEADBEEF01", Some("4711")).await.0, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("unknown_card"));
    assert_eq!(d.app.state.hasher.completed(), hashed + 1, "an unknown card costs one PIN verification");
    let hashed = d.app.state.hasher.completed();
    assert_eq!(d.swipe(ALICE.badge_number, Some("0000")).await.0, 400);
    assert_eq!(d.app.state.hasher.completed(), hashed + 1, "as a wrong PIN does");
}

async fn offline_fallback_holds_for_24_hours_then_stops(kind: StoreKind) {
    let mut d = setup(kind, hex_policy(true)).await;
    assert_eq!(d.swipe(ALICE.badge_number, None).await.0, 200);
    d.dir.stop();
    // An unknown card cannot be looked up while the directory is away.
    let (status, _) = d.swipe(BOB.badge_number, None).await;
    assert_eq!(status, 500);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("directory_unavailable"));
    d.app.clock.advance(23 * 3600 + 59 * 60);
    let (status, body) = d.swipe(ALICE.badge_number, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.last_signin().await, ("success".into(), Some("offline_fallback".into())));
    d.app.clock.advance(2 * 60);
    let (status, _) = d.swipe(ALICE.badge_number, None).await;
    assert_eq!(status, 400);
    assert_eq!(d.last_signin().await.1.as_deref(), Some("offline_expired"));
    // The directory is back: the card works again and the clock restarts.
    // (Every server being marked down, all are tried again at once.)
    d.dir.restart();
    assert_eq!(d.swipe(ALICE.badge_number, None).await.0, 200);
    // A tenant can shorten the window.
    d.app
        .admin()
        .set_card_policy("acme", PolicyChange { offline_seconds: Some(3600), ..Default::default() })
        .await
        .unwrap();
    assert!(d
        .app
        .admin()
        .set_card_policy("acme", PolicyChange { offline_seconds: Some(25 * 3600), ..Default::default() })
        .await
        .is_err());
}

async fn no_card_number_is_stored_in_plain_text(kind: StoreKind) {
    let d = setup(kind, hex_policy(true)).await;
    for card in [ALICE.badge_number, "0x0000BEEF", "1002"] {
        assert_eq!(d.swipe(card, None).await.0, 200, "{card}");
    }
    // Every form of every number swiped, and the directory's.
    let alice_dec = u128::from_str_radix(ALICE.badge_number, 16).unwrap().to_string();
    // (Only numbers long enough never to appear by chance in a random id or hash.)
    let needles = [
        ALICE.badge_number.to_string(),
        ALICE.badge_number.trim_start_matches('0').to_string(),
        alice_dec,
        BOB.badge_number.to_string(),
    ];
    // Every text cell of every table that could hold one.
    for table in ["cards", "audit_events", "ldap_accounts", "users", "card_pins", "ldap_contact", "oauth_grants"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(d.app.state.store.pool()).await.unwrap();
        let mut cells = 0;
        for row in rows {
            use sqlx::{Column, Row};
            for (i, col) in row.columns().iter().enumerate() {
                let Ok(Some(v)) = row.try_get::<Option<String>, _>(i) else { continue };
                cells += 1;
                for n in &needles {
                    assert!(!v.to_uppercase().contains(&n.to_uppercase()), "{table}.{} holds {n}: {v}", col.name());
                }
            }
        }
        assert!(table == "card_pins" || cells > 0, "{table}: no text cell was read");
    }
    // SQLite: not even in the file's bytes (database and write-ahead log).
    if kind == StoreKind::Sqlite {
        for f in ["lanyard.db", "lanyard.db-wal"] {
            let Ok(bytes) = std::fs::read(d.app.data_dir.join(f)) else { continue };
            let text = String::from_utf8_lossy(&bytes).to_uppercase();
            for n in &needles {
                assert!(!text.contains(&n.to_uppercase()), "{f} holds {n}");
            }
        }
    }
    // The admin can still read a person's card numbers.
    let cards = d.app.admin().user_cards(&d.app.state.directory, ALICE.mail, "acme").await.unwrap();
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0]["number"], ALICE.badge_number);
    assert_eq!(cards[0]["attribute"], "badgeNumber");
    let bob = d.app.admin().user_cards(&d.app.state.directory, BOB.mail, "acme").await.unwrap();
    assert_eq!(bob.len(), 2, "badge and employee number: {bob:?}");
    // The same through the admin API, and the PIN is write-only there.
    let token = crate::admin_api::service_token(&d.app, "acme", "ops", &["lanyard:admin"]).await;
    let http = reqwest::Client::new();
    let api = |p: &str| format!("{}/t/acme/admin/api{p}", d.app.base);
    let cards: Value =
        http.get(api("/users/alice@acme.test/cards")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(cards[0]["number"], ALICE.badge_number, "{cards}");
    let r = http
        .put(api("/users/alice@acme.test/card-pin"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"pin": "2468"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .put(api("/users/alice@acme.test/card-pin"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"pin": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let p: Value = http
        .patch(api("/card-policy"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"pin_required": true, "offline_seconds": 7200}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (p["pin_required"].clone(), p["offline_seconds"].clone()),
        (serde_json::json!(true), serde_json::json!(7200))
    );
    let r = http
        .patch(api("/card-policy"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reader_format": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "text readers with a hex directory cannot be compared");
    assert_eq!(d.swipe(ALICE.badge_number, Some("2468")).await.0, 200);
    // The PIN is hashed: nothing of it in the store.
    let phc: String =
        sqlx::query_scalar("SELECT phc FROM card_pins").fetch_one(d.app.state.store.pool()).await.unwrap();
    assert!(phc.starts_with("$argon2id$") && !phc.contains("2468"));
    let _ = slapd::USERS;
}
