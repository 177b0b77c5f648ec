"""The application's database: invoices and their audit trail, numbering, holds, outboxes."""
