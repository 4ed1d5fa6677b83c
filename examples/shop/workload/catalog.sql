-- catalog: products, variants, categories, brands, images, reviews.
SELECT p.id, p.sku, p.name, p.list_price, b.name AS brand, c.name AS category
FROM products p LEFT JOIN brands b ON b.id = p.brand_id JOIN categories c ON c.id = p.category_id
WHERE p.id = $1;
SELECT id, sku, name, list_price FROM products WHERE category_id = $1 AND active ORDER BY name LIMIT 50;
SELECT id, sku, size, colour, price FROM product_variants WHERE product_id = $1;
SELECT url FROM product_images WHERE product_id = $1 ORDER BY position;
INSERT INTO products (sku, name, description, category_id, brand_id, list_price)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id;
UPDATE products SET name = $2, description = $3, list_price = $4, updated_at = now() WHERE id = $1;
INSERT INTO product_variants (product_id, sku, size, colour, price) VALUES ($1, $2, $3, $4, $5);
UPDATE product_variants SET price = $2 WHERE id = $1;
INSERT INTO product_images (product_id, url, position) VALUES ($1, $2, $3);
SELECT rating, body, created_at FROM product_reviews WHERE product_id = $1 ORDER BY created_at DESC LIMIT 20;
INSERT INTO product_reviews (product_id, customer_id, rating, body) VALUES ($1, $2, $3, $4);
SELECT id, parent_id, name, slug FROM categories ORDER BY name;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('catalog', $1, 'product', $2, $3);
