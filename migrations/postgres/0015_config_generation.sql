-- Issue 16: one generation counter for what replicas cache (tenants and their domains,
-- OAuth clients, API resources, signing keys). Every insert, update or delete in those
-- tables bumps it in the same transaction, whoever writes (a replica, the CLI, a person
-- at psql), so a replica that reads the counter knows whether its cached copies are
-- still exact (src/cache.rs). Keep in step with the other store's migration of the same
-- number.

CREATE TABLE config_generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO config_generation (id, value) VALUES (1, 1);

-- Per row, so a statement that changes nothing (housekeeping deleting no expired key)
-- leaves every replica's cache alone.
CREATE FUNCTION lanyard_bump_config_generation() RETURNS trigger AS $$
BEGIN
    UPDATE config_generation SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER tenants_generation AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER tenant_domains_generation AFTER INSERT OR UPDATE OR DELETE ON tenant_domains
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER oauth_clients_generation AFTER INSERT OR UPDATE OR DELETE ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER oauth_resources_generation AFTER INSERT OR UPDATE OR DELETE ON oauth_resources
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER signing_keys_generation AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
