"""Finance's month-end actions: issue a month's drafts, waive held money, credit notes."""
