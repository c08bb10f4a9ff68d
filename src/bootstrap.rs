//! First start: when the store holds no tenant, create a `default` tenant owning the
//! bootstrap admin's e-mail domain and an admin in it, and tell the operator how to sign
//! in. The password is `bootstrap_admin_password` when configured; otherwise a one-time
//! password is generated, printed once, and must be changed at first sign-in.

use secrecy::{ExposeSecret, SecretString};

use crate::audit::Origin;
use crate::clock::UnixTime;
use crate::config::Config;
use crate::password::Hasher;
use crate::store::Store;

pub struct BootstrapReport {
    pub tenant_slug: String,
    pub admin_email: String,
    pub one_time_password: Option<SecretString>,
}

impl BootstrapReport {
    pub fn print(&self, config: &Config) {
        println!("Lanyard: first start — created tenant `{}` and admin {}", self.tenant_slug, self.admin_email);
        match &self.one_time_password {
            Some(p) => println!(
                "Lanyard: admin one-time password: {}  (you will choose your own at first sign-in)",
                p.expose_secret()
            ),
            None => println!("Lanyard: admin password taken from LANYARD_BOOTSTRAP_ADMIN_PASSWORD"),
        }
        println!("Lanyard: sign in at {}", config.url("/login"));
    }
}

pub async fn ensure_first_tenant(
    store: &Store,
    hasher: &Hasher,
    now: UnixTime,
    config: &Config,
) -> anyhow::Result<Option<BootstrapReport>> {
    if !crate::tenant::list(store).await?.is_empty() {
        return Ok(None);
    }
    let email = crate::user::Email::parse(&config.bootstrap_admin_email)
        .map_err(|e| anyhow::anyhow!("bootstrap_admin_email: {e}"))?;
    let (password, generated) = match &config.bootstrap_admin_password {
        Some(p) => (p.clone(), false),
        None => (SecretString::from(crate::keys::random_token(15)), true),
    };
    let ctx = crate::admin::AdminContext { store, hasher, now, actor: "bootstrap", origin: Origin::cli() };
    match ctx.create_tenant("default", "Default", &[email.domain().to_string()]).await {
        Ok(_) => {}
        // Another replica bootstrapped the shared store at the same moment.
        Err(crate::admin::AdminError::Tenant(crate::tenant::TenantError::SlugTaken(_))) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    ctx.create_user("default", email.as_str(), Some(&password), true, generated).await?;
    Ok(Some(BootstrapReport {
        tenant_slug: "default".into(),
        admin_email: email.to_string(),
        one_time_password: generated.then_some(password),
    }))
}
