"""Documents to PDF: the WeasyPrint set-up, the render pool and the receipts of what was rendered."""
