-- Issue 10 item 2: `email_verified` is true only when someone actually vouched for the
-- address: Lanyard, an upstream IdP's claim, or an admin of the organisation (flag).
-- New users start unverified.
ALTER TABLE users ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;

-- Existing users: until now every ID token said `email_verified: true`. Keep that only for
-- users whose address is in a domain their own tenant owns — the operator gave the tenant
-- that domain, so its admins vouch for its addresses. Users at any other domain (one that
-- another tenant owns, or nobody does) were never verified by anyone: they become false.
UPDATE users SET email_verified = 1 WHERE EXISTS (
    SELECT 1 FROM tenant_domains d WHERE d.tenant_id = users.tenant_id AND users.email LIKE '%@' || d.domain
);

-- Issue 10 item 20: the session remembers that its sign-in just proved the one-time
-- password, so the forced password change does not ask for it again.
ALTER TABLE sessions ADD COLUMN one_time_password_proved BIGINT NOT NULL DEFAULT 0;
