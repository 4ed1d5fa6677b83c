-- A small library: 40 books, 25 readers' lists, an audit trail.
INSERT INTO book_catalog (isbn, title, author, published_year, genre, copies_total, copies_available, shelf_location)
SELECT '978-0-' || lpad(i::text, 6, '0'),
       'Book ' || i,
       'Author ' || (i % 13),
       1950 + (i * 7) % 70,
       (ARRAY['fiction', 'history', 'science', 'poetry'])[1 + i % 4],
       2 + i % 3,
       1 + i % 3,
       'S' || (i % 9) || '-' || (i % 5)
FROM generate_series(1, 40) AS i;

INSERT INTO reading_list (reader_id, book_id, status)
SELECT 1 + i % 25, 1 + (i * 11) % 40, (ARRAY['want-to-read', 'reading', 'finished'])[1 + i % 3]
FROM generate_series(1, 60) AS i
ON CONFLICT (reader_id, book_id) DO NOTHING;

INSERT INTO audit (service, action, entity, entity_id, details)
SELECT (ARRAY['ReadingList', 'BookCatalog', 'BookInventory'])[1 + i % 3],
       (ARRAY['insert', 'update', 'delete'])[1 + i % 3],
       (ARRAY['reading_list', 'book_catalog', 'book_catalog'])[1 + i % 3],
       1 + i % 40,
       jsonb_build_object('seq', i)
FROM generate_series(1, 120) AS i;
