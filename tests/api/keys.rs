//! Signing keys under concurrency and on schedule: one rotation however many replicas
//! try, the promoted key is the one already published, and the schedule's edge is exact.

use lanyard::keys::jws::Alg;
use lanyard::keys::signing::KeyRing;
use lanyard::keys::MasterKey;

use crate::both_stores;
use crate::helpers::*;

both_stores!(concurrent_rotations_rotate_once_and_schedule_fires_at_its_edge);

/// The published kids, read through a fresh key ring (no cache).
async fn kids(app: &TestApp, tenant_id: &str) -> Vec<String> {
    let master = MasterKey::load_or_create(app._dir.path()).unwrap();
    let jwks = KeyRing::new(&master).jwks(&app.state.store, app.now(), tenant_id).await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

async fn concurrent_rotations_rotate_once_and_schedule_fires_at_its_edge(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let t = app.tenant("acme").await;
    let tid = t.id.as_str();
    let store = &app.state.store;
    // Several "replicas": key rings over the same store and master key.
    let master = MasterKey::load_or_create(app._dir.path()).unwrap();
    let rings: Vec<KeyRing> = (0..4).map(|_| KeyRing::new(&master)).collect();
    let t0 = app.now();
    let before = kids(&app, tid).await;
    assert_eq!(before.len(), 2, "active + next");

    // Concurrent first use of RS256: exactly one active and one next key come of it.
    let ensures: Vec<_> = rings.iter().map(|r| r.ensure(store, t0, tid, Alg::RS256)).collect();
    for r in futures_util::future::join_all(ensures).await {
        r.unwrap();
    }
    assert_eq!(kids(&app, tid).await.iter().filter(|k| k.starts_with("rs256")).count(), 2);

    let day = 86400;
    let not_yet: Vec<_> = rings.iter().map(|r| r.rotate_due(store, t0 + 30 * day - 1, 30 * day)).collect();
    for r in futures_util::future::join_all(not_yet).await {
        r.unwrap();
    }
    assert_eq!(kids(&app, tid).await.len(), 4, "one second early: nothing rotated");

    let next_es = {
        let signer = app.state.keys.signer(store, t0, tid, Alg::ES256).await.unwrap();
        before.iter().find(|k| **k != signer.kid).unwrap().clone()
    };
    let due: Vec<_> = rings.iter().map(|r| r.rotate_due(store, t0 + 30 * day, 30 * day)).collect();
    for r in futures_util::future::join_all(due).await {
        r.unwrap();
    }
    let after = kids(&app, tid).await;
    assert_eq!(
        after.iter().filter(|k| k.starts_with("es256")).count(),
        3,
        "retired + active + new next: rotated once: {after:?}"
    );
    assert_eq!(after.iter().filter(|k| k.starts_with("rs256")).count(), 3);
    let fresh = KeyRing::new(&master);
    let active = fresh.signer(store, t0 + 30 * day, tid, Alg::ES256).await.unwrap();
    assert_eq!(active.kid, next_es, "the promoted key is the one that was published as next");
}
