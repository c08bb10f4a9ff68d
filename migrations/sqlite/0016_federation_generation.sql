-- Issues 11 and 12: a replica caches each tenant's SAML IdPs, LDAP servers and card
-- policy (sign-ins read them per request), so their tables bump the configuration
-- generation like the others of migration 0015 (src/cache.rs). Keep in step with the
-- other store's migration of the same number.

CREATE TRIGGER saml_idps_generation_insert AFTER INSERT ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER saml_idps_generation_update AFTER UPDATE ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER saml_idps_generation_delete AFTER DELETE ON saml_idps
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER ldap_servers_generation_insert AFTER INSERT ON ldap_servers
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER ldap_servers_generation_update AFTER UPDATE ON ldap_servers
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER ldap_servers_generation_delete AFTER DELETE ON ldap_servers
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER card_policies_generation_insert AFTER INSERT ON card_policies
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER card_policies_generation_update AFTER UPDATE ON card_policies
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER card_policies_generation_delete AFTER DELETE ON card_policies
BEGIN UPDATE config_generation SET value = value + 1 WHERE id = 1; END;
