"""Issued invoices to customers by email, through an outbox in the ledger."""
