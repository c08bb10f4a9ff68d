//! The admin console over HTTP: who may enter (the tenant's admins only, not across
//! tenants), CSRF on every action, the actions going through the service calls (audited),
//! and every section rendering. The browser and accessibility checks are in `browser.rs`.

use crate::both_stores;
use crate::helpers::*;

both_stores!(
    console_admits_only_the_tenants_admins,
    console_actions_need_csrf_and_are_audited,
    every_console_page_renders
);

pub const ADMIN: &str = "admin@lanyard.local";

/// A browser signed in as the bootstrap admin of `default`.
pub async fn admin_browser(app: &TestApp) -> Browser {
    let b = app.browser();
    assert_eq!(b.sign_in("default", ADMIN, ADMIN_PASSWORD).await.status(), 303);
    b
}

async fn console_admits_only_the_tenants_admins(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let pw = secrecy::SecretString::from(PASSWORD.to_string());
    app.admin().create_user("acme", "boss@acme.test", Some(&pw), true, false).await.unwrap();

    // Not signed in: to the sign-in page, coming back here.
    let anon = app.browser();
    let r = anon.get("/t/acme/admin/users").await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/t/acme/login?return_to=%2Ft%2Facme%2Fadmin"), "{}", location(&r));

    // A member is refused, pages and actions alike.
    let alice = app.browser();
    assert_eq!(alice.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    assert_eq!(alice.get("/t/acme/admin/overview").await.status(), 403);
    let csrf = alice.csrf("/t/acme/account").await;
    let r = alice.post_form("/t/acme/admin/users/create", &[("csrf", &csrf), ("email", "evil@acme.test")]).await;
    assert_eq!(r.status(), 403);
    assert!(app.admin().user_by_email("evil@acme.test", Some("acme")).await.is_err(), "nothing created");

    // acme's admin manages acme, and nothing of another tenant: `default`'s console sees no
    // session there, and acme's pages never show default's people.
    let boss = app.browser();
    assert_eq!(boss.sign_in("acme", "boss@acme.test", PASSWORD).await.status(), 303);
    assert_eq!(boss.get("/t/acme/admin/overview").await.status(), 200);
    assert_eq!(
        boss.get("/t/default/admin/overview").await.status(),
        303,
        "another tenant's console: not signed in there"
    );
    assert_eq!(boss.get(&format!("/t/acme/admin/users?email={ADMIN}")).await.status(), 404);
    let csrf = boss.csrf("/t/acme/admin/users").await;
    let r = boss.post_form("/t/default/admin/users/disable", &[("csrf", &csrf), ("email", ADMIN)]).await;
    assert!(r.status() == 303 || r.status() == 403, "{}", r.status());
    let r = boss.post_form("/t/acme/admin/users/disable", &[("csrf", &csrf), ("email", ADMIN)]).await;
    assert_eq!(r.status(), 404, "default's admin is not a user of acme");
    assert!(!app.user_by_email(ADMIN).await.disabled);
    // Tenants are managed only from the instance's first tenant.
    assert_eq!(boss.get("/t/acme/admin/tenants").await.status(), 403);
    let body = boss.get("/t/acme/admin/overview").await.text().await.unwrap();
    assert!(!body.contains("/admin/tenants\""), "no tenants link for acme's admin");
    let root = admin_browser(&app).await;
    assert_eq!(root.get("/t/default/admin/tenants").await.status(), 200);
}

async fn console_actions_need_csrf_and_are_audited(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = admin_browser(&app).await;
    // No token, a wrong one, another browser's: 403 and nothing changes.
    for token in ["", "garbage"] {
        let r = b.post_form("/t/default/admin/users/create", &[("csrf", token), ("email", "x@lanyard.local")]).await;
        assert_eq!(r.status(), 403, "csrf {token:?}");
    }
    let other = admin_browser(&app).await;
    let foreign = other.csrf("/t/default/admin/users").await;
    let r = b.post_form("/t/default/admin/users/create", &[("csrf", &foreign), ("email", "x@lanyard.local")]).await;
    assert_eq!(r.status(), 403);
    assert!(app.admin().user_by_email("x@lanyard.local", Some("default")).await.is_err());

    // With the page's token: created, shown, audited with the admin as actor.
    let csrf = b.csrf("/t/default/admin/users").await;
    let r = b
        .post_form(
            "/t/default/admin/users/create",
            &[
                ("csrf", &csrf),
                ("email", "carol@lanyard.local"),
                ("password", "a long enough password"),
                ("must_change", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("Created carol@lanyard.local."), "{body}");
    let tenant = app.tenant_by_slug("default").await;
    assert!(app.audit(&tenant).await.iter().any(|e| e.event == "admin.user.create" && e.actor == ADMIN));

    // A refused value is shown at its field and changes nothing.
    let r = b
        .post_form(
            "/t/default/admin/users/create",
            &[("csrf", &csrf), ("email", "dave@lanyard.local"), ("password", "short")],
        )
        .await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains(r#"id="new-user-password-error""#) && body.contains(r#"aria-invalid="true""#), "{body}");
    assert!(app.admin().user_by_email("dave@lanyard.local", Some("default")).await.is_err());

    // Disable, then sign out everywhere, then delete (which needs its box ticked).
    let r = b.post_form("/t/default/admin/users/disable", &[("csrf", &csrf), ("email", "carol@lanyard.local")]).await;
    assert_eq!(r.status(), 200);
    assert!(app.user_by_email("carol@lanyard.local").await.disabled);
    let r = b.post_form("/t/default/admin/users/delete", &[("csrf", &csrf), ("email", "carol@lanyard.local")]).await;
    assert_eq!(r.status(), 400);
    let r = b
        .post_form(
            "/t/default/admin/users/delete",
            &[("csrf", &csrf), ("email", "carol@lanyard.local"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(app.admin().user_by_email("carol@lanyard.local", Some("default")).await.is_err());
    let events: Vec<String> =
        app.audit(&tenant).await.into_iter().filter(|e| e.actor == ADMIN).map(|e| e.event).collect();
    for e in ["admin.user.create", "admin.user.disable", "admin.user.delete"] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    // An unknown action or section is a 404.
    assert_eq!(b.post_form("/t/default/admin/users/explode", &[("csrf", &csrf), ("email", ADMIN)]).await.status(), 404);
    assert_eq!(b.get("/t/default/admin/nothing").await.status(), 404);
}

async fn every_console_page_renders(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = admin_browser(&app).await;
    for s in lanyard_sections() {
        let r = b.get(&format!("/t/default/admin/{s}")).await;
        assert_eq!(r.status(), 200, "{s}");
        let body = r.text().await.unwrap();
        assert!(body.contains(r#"aria-current="page""#), "{s}: the section is marked in the navigation");
        assert!(!body.contains("{{") && !body.contains("{%"), "{s}");
    }
    assert_eq!(location(&b.get("/t/default/admin").await), "/t/default/admin/overview");
}

pub fn lanyard_sections() -> Vec<&'static str> {
    vec!["overview", "users", "policy", "idps", "ldap", "clients", "keys", "audit", "tenants"]
}
