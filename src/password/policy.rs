//! The tenant's password policy, applied whenever a password is set (never at sign-in,
//! where a policy change must not lock out people with older passwords).

use crate::tenant::TenantPolicy;
use crate::user::Email;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("The password must be at least {0} characters long.")]
    TooShort(i64),
    #[error("The password must be at most {0} characters long.")]
    TooLong(i64),
    #[error("The password must not be your user name.")]
    EqualsUserName,
}

pub fn check(policy: &TenantPolicy, email: &Email, password: &str) -> Result<(), PolicyError> {
    let len = password.chars().count() as i64;
    if len < policy.password_min_length {
        return Err(PolicyError::TooShort(policy.password_min_length));
    }
    if len > policy.password_max_length {
        return Err(PolicyError::TooLong(policy.password_max_length));
    }
    let lowered = password.trim().to_lowercase();
    let local = email.as_str().split('@').next().unwrap_or("");
    if lowered == email.as_str() || lowered == local {
        return Err(PolicyError::EqualsUserName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_edges() {
        let p = TenantPolicy::default();
        let e = Email::parse("alice.smith@acme.test").unwrap();
        assert_eq!(check(&p, &e, "1234567"), Err(PolicyError::TooShort(8)));
        assert_eq!(check(&p, &e, "12345678"), Ok(()));
        assert_eq!(check(&p, &e, &"x".repeat(128)), Ok(()));
        assert_eq!(check(&p, &e, &"x".repeat(129)), Err(PolicyError::TooLong(128)));
        assert_eq!(check(&p, &e, "Alice.Smith@acme.test"), Err(PolicyError::EqualsUserName));
        assert_eq!(check(&p, &e, "alice.smith"), Err(PolicyError::EqualsUserName));
    }
}
