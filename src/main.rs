//! The `lanyard` command: `serve`, `migrate`, `admin …`. Parsing and printing only; the
//! work is done by the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

use lanyard::admin::{AdminContext, AdminError};
use lanyard::audit::Origin;
use lanyard::clock::{Clock, SystemClock};
use lanyard::config::{Config, LogFormat};
use lanyard::store::OpenMode;
use lanyard::tenant::{Domain, SigninRoute, TenantChange};

#[derive(Parser)]
#[command(name = "lanyard", version, about = "Lanyard identity federation broker")]
struct Cli {
    /// TOML configuration file; LANYARD_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum Command {
    /// Start the server: migrate the store, bootstrap a first tenant and admin if the store
    /// is empty, and listen on LANYARD_LISTEN (default 127.0.0.1:8080).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Administer tenants, users, clients and the audit log directly in the store.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Token-signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Promote the published next key to signing, retire the current one (it stays in
    /// the JWKS until every token it signed has expired) and publish a new next key.
    Rotate {
        /// The tenant whose key rotates (each tenant signs with its own keys).
        #[arg(long)]
        tenant: String,
        /// ES256 or RS256
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Roll the tenant's SAML SP keys (signing and encryption) instead: the published
        /// next pair becomes active, the old encryption key still decrypts for 30 days,
        /// and a new next pair is published. Re-import the SP metadata at the IdP.
        #[arg(long, conflicts_with = "alg")]
        saml: bool,
    },
    /// Print a tenant's published JWKS.
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum AdminCommand {
    /// Tenants: an organisation each, found by its e-mail domains.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Users of a tenant.
    #[command(subcommand)]
    User(UserCommand),
    /// OAuth clients of a tenant.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Resource servers (APIs) of a tenant: access tokens name the API they are for in `aud`.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Identity providers of a tenant (SAML 2.0 IdPs, whose metadata Lanyard imports).
    #[command(subcommand)]
    Idp(IdpCommand),
    /// LDAP / Active Directory servers of a tenant, in failover order.
    #[command(subcommand)]
    Ldap(LdapCommand),
    /// Employee cards: the tenant's card policy, people's cards and PINs.
    #[command(subcommand)]
    Card(CardCommand),
    /// A tenant's IP allow-list (see `tenant update --ip-policy`).
    #[command(subcommand)]
    Iplist(IplistCommand),
    /// People's WebAuthn credentials (passkeys, security keys): list and remove.
    #[command(subcommand)]
    Webauthn(WebauthnCommand),
    /// Print a tenant's audit events, newest first.
    Audit {
        #[arg(long)]
        tenant: String,
        /// Print JSON (one array) instead of text lines.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum ClientCommand {
    /// Register a client; prints it as JSON, with its secret (shown only this once) for
    /// web and service clients.
    Create {
        #[arg(long)]
        tenant: String,
        /// Letters, digits, '.', '_' and '-' (no ':', so HTTP Basic credentials are
        /// unambiguous whether or not a client library form-encodes them).
        #[arg(long)]
        client_id: String,
        /// web (confidential, secret), native (public, PKCE), spa (public, PKCE, CORS) or
        /// service (client_credentials).
        #[arg(long)]
        kind: String,
        /// Browser origin allowed to call the token service (repeatable), e.g.
        /// https://app.example.com — for spa clients.
        #[arg(long = "web-origin")]
        web_origins: Vec<String>,
        /// Redirect URI (repeatable). Native: private-use scheme or http://127.0.0.1/path.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where RP-initiated logout may return (repeatable).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Allowed scope (repeatable); default openid email profile (none for service).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Grant type (repeatable): authorization_code, refresh_token, client_credentials,
        /// within what the kind allows; default: the kind's usual set.
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Read the secret from standard input instead of generating one (43+ characters).
        #[arg(long)]
        secret_stdin: bool,
        /// ID-token signing algorithm: ES256 (default) or RS256.
        #[arg(long)]
        id_token_alg: Option<String>,
        #[arg(long)]
        access_token_seconds: Option<i64>,
        #[arg(long)]
        id_token_seconds: Option<i64>,
        #[arg(long)]
        refresh_idle_seconds: Option<i64>,
        #[arg(long)]
        refresh_absolute_seconds: Option<i64>,
        /// Sign-ins into this client only from the tenant's IP allow-list, whatever the
        /// tenant's IP policy.
        #[arg(long)]
        known_networks_only: bool,
    },
    /// Change a client's network rule: `--known-networks-only true|false`.
    Update {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        known_networks_only: bool,
    },
    /// Delete a client; its tokens stop working at once.
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        client_id: String,
    },
}

#[derive(Subcommand)]
enum ResourceCommand {
    /// Register an API; prints it as JSON.
    Create {
        #[arg(long)]
        tenant: String,
        /// The API's identifier, an absolute URI (RFC 8707), e.g. https://api.acme.test
        #[arg(long)]
        identifier: String,
        /// A scope of this API (repeatable), e.g. orders:read
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List a tenant's APIs.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Remove an API.
    Delete {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        identifier: String,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum IdpCommand {
    /// Import a SAML IdP's metadata XML (validated first; a refused file changes nothing).
    /// Creates the IdP, or replaces its metadata and keeps its settings. Prints it as JSON.
    ImportSaml {
        #[arg(long)]
        tenant: String,
        /// The IdP's name in the tenant (a-z, 0-9, '-', '_').
        #[arg(long, default_value = "default")]
        name: String,
        /// The metadata file; `-` reads standard input.
        file: std::path::PathBuf,
    },
    /// List the tenant's IdPs as JSON, with certificate expiry.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Show one IdP as JSON.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Print the IdP metadata XML exactly as it was imported.
    Metadata {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Change an IdP's sign-in settings; prints it as JSON.
    Update(IdpUpdate),
    /// Re-read the IdP's metadata URL now (also done daily by the server). A failed or
    /// invalid read keeps the working metadata and exits non-zero.
    Refresh {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Add an upstream OpenID Provider (discovered first: an issuer that does not answer
    /// with a valid document is refused). Prints it as JSON, without the secret.
    AddOidc(OidcAdd),
    /// Change an OpenID Provider; prints it as JSON.
    UpdateOidc(OidcUpdate),
    /// Discovery and the key set again: what was found, or what would go wrong.
    Test {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Remove an IdP (SAML or OpenID Provider; for SAML the next oldest becomes the
    /// default if it was).
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
struct OidcAdd {
    #[arg(long)]
    tenant: String,
    /// The OP's name in the tenant (a-z, 0-9, '-', '_').
    #[arg(long)]
    name: String,
    /// The issuer URL (https; its /.well-known/openid-configuration is read).
    #[arg(long)]
    issuer: String,
    /// Lanyard's client id at the OP.
    #[arg(long)]
    client_id: String,
    /// Read the client secret from standard input (none: a public client with PKCE only).
    #[arg(long)]
    client_secret_stdin: bool,
    /// Scope to ask for (repeatable; default openid email profile).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The claim that holds the user name: email (default), sub, upn, preferred_username,
    /// or any claim such as sAMAccountName.
    #[arg(long)]
    username_claim: Option<String>,
    /// The claim with the e-mail address (default email).
    #[arg(long)]
    email_claim: Option<String>,
    /// The claim with the display name (default name).
    #[arg(long)]
    name_claim: Option<String>,
    #[arg(long)]
    groups_claim: Option<String>,
    /// Create users at their first sign-in: true (default) or false.
    #[arg(long, action = clap::ArgAction::Set)]
    jit: Option<bool>,
    /// An audience (the organisation's own app as registered at its OP) whose ID tokens
    /// may be exchanged for Lanyard's tokens (repeatable).
    #[arg(long = "exchange-audience")]
    exchange_audiences: Vec<String>,
}

#[derive(Args)]
struct OidcUpdate {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long)]
    client_secret_stdin: bool,
    #[arg(long = "scope")]
    scopes: Vec<String>,
    #[arg(long)]
    username_claim: Option<String>,
    #[arg(long)]
    email_claim: Option<String>,
    #[arg(long)]
    name_claim: Option<String>,
    #[arg(long, action = clap::ArgAction::Set)]
    jit: Option<bool>,
    /// Replaces the list (repeatable); `--no-exchange` empties it.
    #[arg(long = "exchange-audience")]
    exchange_audiences: Vec<String>,
    #[arg(long)]
    no_exchange: bool,
    /// Turn the OP off (its users' exchanges and sign-ins stop at once) or on.
    #[arg(long, action = clap::ArgAction::Set)]
    enabled: Option<bool>,
}

#[derive(Args)]
struct IdpUpdate {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    name: String,
    /// Clock skew tolerated on every time check, 0–600 seconds (default 120).
    #[arg(long)]
    clock_skew_seconds: Option<i64>,
    /// Accept unsolicited (IdP-initiated) responses.
    #[arg(long)]
    allow_idp_initiated: Option<bool>,
    /// Which signature is required: either (the Assertion or the Response containing it),
    /// assertion, response, both.
    #[arg(long)]
    require_signed: Option<String>,
    /// Accept RSA/ECDSA signatures and digests with SHA-1.
    #[arg(long)]
    allow_sha1: Option<bool>,
    /// Take the user name from this attribute instead of the NameID.
    #[arg(long, conflicts_with = "username_nameid")]
    username_attribute: Option<String>,
    /// Take the user name from the NameID (the default).
    #[arg(long)]
    username_nameid: bool,
    /// Attribute holding the e-mail address.
    #[arg(long)]
    email_attribute: Option<String>,
    /// Attribute holding the display name.
    #[arg(long)]
    display_name_attribute: Option<String>,
    /// Attribute holding the groups.
    #[arg(long)]
    groups_attribute: Option<String>,
    /// Create and update users at sign-in.
    #[arg(long)]
    jit: Option<bool>,
    /// Make this the tenant's default IdP.
    #[arg(long)]
    default: bool,
    /// Where the IdP publishes its metadata (https): re-read daily and by `idp refresh`.
    #[arg(long, conflicts_with = "no_metadata_url")]
    metadata_url: Option<String>,
    /// Forget the metadata URL (uploads only).
    #[arg(long)]
    no_metadata_url: bool,
}

/// The settings `ldap add` and `ldap update` share.
#[derive(Args)]
struct LdapSettings {
    /// ldap://host[:port] or ldaps://host[:port].
    #[arg(long)]
    url: Option<String>,
    /// Upgrade an ldap:// connection with StartTLS.
    #[arg(long)]
    starttls: Option<Option<bool>>,
    /// PEM file of the CA that signs the server's certificate (default: the system's roots).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    #[arg(long)]
    connect_timeout_ms: Option<i64>,
    #[arg(long)]
    operation_timeout_ms: Option<i64>,
    #[arg(long)]
    base_dn: Option<String>,
    /// NetBIOS domain (`ACME` in `ACME\alice`).
    #[arg(long)]
    domain: Option<String>,
    /// The service account's DN (its password from standard input: --bind-password-stdin).
    #[arg(long)]
    bind_dn: Option<String>,
    /// Read the service account's password from standard input.
    #[arg(long)]
    bind_password_stdin: bool,
    /// Without a service account: bind straight to this DN, e.g. uid={username},ou=people,dc=acme,dc=test.
    #[arg(long)]
    bind_dn_template: Option<String>,
    /// How the typed user name finds the entry; {username} is replaced (escaped).
    #[arg(long)]
    user_filter: Option<String>,
    /// An attribute holding employee card identifiers (repeatable: badge, phone NFC id, legacy badge).
    #[arg(long = "card-attribute")]
    card_attribute: Vec<String>,
    /// ATTRIBUTE=FIELD (repeatable): email, display_name, username, department, groups or a custom field.
    #[arg(long = "map")]
    map: Vec<String>,
    /// An LDAP filter that marks disabled entries (AD's userAccountControl bit 2 always does).
    #[arg(long)]
    disabled_filter: Option<String>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum LdapCommand {
    /// Add a server (last in the failover order); prints it as JSON, without the password.
    Add {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        settings: LdapSettings,
    },
    /// List the tenant's servers as JSON, in failover order.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Change a server (named by its id or URL); prints it as JSON.
    Update {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        server: String,
        /// Position in the failover order (lowest first).
        #[arg(long)]
        position: Option<i64>,
        #[command(flatten)]
        settings: LdapSettings,
    },
    /// Remove a server.
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        server: String,
    },
    /// Bind with the service account and read one entry; says what it found or exactly why it failed.
    Test {
        #[arg(long)]
        tenant: String,
        /// One server (id or URL); default: every server of the tenant.
        #[arg(long)]
        server: Option<String>,
    },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Show or change the tenant's card policy; prints it as JSON.
    Policy {
        #[arg(long)]
        tenant: String,
        /// Import the owner of an unknown card found in the directory.
        #[arg(long)]
        onboarding: Option<bool>,
        /// Serve the kiosk page /t/{tenant}/card/login (card number and PIN in a browser; needs PINs).
        #[arg(long)]
        kiosk_page: Option<bool>,
        /// Ask for a PIN with the card.
        #[arg(long)]
        pin_required: Option<bool>,
        /// How readers send card numbers: text, hex or decimal.
        #[arg(long)]
        reader_format: Option<String>,
        /// How the directory holds them: text, hex or decimal.
        #[arg(long)]
        directory_format: Option<String>,
        /// How long a known card is accepted while no directory answers (0–24).
        #[arg(long)]
        offline_hours: Option<f64>,
    },
    /// A person's cards, with their numbers (audited).
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
    },
    /// Set a person's card PIN, read from standard input.
    SetPin {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Re-read the tenant's card list from the directory now (the server does it daily).
    Sync {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start
enum TenantCommand {
    /// Create a tenant; prints it as JSON.
    Create {
        /// Path name under /t/ (lower-case letters, digits, '-').
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        /// E-mail domain whose users belong to this tenant (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    /// Change a tenant's name, sign-in route, domains or policies; prints it as JSON.
    Update(TenantUpdate),
    /// List tenants as JSON.
    List,
    /// Show one tenant as JSON.
    Show {
        #[arg(long)]
        slug: String,
    },
}

#[derive(Subcommand)]
enum IplistCommand {
    /// Add an address or CIDR range to the tenant's allow-list; prints the entry.
    Add {
        #[arg(long)]
        tenant: String,
        /// 81.2.69.0/24, 2a00:1450::/32 or a single address.
        #[arg(long)]
        cidr: String,
        #[arg(long)]
        label: String,
        /// A private-network list entry (10.0.0.0/8 and the like are refused otherwise).
        #[arg(long)]
        private: bool,
    },
    /// The tenant's allow-list as JSON.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Remove an entry, named by its id or its network.
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        entry: String,
    },
}

#[derive(Subcommand)]
enum WebauthnCommand {
    /// A person's passkeys and security keys as JSON.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
    },
    /// Remove one of a person's credentials (--id) or all of them (--all).
    Remove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args)]
struct TenantUpdate {
    #[arg(long)]
    slug: String,
    #[arg(long)]
    name: Option<String>,
    /// Sign-in route: password, or saml (the tenant's default SAML IdP; import its
    /// metadata first). oidc and ldap arrive in later versions.
    #[arg(long)]
    signin: Option<String>,
    #[arg(long = "add-domain")]
    add_domains: Vec<String>,
    #[arg(long = "remove-domain")]
    remove_domains: Vec<String>,
    #[arg(long)]
    password_min_length: Option<i64>,
    #[arg(long)]
    password_max_length: Option<i64>,
    /// Consecutive failures that lock an account.
    #[arg(long)]
    lockout_threshold: Option<i64>,
    #[arg(long)]
    lockout_minutes: Option<i64>,
    #[arg(long)]
    session_idle_minutes: Option<i64>,
    #[arg(long)]
    session_absolute_hours: Option<i64>,
    #[arg(long)]
    audit_retention_days: Option<i64>,
    /// What an address outside the tenant's IP allow-list gets: off, enforce (refused)
    /// or mfa (WebAuthn required).
    #[arg(long)]
    ip_policy: Option<String>,
    /// When a second factor (WebAuthn) is asked: off, always, or outside (the allow-list).
    #[arg(long)]
    second_factor: Option<String>,
    /// A passkey may be the only factor: true or false.
    #[arg(long, action = clap::ArgAction::Set)]
    passwordless: Option<bool>,
    /// "Keep me signed in": off, offer (a box on the sign-in forms) or always.
    #[arg(long)]
    persistent_sessions: Option<String>,
    /// Failed sign-ins a minute from one address before 429 (0 = no limit).
    #[arg(long)]
    throttle_address_failures: Option<i64>,
    /// Failed sign-ins a minute for one account before 429 (0 = no limit).
    #[arg(long)]
    throttle_account_failures: Option<i64>,
    /// Sign-in requests a minute from one address, per server process (0 = no limit).
    #[arg(long)]
    throttle_address_attempts: Option<i64>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints it as JSON.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// The user administers the tenant.
        #[arg(long)]
        admin: bool,
        /// The user must choose a new password at first sign-in.
        #[arg(long)]
        must_change_password: bool,
        /// The organisation vouches for this address (ID tokens say `email_verified: true`).
        #[arg(long)]
        email_verified: bool,
    },
    /// Record that the organisation vouches for a user's address (`--unverified`: no longer).
    VerifyEmail {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        unverified: bool,
    },
    /// Clear a lockout and the failure count.
    Unlock {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable a user (ends their sessions).
    Disable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Delete a user, their credentials and sessions (the audit trail stays).
    Delete {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Set a user's password, read from standard input.
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        must_change_password: bool,
    },
    /// List a tenant's users as JSON.
    List {
        #[arg(long)]
        tenant: String,
    },
}

fn init_logging(config: &Config, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LANYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal, never into files or log collectors.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn read_password_stdin() -> anyhow::Result<SecretString> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let line = s.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(SecretString::from(line))
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lanyard: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lanyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once. Many error types already put their cause in
/// their own message (`#[error("{0}")]` over a `#[from]` source), so anyhow's `{:#}` chain
/// printed it twice; a cause whose text is already in the message is skipped.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            init_logging(&config, "info,sqlx=warn");
            let listen = config.listen;
            let app = lanyard::Application::build(config, Arc::new(SystemClock)).await?;
            let state = app.state();
            // Before the "listening on" line, which tools wait for as the last one.
            match state.config.metrics_listen {
                Some(m) => println!("Lanyard: metrics at http://{m}/metrics"),
                None => println!("Lanyard: metrics off"),
            }
            println!(
                "Lanyard: listening on {listen} (port {}) — sign-in page {}",
                app.port(),
                state.config.url("/login")
            );
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate => {
            init_logging(&config, "info,sqlx=warn");
            let (store, _) = lanyard::open_store_and_key(&config, OpenMode::Create).await?;
            store.close().await;
            println!("Lanyard: migrations applied to {}", lanyard::store::redact_url(&config.database_url));
            Ok(())
        }
        Command::Keys(cmd) => {
            init_logging(&config, "warn");
            let (store, master) = lanyard::open_store_and_key(&config, OpenMode::Existing).await?;
            let keys = lanyard::keys::signing::KeyRing::new(&master);
            let now = SystemClock.now();
            let hasher = tokio::task::spawn_blocking(move || lanyard::password::Hasher::new(1)).await??;
            let ctx = AdminContext {
                store: &store,
                hasher: &hasher,
                now,
                actor: "cli",
                origin: Origin::cli(),
                metadata_private_hosts: config.saml_metadata_private_hosts,
            };
            let r = match cmd {
                KeysCommand::Rotate { tenant, saml: true, .. } => {
                    let slug = lanyard::admin::parse_slug(&tenant)?;
                    let t = lanyard::tenant::find_by_slug(&store, &slug)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no tenant with slug `{slug}`"))?;
                    let ring = lanyard::saml::sp_keys::SpKeyRing::new(&master);
                    let subject = format!("{} {}", config.public_url.host_str().unwrap_or_default(), t.slug);
                    let id = ring.rotate(&store, now, &t.id, &subject).await?;
                    ctx.audit_saml_key_rotation(&t.id, &id).await;
                    print_json(
                        &serde_json::json!({"tenant": tenant, "saml_signing_key": id, "metadata": config.url(&format!("/t/{}/saml/metadata", t.slug))}),
                    )
                }
                KeysCommand::Rotate { tenant, alg, .. } => {
                    let alg = lanyard::keys::jws::Alg::parse(&alg)
                        .ok_or_else(|| anyhow::anyhow!("--alg must be ES256 or RS256"))?;
                    let kid = ctx.rotate_keys(&keys, &tenant, alg).await?;
                    print_json(&serde_json::json!({"tenant": tenant, "alg": alg.as_str(), "active_kid": kid}))
                }
                KeysCommand::List { tenant } => print_json(&ctx.tenant_jwks(&keys, &tenant).await?),
            };
            store.close().await;
            r
        }
        Command::Admin(cmd) => {
            init_logging(&config, "warn");
            let (store, master) = lanyard::open_store_and_key(&config, OpenMode::Existing).await?;
            let hasher = tokio::task::spawn_blocking(move || lanyard::password::Hasher::new(1)).await??;
            let ctx = AdminContext {
                store: &store,
                hasher: &hasher,
                now: SystemClock.now(),
                actor: "cli",
                origin: Origin::cli(),
                metadata_private_hosts: config.saml_metadata_private_hosts,
            };
            let r = admin(&ctx, &master, cmd).await;
            store.close().await;
            r
        }
    }
}

async fn idp(ctx: &AdminContext<'_>, master: &lanyard::keys::MasterKey, cmd: IdpCommand) -> anyhow::Result<()> {
    use lanyard::saml::idp::{AttributeMap, RequireSigned, SettingsChange};
    match cmd {
        IdpCommand::ImportSaml { tenant, name, file } => {
            let xml = if file.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)?;
                buf
            } else {
                std::fs::read(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let (_, v) = ctx.import_saml_metadata(&tenant, &name, &xml).await?;
            print_json(&v)
        }
        IdpCommand::List { tenant } => {
            let mut all = ctx.list_saml_idps(&tenant).await?;
            all.extend(ctx.list_oidc_idps(&tenant).await?);
            print_json(&all)
        }
        IdpCommand::AddOidc(a) => {
            let secret = if a.client_secret_stdin { Some(read_password_stdin()?) } else { None };
            let n = lanyard::upstream_oidc::NewOidcIdp {
                name: a.name,
                issuer: a.issuer,
                client_id: a.client_id,
                client_secret: secret,
                scopes: (!a.scopes.is_empty()).then_some(a.scopes),
                username_claim: a.username_claim,
                email_claim: a.email_claim,
                name_claim: a.name_claim,
                groups_claim: a.groups_claim,
                jit: a.jit,
                exchange_audiences: a.exchange_audiences,
            };
            print_json(&ctx.add_oidc_idp(&lanyard::upstream_oidc::SecretSealer::new(master), &a.tenant, n).await?)
        }
        IdpCommand::UpdateOidc(u) => {
            let secret = if u.client_secret_stdin { Some(read_password_stdin()?) } else { None };
            let change = lanyard::upstream_oidc::OidcIdpChange {
                client_id: u.client_id,
                client_secret: secret,
                scopes: (!u.scopes.is_empty()).then_some(u.scopes),
                username_claim: u.username_claim,
                email_claim: u.email_claim,
                name_claim: u.name_claim,
                groups_claim: None,
                jit: u.jit,
                exchange_audiences: if u.no_exchange {
                    Some(vec![])
                } else {
                    (!u.exchange_audiences.is_empty()).then_some(u.exchange_audiences)
                },
                enabled: u.enabled,
            };
            let sealer = lanyard::upstream_oidc::SecretSealer::new(master);
            print_json(&ctx.update_oidc_idp(&sealer, &u.tenant, &u.name, change).await?)
        }
        IdpCommand::Test { tenant, name } => {
            let v = ctx.test_oidc_idp(&tenant, &name).await?;
            print_json(&v)?;
            if v["ok"] != true {
                std::process::exit(1);
            }
            Ok(())
        }
        IdpCommand::Refresh { tenant, name } => print_json(&ctx.refresh_saml_idp(&tenant, &name).await?),
        IdpCommand::Show { tenant, name } => print_json(&ctx.saml_idp(&tenant, &name).await?),
        IdpCommand::Metadata { tenant, name } => {
            print!("{}", ctx.saml_idp_metadata(&tenant, &name).await?);
            Ok(())
        }
        IdpCommand::Remove { tenant, name } => {
            if ctx.oidc_idp(&tenant, &name).await.is_ok() {
                ctx.remove_oidc_idp(&tenant, &name).await?;
            } else {
                ctx.remove_saml_idp(&tenant, &name).await?;
            }
            print_json(&serde_json::json!({"removed": name}))
        }
        IdpCommand::Update(u) => {
            let current = ctx.saml_idp(&u.tenant, &u.name).await?;
            let map_given =
                u.email_attribute.is_some() || u.display_name_attribute.is_some() || u.groups_attribute.is_some();
            let attribute_map = if map_given {
                let mut m: AttributeMap = serde_json::from_value(current["settings"]["attribute_map"].clone())?;
                m.email = u.email_attribute.or(m.email);
                m.display_name = u.display_name_attribute.or(m.display_name);
                m.groups = u.groups_attribute.or(m.groups);
                Some(m)
            } else {
                None
            };
            let change = SettingsChange {
                clock_skew_seconds: u.clock_skew_seconds,
                allow_idp_initiated: u.allow_idp_initiated,
                require_signed: u.require_signed.as_deref().map(RequireSigned::parse).transpose()?,
                allow_sha1: u.allow_sha1,
                username_attribute: if u.username_nameid { Some(None) } else { u.username_attribute.map(Some) },
                attribute_map,
                jit: u.jit,
                make_default: u.default,
                metadata_url: if u.no_metadata_url { Some(None) } else { u.metadata_url.map(Some) },
            };
            print_json(&ctx.update_saml_idp(&u.tenant, &u.name, change).await?)
        }
    }
}

async fn card(ctx: &AdminContext<'_>, dir: &lanyard::ldap::Directory, cmd: CardCommand) -> anyhow::Result<()> {
    use lanyard::ldap::cards::{CardFormat, PolicyChange};
    match cmd {
        CardCommand::Policy {
            tenant,
            onboarding,
            kiosk_page,
            pin_required,
            reader_format,
            directory_format,
            offline_hours,
        } => {
            let change = PolicyChange {
                kiosk_page,
                onboarding,
                pin_required,
                reader_format: reader_format.as_deref().map(CardFormat::parse).transpose()?,
                directory_format: directory_format.as_deref().map(CardFormat::parse).transpose()?,
                offline_seconds: offline_hours.map(|h| (h * 3600.0).round() as i64),
            };
            print_json(&ctx.set_card_policy(&tenant, change).await?)
        }
        CardCommand::List { tenant, email } => print_json(&ctx.user_cards(dir, &email, &tenant).await?),
        CardCommand::SetPin { tenant, email, pin_stdin } => {
            if !pin_stdin {
                anyhow::bail!("give the PIN on standard input with --pin-stdin");
            }
            let pin = read_password_stdin()?;
            ctx.set_card_pin(&email, &tenant, &pin).await?;
            print_json(&serde_json::json!({"pin_set": email}))
        }
        CardCommand::Sync { tenant } => print_json(&ctx.sync_cards(dir, &tenant).await?),
    }
}

fn read_ca_file(f: &Option<std::path::PathBuf>) -> anyhow::Result<Option<String>> {
    f.as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display())))
        .transpose()
}

async fn ldap(ctx: &AdminContext<'_>, dir: &lanyard::ldap::Directory, cmd: LdapCommand) -> anyhow::Result<()> {
    use lanyard::ldap::server::{parse_map_pairs, NewServer, ServerChange};
    match cmd {
        LdapCommand::Add { tenant, settings: s } => {
            let password = if s.bind_password_stdin { Some(read_password_stdin()?) } else { None };
            let map = if s.map.is_empty() { None } else { Some(parse_map_pairs(&s.map)?) };
            let n = NewServer {
                url: s.url.ok_or_else(|| anyhow::anyhow!("--url is required"))?,
                starttls: s.starttls.map(|v| v.unwrap_or(true)).unwrap_or(false),
                ca_pem: read_ca_file(&s.ca_file)?,
                connect_timeout_ms: s.connect_timeout_ms,
                operation_timeout_ms: s.operation_timeout_ms,
                base_dn: s.base_dn.ok_or_else(|| anyhow::anyhow!("--base-dn is required"))?,
                domain: s.domain,
                bind_dn: s.bind_dn,
                bind_password: password,
                bind_dn_template: s.bind_dn_template,
                user_filter: s.user_filter,
                card_attribute: (!s.card_attribute.is_empty()).then(|| s.card_attribute.join(",")),
                attribute_map: map,
                disabled_filter: s.disabled_filter,
            };
            print_json(&ctx.add_ldap_server(dir, &tenant, n).await?)
        }
        LdapCommand::List { tenant } => print_json(&ctx.list_ldap_servers(&tenant).await?),
        LdapCommand::Update { tenant, server, position, settings: s } => {
            let password = if s.bind_password_stdin { Some(read_password_stdin()?) } else { None };
            let change = ServerChange {
                url: s.url,
                starttls: s.starttls.map(|v| v.unwrap_or(true)),
                ca_pem: read_ca_file(&s.ca_file)?.map(Some),
                connect_timeout_ms: s.connect_timeout_ms,
                operation_timeout_ms: s.operation_timeout_ms,
                base_dn: s.base_dn,
                domain: s.domain.map(Some),
                bind_dn: s.bind_dn.map(Some),
                bind_password: password,
                bind_dn_template: s.bind_dn_template.map(Some),
                user_filter: s.user_filter,
                card_attribute: (!s.card_attribute.is_empty()).then(|| Some(s.card_attribute.join(","))),
                attribute_map: if s.map.is_empty() { None } else { Some(parse_map_pairs(&s.map)?) },
                disabled_filter: s.disabled_filter.map(Some),
                position,
            };
            print_json(&ctx.update_ldap_server(dir, &tenant, &server, change).await?)
        }
        LdapCommand::Remove { tenant, server } => {
            ctx.remove_ldap_server(&tenant, &server).await?;
            print_json(&serde_json::json!({"removed": server}))
        }
        LdapCommand::Test { tenant, server } => {
            let results = ctx.test_ldap_servers(dir, &tenant, server.as_deref()).await?;
            let ok = results.iter().all(|r| r["ok"] == serde_json::json!(true));
            print_json(&results)?;
            if !ok {
                anyhow::bail!("the LDAP connection test failed");
            }
            Ok(())
        }
    }
}

fn parse_domains(list: &[String]) -> Result<Vec<Domain>, AdminError> {
    list.iter().map(|d| Domain::parse(d).map_err(AdminError::from)).collect()
}

async fn admin(ctx: &AdminContext<'_>, master: &lanyard::keys::MasterKey, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Client(ClientCommand::Create {
            tenant,
            client_id,
            kind,
            redirect_uris,
            post_logout_redirect_uris,
            scopes,
            grant_types,
            secret_stdin,
            id_token_alg,
            access_token_seconds,
            id_token_seconds,
            refresh_idle_seconds,
            refresh_absolute_seconds,
            web_origins,
            known_networks_only,
        }) => {
            use lanyard::oauth::client::{ClientKind, NewClient};
            let kind = ClientKind::parse(&kind)?;
            let secret = if secret_stdin {
                use secrecy::ExposeSecret;
                Some(read_password_stdin()?.expose_secret().to_string())
            } else {
                None
            };
            let id_token_alg = match id_token_alg {
                Some(a) => Some(
                    lanyard::keys::jws::Alg::parse(&a)
                        .ok_or_else(|| anyhow::anyhow!("--id-token-alg must be ES256 or RS256"))?,
                ),
                None => None,
            };
            let keys = lanyard::keys::signing::KeyRing::new(master);
            let secrets = lanyard::oauth::client::SecretHasher::new(master);
            let new = NewClient {
                client_id,
                kind,
                redirect_uris,
                post_logout_redirect_uris,
                scopes: (!scopes.is_empty()).then_some(scopes),
                grant_types: (!grant_types.is_empty()).then_some(grant_types),
                access_token_seconds,
                id_token_seconds,
                refresh_idle_seconds,
                refresh_absolute_seconds,
                id_token_alg,
                secret,
                web_origins,
                known_networks_only,
            };
            let (c, secret) = ctx.create_client(&keys, &secrets, &tenant, new).await?;
            let mut v = serde_json::to_value(&c)?;
            if let Some(s) = secret {
                v["client_secret"] = serde_json::json!(s);
            }
            print_json(&v)
        }
        AdminCommand::Resource(ResourceCommand::Create { tenant, identifier, scopes }) => {
            print_json(&ctx.create_resource(&tenant, &identifier, &scopes).await?)
        }
        AdminCommand::Resource(ResourceCommand::List { tenant }) => print_json(&ctx.list_resources(&tenant).await?),
        AdminCommand::Resource(ResourceCommand::Delete { tenant, identifier }) => {
            ctx.delete_resource(&tenant, &identifier).await?;
            print_json(&serde_json::json!({"deleted": identifier}))
        }
        AdminCommand::Client(ClientCommand::Update { tenant, client_id, known_networks_only }) => {
            ctx.set_client_known_networks_only(&tenant, &client_id, known_networks_only).await?;
            print_json(&serde_json::json!({"client_id": client_id, "known_networks_only": known_networks_only}))
        }
        AdminCommand::Iplist(IplistCommand::Add { tenant, cidr, label, private }) => {
            print_json(&ctx.add_ip_entry(&tenant, &cidr, &label, private).await?)
        }
        AdminCommand::Iplist(IplistCommand::List { tenant }) => print_json(&ctx.list_ip_entries(&tenant).await?),
        AdminCommand::Iplist(IplistCommand::Remove { tenant, entry }) => {
            print_json(&ctx.remove_ip_entry(&tenant, &entry).await?)
        }
        AdminCommand::Webauthn(WebauthnCommand::List { tenant, email }) => {
            print_json(&ctx.list_webauthn_credentials(&tenant, &email).await?)
        }
        AdminCommand::Webauthn(WebauthnCommand::Remove { tenant, email, id, all }) => {
            if id.is_none() && !all {
                anyhow::bail!("name the credential (--id, from `admin webauthn list`) or give --all");
            }
            let n = ctx.remove_webauthn_credentials(&tenant, &email, id.as_deref()).await?;
            print_json(&serde_json::json!({"removed": n}))
        }
        AdminCommand::Client(ClientCommand::Delete { tenant, client_id }) => {
            ctx.delete_client(&tenant, &client_id).await?;
            print_json(&serde_json::json!({"deleted": client_id}))
        }
        AdminCommand::Idp(cmd) => idp(ctx, master, cmd).await,
        AdminCommand::Ldap(cmd) => ldap(ctx, &lanyard::ldap::Directory::new(master), cmd).await,
        AdminCommand::Card(cmd) => card(ctx, &lanyard::ldap::Directory::new(master), cmd).await,
        AdminCommand::Tenant(TenantCommand::Create { slug, name, domains }) => {
            print_json(&ctx.create_tenant(&slug, &name, &domains).await?)
        }
        AdminCommand::Tenant(TenantCommand::Update(u)) => {
            let change = TenantChange {
                name: u.name,
                signin_route: u
                    .signin
                    .as_deref()
                    .map(SigninRoute::parse)
                    .transpose()
                    .map_err(AdminError::from_route)?,
                add_domains: parse_domains(&u.add_domains)?,
                remove_domains: parse_domains(&u.remove_domains)?,
                password_min_length: u.password_min_length,
                password_max_length: u.password_max_length,
                lockout_threshold: u.lockout_threshold,
                lockout_seconds: u.lockout_minutes.map(|m| m.saturating_mul(60)),
                session_idle_seconds: u.session_idle_minutes.map(|m| m.saturating_mul(60)),
                session_absolute_seconds: u.session_absolute_hours.map(|h| h.saturating_mul(3600)),
                audit_retention_days: u.audit_retention_days,
                ip_policy: u
                    .ip_policy
                    .as_deref()
                    .map(lanyard::netpolicy::IpPolicy::parse)
                    .transpose()
                    .map_err(AdminError::Invalid)?,
                second_factor: u
                    .second_factor
                    .as_deref()
                    .map(lanyard::netpolicy::SecondFactor::parse)
                    .transpose()
                    .map_err(AdminError::Invalid)?,
                passwordless: u.passwordless,
                throttle_address_failures: u.throttle_address_failures,
                throttle_account_failures: u.throttle_account_failures,
                throttle_address_attempts: u.throttle_address_attempts,
                persistent_sessions: u
                    .persistent_sessions
                    .as_deref()
                    .map(lanyard::tenant::Persistence::parse)
                    .transpose()
                    .map_err(AdminError::Invalid)?,
            };
            print_json(&ctx.update_tenant(&u.slug, change).await?)
        }
        AdminCommand::Tenant(TenantCommand::List) => print_json(&lanyard::tenant::list(ctx.store).await?),
        AdminCommand::Tenant(TenantCommand::Show { slug }) => {
            let slug = lanyard::admin::parse_slug(&slug)?;
            match lanyard::tenant::find_by_slug(ctx.store, &slug).await? {
                Some(t) => print_json(&t),
                None => anyhow::bail!("no tenant with slug `{slug}`"),
            }
        }
        AdminCommand::User(UserCommand::Create {
            tenant,
            email,
            password_stdin,
            admin,
            must_change_password,
            email_verified,
        }) => {
            let pw = if password_stdin { Some(read_password_stdin()?) } else { None };
            print_json(
                &ctx.create_user_with(&tenant, &email, pw.as_ref(), admin, must_change_password, email_verified)
                    .await?,
            )
        }
        AdminCommand::User(UserCommand::VerifyEmail { email, tenant, unverified }) => {
            print_json(&ctx.set_email_verified(&email, tenant.as_deref(), !unverified).await?)
        }
        AdminCommand::User(UserCommand::Unlock { email, tenant }) => {
            print_json(&ctx.unlock_user(&email, tenant.as_deref()).await?)
        }
        AdminCommand::User(UserCommand::Disable { email, tenant }) => {
            print_json(&ctx.set_user_disabled(&email, tenant.as_deref(), true).await?)
        }
        AdminCommand::User(UserCommand::Enable { email, tenant }) => {
            print_json(&ctx.set_user_disabled(&email, tenant.as_deref(), false).await?)
        }
        AdminCommand::User(UserCommand::Delete { email, tenant }) => {
            print_json(&ctx.delete_user(&email, tenant.as_deref()).await?)
        }
        AdminCommand::User(UserCommand::SetPassword { email, tenant, must_change_password }) => {
            let pw = read_password_stdin()?;
            print_json(&ctx.set_password(&email, tenant.as_deref(), &pw, must_change_password).await?)
        }
        AdminCommand::User(UserCommand::List { tenant }) => {
            let slug = lanyard::admin::parse_slug(&tenant)?;
            let t = lanyard::tenant::find_by_slug(ctx.store, &slug)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant with slug `{slug}`"))?;
            print_json(&lanyard::user::list_in_tenant(ctx.store, &t.id).await?)
        }
        AdminCommand::Audit { tenant, json, limit } => {
            let events = ctx.audit_events(&tenant, limit).await?;
            if json {
                print_json(&events)
            } else {
                for e in events {
                    println!(
                        "{} {:<22} {:<8} actor={} subject={} reason={} ip={}",
                        e.at,
                        e.event,
                        e.outcome,
                        e.actor,
                        e.subject.unwrap_or_default(),
                        e.reason.unwrap_or_default(),
                        e.client_ip.unwrap_or_default()
                    );
                }
                Ok(())
            }
        }
    }
}
