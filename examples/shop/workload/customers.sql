-- customers: accounts, addresses, preferences, loyalty.
SELECT id, email, full_name, phone, created_at FROM customers WHERE id = $1;
SELECT id FROM customers WHERE email = $1;
INSERT INTO customers (email, full_name, phone) VALUES ($1, $2, $3) RETURNING id;
UPDATE customers SET full_name = $2, phone = $3 WHERE id = $1;
SELECT id, kind, line1, line2, city, postcode, country FROM customer_addresses WHERE customer_id = $1;
INSERT INTO customer_addresses (customer_id, kind, line1, line2, city, postcode, country)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id;
DELETE FROM customer_addresses WHERE id = $1 AND customer_id = $2;
INSERT INTO customer_preferences (customer_id, language, currency, newsletter) VALUES ($1, $2, $3, $4)
ON CONFLICT (customer_id) DO UPDATE SET language = EXCLUDED.language, currency = EXCLUDED.currency, newsletter = EXCLUDED.newsletter;
SELECT points, tier FROM loyalty_accounts WHERE customer_id = $1;
UPDATE loyalty_accounts SET points = points + $2 WHERE customer_id = $1;
INSERT INTO loyalty_transactions (customer_id, points, reason) VALUES ($1, $2, $3);
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('customers', $1, 'customer', $2, $3);
