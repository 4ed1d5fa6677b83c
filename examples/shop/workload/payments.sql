-- payments: payment methods, captures, refunds, invoices; marks orders paid.
SELECT id, kind, last4 FROM payment_methods WHERE customer_id = $1;
INSERT INTO payment_methods (customer_id, kind, token, last4) VALUES ($1, $2, $3, $4) RETURNING id;
SELECT total, payment_status FROM orders WHERE id = $1 FOR UPDATE;
INSERT INTO payments (order_id, payment_method_id, amount, status, provider_ref) VALUES ($1, $2, $3, 'pending', $4) RETURNING id;
UPDATE payments SET status = $2 WHERE id = $1;
UPDATE orders SET payment_status = 'captured', paid_at = now() WHERE id = $1;
INSERT INTO refunds (payment_id, amount, reason) VALUES ($1, $2, $3);
UPDATE orders SET payment_status = 'refunded' WHERE id = (SELECT order_id FROM payments WHERE id = $1);
INSERT INTO invoices (order_id, amount) VALUES ($1, $2) RETURNING invoice_number;
SELECT invoice_number, issued_at, amount FROM invoices WHERE order_id = $1;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('payments', $1, 'payment', $2, $3);
