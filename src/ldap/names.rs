//! What a person types as their user name, and how it enters LDAP.
//!
//! The sign-in form takes `DOMAIN\user`, `user@domain` (a UPN or an e-mail address) or a
//! bare user name. `DOMAIN\` picks the servers of that NetBIOS domain and is removed; every
//! other form is searched as typed. The value then enters the admin's user filter only
//! through [`user_filter`], escaped per RFC 4515 (`*`, `(`, `)`, `\`, NUL), and a DN
//! template only through [`bind_dn`], escaped per RFC 4514 — so nothing a person types is
//! ever read as filter or DN syntax.

/// Why a typed user name was refused before any directory was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("enter your user name")]
    Empty,
    #[error("the user name is longer than 256 characters")]
    TooLong,
    #[error("the user name contains a control character")]
    Control,
    #[error("`DOMAIN\\user` needs both a domain and a user name")]
    Incomplete,
}

/// A typed user name, checked: the domain it named (upper case) and the name to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedName {
    pub domain: Option<String>,
    pub username: String,
}

impl TypedName {
    pub fn parse(typed: &str) -> Result<TypedName, NameError> {
        let t = typed.trim();
        if t.is_empty() {
            return Err(NameError::Empty);
        }
        if t.len() > 256 {
            return Err(NameError::TooLong);
        }
        if t.chars().any(|c| c.is_control()) {
            return Err(NameError::Control);
        }
        match t.split_once('\\') {
            Some((d, u)) => {
                let (d, u) = (d.trim(), u.trim());
                if d.is_empty() || u.is_empty() {
                    return Err(NameError::Incomplete);
                }
                Ok(TypedName { domain: Some(d.to_ascii_uppercase()), username: u.to_string() })
            }
            None => Ok(TypedName { domain: None, username: t.to_string() }),
        }
    }
}

/// The admin's filter with every `{username}` replaced by the escaped user name.
pub fn user_filter(template: &str, username: &str) -> String {
    template.replace("{username}", &ldap3::ldap_escape(username))
}

/// A filter that matches `value` in `attribute` exactly (escaped).
pub fn equality_filter(attribute: &str, value: &str) -> String {
    format!("({attribute}={})", ldap3::ldap_escape(value))
}

/// The bind DN from a direct-bind template, the user name escaped as an RDN value.
pub fn bind_dn(template: &str, username: &str) -> String {
    template.replace("{username}", &ldap3::dn_escape(username))
}

/// An empty or whitespace-only password: many servers treat a simple bind without a
/// password as an anonymous bind that "succeeds" (RFC 4513 §5.1.2), so it never binds.
pub fn is_blank_password(p: &str) -> bool {
    p.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_forms() {
        assert_eq!(
            TypedName::parse("acme\\alice").unwrap(),
            TypedName { domain: Some("ACME".into()), username: "alice".into() }
        );
        assert_eq!(
            TypedName::parse(" alice@acme.test ").unwrap(),
            TypedName { domain: None, username: "alice@acme.test".into() }
        );
        assert_eq!(TypedName::parse("alice").unwrap().username, "alice");
        assert_eq!(TypedName::parse(""), Err(NameError::Empty));
        assert_eq!(TypedName::parse("   "), Err(NameError::Empty));
        assert_eq!(TypedName::parse("ACME\\"), Err(NameError::Incomplete));
        assert_eq!(TypedName::parse("\\alice"), Err(NameError::Incomplete));
        assert_eq!(TypedName::parse("al\u{0}ice"), Err(NameError::Control));
        assert_eq!(TypedName::parse(&"a".repeat(257)), Err(NameError::TooLong));
    }

    #[test]
    fn injection_is_inert_in_filters() {
        let f = "(|(uid={username})(mail={username}))";
        assert_eq!(user_filter(f, "alice"), "(|(uid=alice)(mail=alice))");
        assert_eq!(user_filter("(uid={username})", "*"), r"(uid=\2a)");
        assert_eq!(user_filter("(uid={username})", ")(uid=*"), r"(uid=\29\28uid=\2a)");
        assert_eq!(user_filter("(uid={username})", "*)(|(objectClass=*"), r"(uid=\2a\29\28|\28objectClass=\2a)");
        assert_eq!(user_filter("(uid={username})", "a\\b"), r"(uid=a\5cb)");
        assert_eq!(user_filter("(uid={username})", "a\u{0}b"), r"(uid=a\00b)");
        assert_eq!(equality_filter("badgeNumber", "04a2*"), r"(badgeNumber=04a2\2a)");
    }

    #[test]
    fn injection_is_inert_in_dns() {
        let t = "uid={username},ou=people,dc=acme,dc=test";
        assert_eq!(bind_dn(t, "alice"), "uid=alice,ou=people,dc=acme,dc=test");
        assert_eq!(bind_dn(t, "x,ou=admins"), r"uid=x\2cou\3dadmins,ou=people,dc=acme,dc=test");
        assert_eq!(bind_dn(t, "a+b"), r"uid=a\2bb,ou=people,dc=acme,dc=test");
        assert!(bind_dn(t, "#x").starts_with(r"uid=\23x"), "{}", bind_dn(t, "#x"));
    }

    #[test]
    fn blank_passwords() {
        assert!(is_blank_password(""));
        assert!(is_blank_password(" \t\n"));
        assert!(!is_blank_password(" a "));
    }
}
