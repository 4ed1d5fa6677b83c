-- ReadingList: a reader's list of books.
SELECT r.id, r.book_id, b.title, b.author, r.status, r.added_at
FROM reading_list r JOIN book_catalog b ON b.id = r.book_id
WHERE r.reader_id = $1 ORDER BY r.added_at DESC;

INSERT INTO reading_list (reader_id, book_id) VALUES ($1, $2)
ON CONFLICT (reader_id, book_id) DO NOTHING RETURNING id;

UPDATE reading_list SET status = $3 WHERE reader_id = $1 AND book_id = $2;

DELETE FROM reading_list WHERE reader_id = $1 AND book_id = $2;

INSERT INTO audit (service, action, entity, entity_id, details)
VALUES ('ReadingList', $1, 'reading_list', $2, $3);
