-- Issue 11: a replica caches each tenant's SAML IdPs (the ACS reads them per response),
-- so their table bumps the configuration generation like the others of migration 0015
-- (src/cache.rs). Keep in step with the other store's migration of the same number.

CREATE TRIGGER saml_idps_generation_insert AFTER INSERT ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER saml_idps_generation_update AFTER UPDATE ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER saml_idps_generation_delete AFTER DELETE ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
