-- Issues 11 and 12: a replica caches each tenant's SAML IdPs, LDAP servers and card
-- policy (sign-ins read them per request), so their tables bump the configuration
-- generation like the others of migration 0015 (src/cache.rs). Keep in step with the
-- other store's migration of the same number.

CREATE TRIGGER saml_idps_generation AFTER INSERT OR UPDATE OR DELETE ON saml_idps
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER ldap_servers_generation AFTER INSERT OR UPDATE OR DELETE ON ldap_servers
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
CREATE TRIGGER card_policies_generation AFTER INSERT OR UPDATE OR DELETE ON card_policies
    FOR EACH ROW EXECUTE FUNCTION lanyard_bump_config_generation();
