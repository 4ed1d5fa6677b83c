-- Seed data for the shop: a few hundred customers, products and orders.
INSERT INTO customers (email, full_name, phone, marketing_opt)
SELECT 'customer' || i || '@example.com', 'Customer ' || i, '+49 30 ' || (1000000 + i), i % 3 = 0
FROM generate_series(1, 300) AS i;
INSERT INTO customer_addresses (customer_id, kind, line1, city, postcode, country)
SELECT c.id, k.kind, c.id || ' Main Street', (ARRAY['Berlin', 'Lyon', 'Porto'])[1 + c.id % 3], lpad((c.id * 7)::text, 5, '0'), (ARRAY['DE', 'FR', 'PT'])[1 + c.id % 3]
FROM customers c CROSS JOIN (VALUES ('billing'), ('shipping')) AS k(kind);
INSERT INTO customer_preferences (customer_id, language, newsletter)
SELECT id, (ARRAY['en', 'de', 'fr', 'pt'])[1 + id % 4], id % 2 = 0 FROM customers;
INSERT INTO loyalty_accounts (customer_id, points, tier)
SELECT id, (id * 37) % 5000, (ARRAY['bronze', 'silver', 'gold'])[1 + id % 3] FROM customers WHERE id % 2 = 1;
INSERT INTO loyalty_transactions (customer_id, points, reason)
SELECT customer_id, 100, 'welcome bonus' FROM loyalty_accounts;

INSERT INTO categories (name, slug) VALUES ('Clothing', 'clothing'), ('Shoes', 'shoes'), ('Outdoor', 'outdoor');
INSERT INTO categories (parent_id, name, slug)
SELECT 1 + i % 3, 'Sub-category ' || i, 'sub-' || i FROM generate_series(1, 9) AS i;
INSERT INTO brands (name) SELECT 'Brand ' || i FROM generate_series(1, 12) AS i;
INSERT INTO products (sku, name, description, category_id, brand_id, list_price)
SELECT 'P-' || lpad(i::text, 5, '0'), 'Product ' || i, 'A fine product number ' || i, 1 + i % 12, 1 + i % 12, (10 + (i * 13) % 190)::numeric
FROM generate_series(1, 120) AS i;
INSERT INTO product_variants (product_id, sku, size, colour, price)
SELECT p.id, p.sku || '-' || s.size, s.size, (ARRAY['red', 'blue', 'black'])[1 + p.id % 3], p.list_price
FROM products p CROSS JOIN (VALUES ('S'), ('M'), ('L')) AS s(size);
INSERT INTO product_images (product_id, url, position)
SELECT id, 'https://img.example.com/' || sku || '.jpg', 0 FROM products;
INSERT INTO product_reviews (product_id, customer_id, rating, body)
SELECT 1 + (i * 7) % 120, 1 + (i * 11) % 300, 1 + i % 5, 'Review ' || i FROM generate_series(1, 200) AS i;

INSERT INTO warehouses (code, city) VALUES ('BER1', 'Berlin'), ('LYS1', 'Lyon'), ('OPO1', 'Porto');
INSERT INTO stock_levels (warehouse_id, variant_id, on_hand, reserved)
SELECT w.id, v.id, 20 + (v.id * w.id) % 80, (v.id + w.id) % 5 FROM warehouses w CROSS JOIN product_variants v;
INSERT INTO stock_movements (warehouse_id, variant_id, quantity, reason, moved_at)
SELECT 1 + i % 3, 1 + i % 360, 10 + i % 20, 'receipt', timestamptz '2026-10-01' + (i || ' hours')::interval
FROM generate_series(1, 1200) AS i;

