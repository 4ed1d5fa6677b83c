-- BookInventory: copies on the shelves.
SELECT id, copies_total, copies_available, shelf_location FROM book_catalog WHERE id = $1;

UPDATE book_catalog SET copies_available = copies_available - 1
WHERE id = $1 AND copies_available > 0 RETURNING copies_available;

UPDATE book_catalog SET copies_available = copies_available + 1
WHERE id = $1 AND copies_available < copies_total;

UPDATE book_catalog SET copies_total = $2, copies_available = $3, shelf_location = $4,
       last_stocktake = now()
WHERE id = $1;

INSERT INTO audit (service, action, entity, entity_id, details)
VALUES ('BookInventory', $1, 'book_catalog', $2, $3);
