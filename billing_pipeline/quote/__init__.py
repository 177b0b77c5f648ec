"""What a plan would cost before any usage: the quote and the customer's cost quote.calculator page."""
