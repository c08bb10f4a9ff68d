//! Lockout: exactly N failures lock, exactly T releases, a success resets, an admin
//! unlocks, and concurrent attempts keep an exact count.

use crate::both_stores;
use crate::helpers::*;

both_stores!(
    lock_at_exactly_n_and_release_at_exactly_t,
    success_resets_the_count,
    admin_unlock_releases_at_once,
    fifty_concurrent_wrong_passwords_leave_an_exact_count,
    tenant_policy_sets_threshold_and_duration,
);

async fn wrong(b: &Browser, email: &str) -> u16 {
    b.sign_in("acme", email, "wrong-password").await.status().as_u16()
}

async fn lock_at_exactly_n_and_release_at_exactly_t(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    for i in 1..=4 {
        assert_eq!(wrong(&b, "alice@acme.test").await, 401);
        let s = app.lock_state(&alice).await;
        assert_eq!((s.failed_count, s.locked_until), (i, None), "after {i} failures");
    }
    let t0 = app.now();
    assert_eq!(wrong(&b, "alice@acme.test").await, 401);
    let s = app.lock_state(&alice).await;
    assert_eq!((s.failed_count, s.locked_until), (5, Some(t0 + 15 * 60)), "the 5th failure locks for 15 minutes");

    // Locked: the right password gets the very same answer as a wrong one.
    let csrf = b.csrf("/t/acme/login").await;
    let locked_right =
        b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(locked_right.status(), 401);
    let locked_body = locked_right.text().await.unwrap();
    let wrong_body = b
        .post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", "another-wrong")])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(locked_body, wrong_body);
    assert_eq!(app.lock_state(&alice).await.failed_count, 5, "attempts while locked do not count");

    app.clock.advance(15 * 60 - 1);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 401, "one second before T: still locked");
    app.clock.advance(1);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303, "at exactly T: released");
    let s = app.lock_state(&alice).await;
    assert_eq!((s.failed_count, s.locked_until), (0, None));

    let events = app.audit(&tenant).await;
    assert_eq!(events.iter().filter(|e| e.event == "lockout").count(), 1);
    assert_eq!(
        events.iter().filter(|e| e.event == "signin" && e.reason.as_deref() == Some("account_locked")).count(),
        3
    );
}

async fn success_resets_the_count(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    for _ in 0..4 {
        wrong(&b, "alice@acme.test").await;
    }
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    assert_eq!(app.lock_state(&alice).await.failed_count, 0);
    for _ in 0..4 {
        wrong(&b, "alice@acme.test").await;
    }
    assert_eq!(app.lock_state(&alice).await.locked_until, None, "4 + reset + 4 is not 5 consecutive");
}

async fn admin_unlock_releases_at_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    for _ in 0..5 {
        wrong(&b, "alice@acme.test").await;
    }
    assert!(app.lock_state(&alice).await.locked_until.is_some());
    app.admin().unlock_user("alice@acme.test", Some("acme")).await.unwrap();
    let s = app.lock_state(&alice).await;
    assert_eq!((s.failed_count, s.locked_until), (0, None));
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let events = app.audit(&tenant).await;
    let unlock = events.iter().find(|e| e.event == "admin.user.unlock").expect("unlock audited");
    assert_eq!(unlock.actor, "test-admin");
    assert_eq!(unlock.subject.as_deref(), Some("alice@acme.test"));
}

async fn fifty_concurrent_wrong_passwords_leave_an_exact_count(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    // This is about the lockout counter; throttling (tested in netpolicy.rs) would answer
    // most of the fifty with 429 before they reach it.
    no_throttle(&app).await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let csrf = b.csrf("/t/acme/login").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, url, csrf) = (b.client.clone(), b.url("/t/acme/login"), csrf.clone());
        tasks.push(tokio::spawn(async move {
            let pw = format!("wrong-{i}");
            let form = [("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", pw.as_str())];
            client.post(url).form(&form).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let s = app.lock_state(&alice).await;
    assert_eq!(s.failed_count, 5, "exactly the threshold is counted; the rest met the lock");
    assert!(s.locked_until.is_some_and(|t| t > app.now()), "locked");
    let events = app.audit(&tenant).await;
    let signins: Vec<_> = events.iter().filter(|e| e.event == "signin").collect();
    assert_eq!(signins.len(), 50, "every attempt audited once");
    assert_eq!(signins.iter().filter(|e| e.reason.as_deref() == Some("bad_password")).count(), 5);
    assert_eq!(signins.iter().filter(|e| e.reason.as_deref() == Some("account_locked")).count(), 45);
    assert_eq!(events.iter().filter(|e| e.event == "lockout").count(), 1, "one lockout");
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 401);
}

async fn tenant_policy_sets_threshold_and_duration(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let change =
        lanyard::tenant::TenantChange { lockout_threshold: Some(2), lockout_seconds: Some(60), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    let b = app.browser();
    wrong(&b, "alice@acme.test").await;
    wrong(&b, "alice@acme.test").await;
    let s = app.lock_state(&alice).await;
    assert_eq!(s.failed_count, 2);
    assert_eq!(s.locked_until, Some(app.now() + 60));
    app.clock.advance(60);
    // After an expired lock the count starts again at 1.
    wrong(&b, "alice@acme.test").await;
    let s = app.lock_state(&alice).await;
    assert_eq!((s.failed_count, s.locked_until), (1, None));
}

pub async fn no_throttle(app: &TestApp) {
    let change = lanyard::tenant::TenantChange {
        throttle_address_failures: Some(0),
        throttle_account_failures: Some(0),
        throttle_address_attempts: Some(0),
        ..Default::default()
    };
    app.admin().update_tenant("acme", change).await.unwrap();
}
