-- Issue 12: the kiosk page (card number and PIN in a browser) is off unless the tenant
-- turns it on. Keep in step with the other store's migration of the same number.
ALTER TABLE card_policies ADD COLUMN kiosk_page BIGINT NOT NULL DEFAULT 0;
