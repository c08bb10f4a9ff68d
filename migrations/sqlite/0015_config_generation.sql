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

-- SQLite triggers are per row and per event.
CREATE TRIGGER tenants_generation_insert AFTER INSERT ON tenants
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_generation_update AFTER UPDATE ON tenants
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_generation_delete AFTER DELETE ON tenants
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_domains_generation_insert AFTER INSERT ON tenant_domains
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_domains_generation_update AFTER UPDATE ON tenant_domains
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER tenant_domains_generation_delete AFTER DELETE ON tenant_domains
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_generation_insert AFTER INSERT ON oauth_clients
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_generation_update AFTER UPDATE ON oauth_clients
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_generation_delete AFTER DELETE ON oauth_clients
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_resources_generation_insert AFTER INSERT ON oauth_resources
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_resources_generation_update AFTER UPDATE ON oauth_resources
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_resources_generation_delete AFTER DELETE ON oauth_resources
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_generation_insert AFTER INSERT ON signing_keys
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_generation_update AFTER UPDATE ON signing_keys
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER signing_keys_generation_delete AFTER DELETE ON signing_keys
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
