"""Messages to customers: notification rules, templates, providers (SMTP, SMS over HTTP), and the
worker job that turns outbox events into messages and sends them (see ``service``)."""
