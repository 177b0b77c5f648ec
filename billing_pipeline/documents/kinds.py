"""The three kinds of billing document. An invoice bills a period; a credit note takes money back
from an issued invoice; an adjustment bills what an issued invoice missed."""

KIND_INVOICE = "invoice"
KIND_CREDIT_NOTE = "credit_note"
KIND_ADJUSTMENT = "adjustment"
