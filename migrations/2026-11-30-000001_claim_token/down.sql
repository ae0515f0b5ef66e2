ALTER TABLE simulations DROP COLUMN claim_token;
