-- notifications: templates, messages to customers, delivery attempts.
SELECT channel, subject, body FROM notification_templates WHERE code = $1;
INSERT INTO notifications (customer_id, template_code, params) VALUES ($1, $2, $3) RETURNING id;
INSERT INTO notification_deliveries (notification_id, attempt, status) VALUES ($1, $2, $3);
SELECT n.id, n.template_code, n.params, c.email FROM notifications n JOIN customers c ON c.id = n.customer_id
WHERE NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.id AND d.status = 'sent') LIMIT 100;
UPDATE notification_templates SET subject = $2, body = $3 WHERE code = $1;
INSERT INTO audit_log (service, action, entity, entity_id, actor) VALUES ('notifications', $1, 'notification', $2, $3);
