-- Issue 15: "keep me signed in". Keep in step with the other store's migration of the
-- same number.

-- Per tenant: 'off' (the session cookie ends with the browser), 'offer' (a "keep me
-- signed in" box on the sign-in forms), 'always'. A persistent cookie lives for the
-- session's absolute lifetime; idle timeout and sign-out still end it on the server.
ALTER TABLE tenants ADD COLUMN persistent_sessions TEXT NOT NULL DEFAULT 'off';
-- The person ticked "keep me signed in" (kept across the WebAuthn step).
ALTER TABLE pending_signins ADD COLUMN remember BIGINT NOT NULL DEFAULT 0;
