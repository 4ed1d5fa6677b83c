-- BookCatalog: the books' descriptive details.
SELECT id, isbn, title, author, published_year, genre, description
FROM book_catalog WHERE id = $1;

SELECT id, title, author FROM book_catalog
WHERE title ILIKE '%' || $1 || '%' OR author ILIKE '%' || $1 || '%'
ORDER BY title LIMIT 50;

INSERT INTO book_catalog (isbn, title, author, published_year, genre, description)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id;

UPDATE book_catalog SET title = $2, author = $3, genre = $4, description = $5 WHERE id = $1;

DELETE FROM book_catalog WHERE id = $1;

INSERT INTO audit (service, action, entity, entity_id, details)
VALUES ('BookCatalog', $1, 'book_catalog', $2, $3);