INSERT INTO discount_codes (code, percent_off, valid_until) VALUES ('WELCOME10', 10, '2027-01-01'), ('WINTER25', 25, '2027-03-01');
INSERT INTO carts (id, customer_id)
SELECT md5('cart' || i)::uuid, 1 + i % 300 FROM generate_series(1, 50) AS i;
INSERT INTO cart_items (cart_id, variant_id, quantity)
SELECT md5('cart' || i)::uuid, 1 + (i * 17) % 360, 1 + i % 3 FROM generate_series(1, 50) AS i;
INSERT INTO orders (customer_id, shipping_address_id, status, total, payment_status, paid_at, placed_at)
SELECT 1 + i % 300, (SELECT a.id FROM customer_addresses a WHERE a.customer_id = 1 + i % 300 AND a.kind = 'shipping'),
       (ARRAY['placed', 'paid', 'shipped', 'delivered'])[1 + i % 4], 0,
       CASE WHEN i % 4 = 0 THEN 'unpaid' ELSE 'captured' END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE timestamptz '2026-10-01' + (i || ' hours')::interval END,
       timestamptz '2026-10-01' + (i || ' hours')::interval
FROM generate_series(1, 600) AS i;
INSERT INTO order_items (order_id, line_no, variant_id, quantity, unit_price)
SELECT o.id, l.line_no, 1 + (o.id * 7 + l.line_no) % 360, 1 + l.line_no % 2, 19.99 + l.line_no
FROM orders o CROSS JOIN generate_series(1, 3) AS l(line_no);
UPDATE orders o SET total = order_total(o.id);

INSERT INTO payment_methods (customer_id, kind, token, last4)
SELECT id, 'card', md5('tok' || id), lpad((id % 10000)::text, 4, '0') FROM customers;
INSERT INTO payments (order_id, payment_method_id, amount, status, provider_ref)
SELECT o.id, pm.id, o.total, 'captured', 'psp_' || o.id
FROM orders o JOIN payment_methods pm ON pm.customer_id = o.customer_id
WHERE o.payment_status = 'captured';
INSERT INTO refunds (payment_id, amount, reason)
SELECT id, round(amount / 2, 2), 'partial return' FROM payments WHERE id % 25 = 0;
INSERT INTO invoices (order_id, amount) SELECT order_id, amount FROM payments;

INSERT INTO carriers (name, tracking_url_template) VALUES ('DHL', 'https://dhl.example/{}'), ('UPS', 'https://ups.example/{}');
INSERT INTO shipments (order_id, carrier_id, warehouse_id, tracking_no, shipped_at)
SELECT id, 1 + id % 2, 1 + id % 3, 'TRK' || id, placed_at + interval '1 day' FROM orders WHERE status IN ('shipped', 'delivered');
INSERT INTO shipment_items (shipment_id, order_id, line_no, quantity)
SELECT s.id, i.order_id, i.line_no, i.quantity FROM shipments s JOIN order_items i ON i.order_id = s.order_id;
INSERT INTO tracking_events (shipment_id, event, payload)
SELECT id, 'picked_up', jsonb_build_object('tracking', tracking_no) FROM shipments;

INSERT INTO notification_templates (code, channel, subject, body) VALUES
    ('order_placed', 'email', 'Thank you for your order', 'Order {{number}} is placed.'),
    ('order_shipped', 'email', 'On its way', 'Order {{number}} has shipped.'),
    ('low_stock', 'email', 'Low stock', 'Variant {{variant}} is low in {{warehouse}}.');
INSERT INTO notifications (customer_id, template_code, params)
SELECT customer_id, 'order_placed', jsonb_build_object('number', order_number) FROM orders;
INSERT INTO notification_deliveries (notification_id, status)
SELECT id, 'sent' FROM notifications;

INSERT INTO audit_log (service, action, entity, entity_id, actor)
SELECT (ARRAY['customers', 'catalog', 'inventory', 'orders', 'payments', 'shipping', 'notifications'])[1 + i % 7],
       'update', 'row', i::text, 'system'
FROM generate_series(1, 500) AS i;
REFRESH MATERIALIZED VIEW daily_sales;
