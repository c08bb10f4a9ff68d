-- Issue 11: a replica caches each tenant's SAML IdPs (the ACS reads them per response),
-- so their table bumps the configuration generation like the others of migration 0015
-- (src/cache.rs). Keep in step with the other store's migration of the same number.

CREATE TRIGGER saml_idps_generation AFTER INSERT OR UPDATE OR DELETE ON saml_idps
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
