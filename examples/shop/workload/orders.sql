-- orders: carts, checkout, order lines, order status.
INSERT INTO carts (id, customer_id) VALUES ($1, $2);
INSERT INTO cart_items (cart_id, variant_id, quantity) VALUES ($1, $2, $3)
ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity;
SELECT ci.variant_id, ci.quantity, v.price FROM cart_items ci JOIN product_variants v ON v.id = ci.variant_id WHERE ci.cart_id = $1;
DELETE FROM carts WHERE id = $1;
SELECT percent_off FROM discount_codes WHERE code = $1 AND (valid_until IS NULL OR valid_until >= current_date);
INSERT INTO orders (customer_id, shipping_address_id, discount_code) VALUES ($1, $2, $3) RETURNING id, order_number;
INSERT INTO order_items (order_id, line_no, variant_id, quantity, unit_price) VALUES ($1, $2, $3, $4, $5);
UPDATE orders SET total = order_total(id) WHERE id = $1;
UPDATE orders SET status = $2 WHERE id = $1;
SELECT id, order_number, status, total, placed_at FROM orders WHERE customer_id = $1 ORDER BY placed_at DESC LIMIT 20;
SELECT line_no, variant_id, quantity, unit_price FROM order_items WHERE order_id = $1 ORDER BY line_no;
SELECT * FROM order_summary WHERE id = $1;
SELECT old_status, new_status, changed_at FROM order_status_history WHERE order_id = $1 ORDER BY changed_at;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('orders', $1, 'order', $2, $3);
