-- inventory: stock per warehouse, movements, reservations.
SELECT warehouse_id, on_hand, reserved FROM stock_levels WHERE variant_id = $1;
UPDATE stock_levels SET reserved = reserved + $3 WHERE warehouse_id = $1 AND variant_id = $2 AND on_hand - reserved >= $3;
UPDATE stock_levels SET on_hand = on_hand - $3, reserved = reserved - $3 WHERE warehouse_id = $1 AND variant_id = $2;
INSERT INTO stock_movements (warehouse_id, variant_id, quantity, reason) VALUES ($1, $2, $3, $4);
INSERT INTO stock_reservations (order_id, variant_id, warehouse_id, quantity, expires_at)
VALUES ($1, $2, $3, $4, now() + interval '30 minutes') RETURNING id;
DELETE FROM stock_reservations WHERE expires_at < now();
SELECT id, code, city FROM warehouses ORDER BY code;
SELECT v.sku, s.on_hand FROM stock_levels s JOIN product_variants v ON v.id = s.variant_id WHERE s.warehouse_id = $1 AND s.on_hand < s.reorder_at;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('inventory', $1, 'stock', $2, $3);
