-- shipping: shipments, their lines, carriers, tracking.
SELECT o.id, o.shipping_address_id, i.line_no, i.variant_id, i.quantity
FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.id = $1 AND o.status = 'paid';
INSERT INTO shipments (order_id, carrier_id, warehouse_id) VALUES ($1, $2, $3) RETURNING id;
INSERT INTO shipment_items (shipment_id, order_id, line_no, quantity) VALUES ($1, $2, $3, $4);
UPDATE shipments SET tracking_no = $2, shipped_at = now() WHERE id = $1;
UPDATE shipments SET delivered_at = now() WHERE id = $1;
INSERT INTO tracking_events (shipment_id, event, payload) VALUES ($1, $2, $3);
SELECT event, received_at FROM tracking_events WHERE shipment_id = $1 ORDER BY received_at;
SELECT id, name, tracking_url_template FROM carriers;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('shipping', $1, 'shipment', $2, $3);
