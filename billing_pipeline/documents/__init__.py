"""Billing documents as plain data: invoices, credit notes, statements and their usage chart."""
